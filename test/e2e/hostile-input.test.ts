/**
 * Hostile input, table-driven: malformed names, digests, ranges, upload ids,
 * huge headers, invalid and oversized manifests, wrong content types and
 * methods that do not apply. Every request that reaches the V2 layer must get
 * a 4xx with a V2 JSON error body and the API version header: never a 500,
 * never a reset. Afterwards the mirror still answers GET /v2/, and nothing was
 * written outside storage.dir.
 *
 * Requests go out on raw connections (rawRequest) so paths are sent exactly
 * as written: `..`, `%2e%2e`, `//` are not normalized away by a URL parser.
 */
import test, {type ExecutionContext} from 'ava';
import {randomBytes, randomUUID} from 'node:crypto';
import {existsSync} from 'node:fs';
import {readdir} from 'node:fs/promises';
import {connect} from 'node:net';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {type FaultUpstream, type RawResponse, errorCode, rawRequest, sha256, startFaultUpstream} from '../helpers/fault-upstream.js';
import {type Mirror, startMirror} from '../helpers/mirror.js';
import {tempDir} from '../helpers/process.js';

const API_VERSION = 'registry/2.0';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
/** A name that must never appear as a file anywhere: every traversal attempt aims at it. */
const SENTINEL = `zz-escape-${randomBytes(4).toString('hex')}`;

type Case = {
	name: string;
	method?: string;
	path: string;
	headers?: Record<string, string | string[]>;
	body?: Buffer | string;
	/** Acceptable statuses (all 4xx). */
	status: number | number[];
	/** Acceptable V2 error codes; omitted for HEAD (no body). */
	code?: string | string[];
	/**
	 * The request is refused by Node's HTTP parser before it reaches the V2
	 * layer (huge headers, unknown methods): only "a 4xx, the connection may
	 * close, the process survives" can be asked of it.
	 */
	raw?: boolean;
	/** For a 2xx that is also acceptable: the exact body it must have. */
	okBody?: Buffer;
};

type Env = {
	mirror: Mirror;
	upstream: FaultUpstream;
	parent: string;
	known: {digest: string; bytes: Buffer};
	manifestBlobs: {config: {digest: string; bytes: Buffer}; layer: {digest: string; bytes: Buffer}};
	cachedLayer: string;
	cachedLayerBytes: Buffer;
};

const hex64 = (char = 'a'): string => char.repeat(64);
const validDigest = `sha256:${hex64('b')}`;

async function setup(t: ExecutionContext): Promise<Env> {
	const parent = await tempDir('hostile-');
	const upstream = await startFaultUpstream();
	t.teardown(async () => upstream.stop());
	const layer = randomBytes(4096);
	const cachedLayer = upstream.addBlob('team/app', layer);
	upstream.addManifest('team/app', '1', Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: DOCKER_MANIFEST})), DOCKER_MANIFEST);
	const mirror = await startMirror({
		upstreams: {fault: {url: upstream.url, timeout: '10s'}},
		namespaces: [
			{prefix: 'private/', local: true},
			{prefix: '', upstream: 'fault'},
		],
		dataDir: join(parent, 'data'),
	});
	t.teardown(async () => mirror.stop());

	const push = async (repo: string, bytes: Buffer): Promise<string> => {
		const digest = sha256(bytes);
		const response = await rawRequest(mirror.url, `/v2/${repo}/blobs/uploads/?digest=${digest}`, {
			method: 'POST',
			headers: {'content-type': 'application/octet-stream', 'content-length': String(bytes.length)},
			body: bytes,
		});
		if (response.status !== 201) {
			throw new Error(`setup: push to ${repo} answered ${response.status}: ${response.body.toString()}`);
		}

		return digest;
	};

	const knownBytes = randomBytes(1000);
	const known = {digest: await push('private/known', knownBytes), bytes: knownBytes};
	const configBytes = Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', rootfs: {type: 'layers', diff_ids: []}}));
	const layerBytes = randomBytes(2000);
	const manifestBlobs = {
		config: {digest: await push('private/m', configBytes), bytes: configBytes},
		layer: {digest: await push('private/m', layerBytes), bytes: layerBytes},
	};
	return {mirror, upstream, parent, known, manifestBlobs, cachedLayer, cachedLayerBytes: layer};
}

function dockerManifest(env: Env, extra: Record<string, unknown> = {}): Buffer {
	const {config, layer} = env.manifestBlobs;
	return Buffer.from(
		JSON.stringify({
			schemaVersion: 2,
			mediaType: DOCKER_MANIFEST,
			config: {mediaType: 'application/vnd.docker.container.image.v1+json', size: config.bytes.length, digest: config.digest},
			layers: [{mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.bytes.length, digest: layer.digest}],
			...extra,
		}),
	);
}

async function startSession(env: Env, repo = 'private/up'): Promise<string> {
	const response = await rawRequest(env.mirror.url, `/v2/${repo}/blobs/uploads/`, {method: 'POST'});
	if (response.status !== 202) {
		throw new Error(`POST upload answered ${response.status}`);
	}

	const location = new URL(String(response.headers['location']), env.mirror.url);
	return location.pathname;
}

function list<T>(value: T | T[] | undefined): T[] {
	return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** Sends every case; returns one line per case that did not get what it should. */
async function runCases(t: ExecutionContext, env: Env, cases: Case[]): Promise<string[]> {
	const problems: string[] = [];
	for (const entry of cases) {
		const method = entry.method ?? 'GET';
		const response: RawResponse = await rawRequest(env.mirror.url, entry.path, {method, headers: entry.headers, body: entry.body, timeoutMs: 15_000});
		const statuses = list(entry.status);
		const codes = list(entry.code);
		const code = errorCode(response);
		const label = `${entry.name} [${method} ${entry.path.length > 120 ? `${entry.path.slice(0, 120)}…` : entry.path}]`;
		const found = `got ${response.status} ${code ?? '-'}${response.error ? ` (${response.error})` : ''}`;
		if (response.status === 0) {
			problems.push(`${label}: no response at all: ${response.error ?? ''}`);
			continue;
		}

		if (response.status >= 500) {
			problems.push(`${label}: server error, ${found}`);
			continue;
		}

		if (!statuses.includes(response.status)) {
			const acceptableSuccess = entry.okBody !== undefined && response.status >= 200 && response.status < 300;
			if (!acceptableSuccess) {
				problems.push(`${label}: expected ${statuses.join('|')} ${codes.join('|')}, ${found}`);
				continue;
			}

			if (!response.complete || !response.body.equals(entry.okBody!)) {
				problems.push(`${label}: a ${response.status} with the wrong body`);
			}

			continue;
		}

		if (entry.raw) {
			continue;
		}

		if (!response.complete || response.error !== undefined) {
			problems.push(`${label}: the response was cut (${response.error ?? 'incomplete'})`);
		}

		if (response.headers['docker-distribution-api-version'] !== API_VERSION) {
			problems.push(`${label}: no Docker-Distribution-API-Version header`);
		}

		if (method !== 'HEAD') {
			if (!String(response.headers['content-type'] ?? '').startsWith('application/json')) {
				problems.push(`${label}: error body is not JSON (${String(response.headers['content-type'])})`);
			}

			if (code === undefined || (codes.length > 0 && !codes.includes(code))) {
				problems.push(`${label}: expected code ${codes.join('|')}, ${found}`);
			}
		}
	}

	t.log(`${cases.length} requests`);
	return problems;
}

/** The mirror still answers, and nothing appeared outside storage.dir. */
async function assertHealthy(t: ExecutionContext, env: Env): Promise<void> {
	const base = await rawRequest(env.mirror.url, '/v2/');
	t.is(base.status, 200, 'GET /v2/ still answers');
	t.is(base.headers['docker-distribution-api-version'], API_VERSION);
	t.deepEqual(await readdir(env.parent), ['data'], 'nothing next to the data dir');
	for (const place of [env.parent, join(env.parent, '..'), tmpdir(), process.cwd(), join(env.mirror.dataDir, 'blobs'), '/etc']) {
		t.false(existsSync(join(place, SENTINEL)), `no ${SENTINEL} in ${place}`);
	}

	const walk = async (dir: string): Promise<string[]> => {
		const out: string[] = [];
		for (const entry of await readdir(dir, {withFileTypes: true})) {
			const full = join(dir, entry.name);
			out.push(full);
			if (entry.isDirectory()) {
				out.push(...(await walk(full)));
			}
		}

		return out;
	};

	const files = await walk(env.parent);
	t.deepEqual(
		files.filter(file => file.includes(SENTINEL) || /passwd|\.\.|%/.test(file.slice(env.parent.length))),
		[],
		'no traversal target was created inside the data dir either',
	);
	for (const entry of await readdir(join(env.mirror.dataDir, 'uploads'))) {
		t.regex(entry, /^[a-f0-9-]{36}$/, `uploads/ holds only session ids (${entry})`);
	}

	await env.mirror.registry.fills.drain();
	t.deepEqual(await readdir(join(env.mirror.dataDir, 'tmp')), [], 'tmp/ is empty');
}

// --- names ------------------------------------------------------------------------------------

const badNames: Array<[string, string]> = [
	['upper case', 'Upper/case'],
	['upper case in a local name', 'private/Upper'],
	['dot-dot segment', 'a/../b'],
	['dot-dot out of the local namespace', `private/../../${SENTINEL}`],
	['only dot-dot', '..'],
	['single dot segment', 'private/./x'],
	['escaped dot-dot', `private/%2e%2e/%2e%2e/${SENTINEL}`],
	['escaped dot-dot, upper case escapes', `%2E%2E/%2E%2E/${SENTINEL}`],
	['escaped slash', 'private%2fx'],
	['escaped slash inside', 'private/a%2Fb'],
	['escaped backslash', `private/..%5c..%5c${SENTINEL}`],
	['NUL byte', 'private/a%00b'],
	['escaped non-ASCII', 'private/%C3%A4'],
	['empty segment', 'a//b'],
	['empty local segment', 'private//x'],
	['trailing slash', 'private/x/'],
	['256 characters', `private/${'a'.repeat(248)}`],
	['1000 characters', 'a'.repeat(1000)],
	['separator first', '-a/b'],
	['separator last', 'private/a-'],
	['two dots', 'private/a..b'],
	['triple underscore', 'private/a___b'],
	['dot dash', 'private/a.-b'],
	['backslash', `private\\..\\${SENTINEL}`],
];

test('malformed repository names: 400 NAME_INVALID on every endpoint, never a 500', async t => {
	const env = await setup(t);
	const cases: Case[] = [];
	const expect = {status: 400, code: 'NAME_INVALID'};
	for (const [label, name] of badNames) {
		cases.push(
			{name: `${label}: manifest GET`, path: `/v2/${name}/manifests/latest`, ...expect},
			{name: `${label}: manifest HEAD`, method: 'HEAD', path: `/v2/${name}/manifests/latest`, status: expect.status},
			{name: `${label}: blob GET`, path: `/v2/${name}/blobs/${validDigest}`, ...expect},
			{name: `${label}: tags`, path: `/v2/${name}/tags/list`, ...expect},
			{name: `${label}: upload POST`, method: 'POST', path: `/v2/${name}/blobs/uploads/`, ...expect},
			{
				name: `${label}: manifest PUT`,
				method: 'PUT',
				path: `/v2/${name}/manifests/latest`,
				headers: {'content-type': DOCKER_MANIFEST},
				body: dockerManifest(env),
				...expect,
			},
		);
	}

	// Names that are fine, as controls: the name passes, the content is unknown.
	cases.push(
		{name: 'control: 255-character local name', path: `/v2/private/${'a'.repeat(247)}/manifests/latest`, status: 404, code: 'MANIFEST_UNKNOWN'},
		{name: 'control: escaped colon in a digest', path: `/v2/private/known/blobs/sha256%3A${hex64('c')}`, status: 404, code: 'BLOB_UNKNOWN'},
	);
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);
	t.true(cases.length >= 140);
	await assertHealthy(t, env);
});

test('names that are not routed anywhere precisely: at least a V2 4xx', async t => {
	const env = await setup(t);
	const loose = {status: [400, 404], code: ['NAME_INVALID', 'NOT_FOUND', 'NAME_UNKNOWN']};
	const cases: Case[] = [
		{name: 'no name', path: '/v2//manifests/latest', ...loose},
		{name: 'no name, blob', path: `/v2//blobs/${validDigest}`, ...loose},
		{name: 'raw dot-dot to an upload id', path: `/v2/private/up/blobs/uploads/../../../${SENTINEL}`, ...loose},
		{name: 'raw dot-dot after the API root', path: `/v2/../../${SENTINEL}`, ...loose},
		{name: 'double slash after the API root', path: '/v2//', ...loose},
		{name: 'no resource', path: '/v2/private/x', ...loose},
		{name: 'unknown resource', path: '/v2/private/x/secrets/latest', ...loose},
		{name: 'unknown upstream by ns', path: '/v2/team/app/manifests/1?ns=evil.example', status: 404, code: 'NAME_UNKNOWN'},
		{name: 'traversal in ns', path: `/v2/team/app/manifests/1?ns=..%2F..%2F${SENTINEL}`, status: [400, 404], code: ['NAME_UNKNOWN', 'NAME_INVALID']},
		{name: 'empty manifest reference', path: '/v2/private/x/manifests/', ...loose},
		{name: 'bad tag', path: '/v2/private/x/manifests/-bad', status: 400, code: 'TAG_INVALID'},
		{name: 'tag of 129 characters', path: `/v2/private/x/manifests/${'t'.repeat(129)}`, status: 400, code: 'TAG_INVALID'},
		{name: 'tag with escaped dot-dot', path: '/v2/private/x/manifests/%2e%2e', status: 400, code: ['TAG_INVALID', 'NAME_INVALID']},
		{name: 'catalog n=-1', path: '/v2/_catalog?n=-1', status: 400, code: 'PAGINATION_NUMBER_INVALID'},
		{name: 'catalog n=abc', path: '/v2/_catalog?n=abc', status: 400, code: 'PAGINATION_NUMBER_INVALID'},
		{name: 'tags n=1e3', path: '/v2/private/known/tags/list?n=1e3', status: 400, code: 'PAGINATION_NUMBER_INVALID'},
		{name: 'tags n twice', path: '/v2/private/known/tags/list?n=x&n=1', status: 400, code: 'PAGINATION_NUMBER_INVALID'},
	];
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);
	await assertHealthy(t, env);
});

// --- digests ----------------------------------------------------------------------------------

const badDigests: Array<[string, string]> = [
	['not hex', 'sha256:xyz'],
	['63 hex digits', `sha256:${'a'.repeat(63)}`],
	['65 hex digits', `sha256:${'a'.repeat(65)}`],
	['upper-case hex', `sha256:${hex64('A')}`],
	['non-hex letters', `sha256:${hex64('g')}`],
	['md5', `md5:${'a'.repeat(32)}`],
	['sha1', `sha1:${'a'.repeat(40)}`],
	['sha512 with 64 digits', `sha512:${hex64()}`],
	['unknown algorithm', `foo+bar:${hex64()}`],
	['upper-case algorithm', `SHA256:${hex64()}`],
	['empty hex', 'sha256:'],
	['empty algorithm', `:${hex64()}`],
	['double colon', `sha256::${hex64()}`],
	['trailing garbage', `sha256:${hex64()}:x`],
	['10000 hex digits', `sha256:${'a'.repeat(10_000)}`],
	['escaped traversal', `sha256:..%2f..%2f${SENTINEL}`],
];

test('malformed digests and algorithms: 400 DIGEST_INVALID on every endpoint that takes one', async t => {
	const env = await setup(t);
	const session = await startSession(env);
	const cases: Case[] = [];
	for (const [label, digest] of badDigests) {
		const escaped = digest.includes('%');
		const expect = escaped ? {status: 400, code: ['DIGEST_INVALID', 'NAME_INVALID']} : {status: 400, code: 'DIGEST_INVALID'};
		cases.push(
			{name: `${label}: local blob GET`, path: `/v2/private/known/blobs/${digest}`, ...expect},
			{name: `${label}: local blob HEAD`, method: 'HEAD', path: `/v2/private/known/blobs/${digest}`, status: expect.status},
			{name: `${label}: cached blob GET`, path: `/v2/team/app/blobs/${digest}`, ...expect},
			{name: `${label}: cached blob HEAD`, method: 'HEAD', path: `/v2/team/app/blobs/${digest}`, status: expect.status},
			{name: `${label}: local manifest by digest`, path: `/v2/private/known/manifests/${digest}`, ...expect},
			{name: `${label}: cached manifest by digest`, path: `/v2/team/app/manifests/${digest}`, ...expect},
			{name: `${label}: blob DELETE`, method: 'DELETE', path: `/v2/private/known/blobs/${digest}`, ...expect},
			{
				name: `${label}: monolithic POST`,
				method: 'POST',
				path: `/v2/private/up/blobs/uploads/?digest=${digest}`,
				headers: {'content-type': 'application/octet-stream'},
				body: 'hello',
				status: 400,
				code: 'DIGEST_INVALID',
			},
			{
				name: `${label}: upload PUT`,
				method: 'PUT',
				path: `${session}?digest=${digest}`,
				headers: {'content-type': 'application/octet-stream'},
				body: '',
				status: 400,
				code: 'DIGEST_INVALID',
			},
			{name: `${label}: referrers`, path: `/v2/private/known/referrers/${digest}`, ...expect},
		);
	}

	cases.push(
		{name: 'upload PUT without digest', method: 'PUT', path: session, body: '', status: 400, code: 'DIGEST_INVALID'},
		{name: 'upload PUT with the wrong digest', method: 'PUT', path: `${session}?digest=${validDigest}`, body: 'hello', status: 400, code: 'DIGEST_INVALID'},
		{name: 'monolithic POST whose body does not match', method: 'POST', path: `/v2/private/up/blobs/uploads/?digest=${validDigest}`, headers: {'content-type': 'application/octet-stream'}, body: randomBytes(70_000), status: 400, code: 'DIGEST_INVALID'},
		{name: 'upload PUT with two digests', method: 'PUT', path: `${session}?digest=${validDigest}&digest=${sha256(Buffer.from(''))}`, body: '', status: 400, code: 'DIGEST_INVALID'},
		{name: 'mount with a bad digest', method: 'POST', path: `/v2/private/up/blobs/uploads/?mount=sha256:bad&from=../../${SENTINEL}`, status: 400, code: 'DIGEST_INVALID'},
		{name: 'manifest PUT by a digest that does not match', method: 'PUT', path: `/v2/private/m/manifests/${validDigest}`, headers: {'content-type': DOCKER_MANIFEST}, body: dockerManifest(env), status: 400, code: 'DIGEST_INVALID'},
	);
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);
	t.false(existsSync(join(env.mirror.dataDir, 'blobs', 'sha256', 'bb', hex64('b'))), 'the wrong-digest upload stored nothing');
	await assertHealthy(t, env);
});

// --- ranges -----------------------------------------------------------------------------------

test('malformed or unsatisfiable Range on blob GET: 416 RANGE_INVALID with Content-Range bytes */SIZE', async t => {
	const env = await setup(t);
	const cachedSize = env.cachedLayerBytes.length;
	const rangesFor = (size: number): string[] => [
		'bytes=abc',
		'bytes=5-2',
		'bytes=0-1,5-6',
		'bytes=-0',
		'bytes=-',
		'bytes=--1',
		'bytes=1-2-3',
		'bytes=',
		'bytes=0x10-0x20',
		'bytes=1e2-2e2',
		'bytes=99999999999999999999-',
		`bytes=${size}-`,
		`bytes=${size + 10}-${size + 20}`,
		'bytes=0-5, 7-9',
		'bytes=+1-2',
	];
	const cases: Case[] = [];
	for (const [where, path, size] of [
		['local', `/v2/private/known/blobs/${env.known.digest}`, env.known.bytes.length],
		['cached', `/v2/team/app/blobs/${env.cachedLayer}`, cachedSize],
	] as const) {
		for (const range of rangesFor(size)) {
			cases.push({name: `${where}: ${range}`, path, headers: {range}, status: 416, code: 'RANGE_INVALID'});
		}
	}

	// An unknown range unit may be ignored (RFC 9110) or refused; either way no 500 and no wrong bytes.
	cases.push({name: 'unknown unit', path: `/v2/private/known/blobs/${env.known.digest}`, headers: {range: 'items=0-5'}, status: 416, code: 'RANGE_INVALID', okBody: env.known.bytes});
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);

	for (const [path, size] of [
		[`/v2/private/known/blobs/${env.known.digest}`, env.known.bytes.length],
		[`/v2/team/app/blobs/${env.cachedLayer}`, cachedSize],
	] as const) {
		const response = await rawRequest(env.mirror.url, path, {headers: {range: `bytes=${size}-`}});
		t.is(response.headers['content-range'], `bytes */${size}`, path);
	}

	await assertHealthy(t, env);
});

// --- uploads ----------------------------------------------------------------------------------

test('malformed Content-Range on upload PATCH and PUT: 400/416, and the session is still usable', async t => {
	const env = await setup(t);
	const cases: Case[] = [];
	const malformed: Array<[string, string, number]> = [
		['not a range', 'abc', 5],
		['end before start', '5-2', 5],
		['equals sign', 'bytes=0-4', 5],
		['negative start', '-1-5', 5],
		['open end', '0-', 5],
		['does not start at the session offset', '10-14', 5],
		['more announced than sent', '0-9', 5],
		['fewer announced than sent', '0-1', 5],
		['huge end', '0-99999999999999999999', 5],
		['bad total', '0-4/abc', 5],
		['hex', '0x0-0x4', 5],
		['spaces', '0 - 4', 5],
	];
	for (const [label, contentRange, length] of malformed) {
		const session = await startSession(env);
		cases.push({
			name: `PATCH ${label}`,
			method: 'PATCH',
			path: session,
			headers: {'content-type': 'application/octet-stream', 'content-range': contentRange},
			body: randomBytes(length),
			status: [400, 416],
			code: ['RANGE_INVALID', 'BLOB_UPLOAD_INVALID', 'SIZE_INVALID'],
		});
	}

	for (const [label, contentRange] of [['not a range', 'abc'], ['end before start', '9-3']] as const) {
		const session = await startSession(env);
		cases.push({
			name: `PUT ${label}`,
			method: 'PUT',
			path: `${session}?digest=${sha256(Buffer.from('hello'))}`,
			headers: {'content-type': 'application/octet-stream', 'content-range': contentRange},
			body: 'hello',
			status: [400, 416],
			code: ['RANGE_INVALID', 'BLOB_UPLOAD_INVALID', 'SIZE_INVALID'],
		});
	}

	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);

	// After a refused chunk, the session continues from where it really is.
	const session = await startSession(env);
	const refused = await rawRequest(env.mirror.url, session, {method: 'PATCH', headers: {'content-range': '7-9'}, body: 'abc'});
	t.is(refused.status, 416);
	const data = Buffer.from('hello world');
	const ok = await rawRequest(env.mirror.url, session, {method: 'PATCH', headers: {'content-range': `0-${data.length - 1}`, 'content-type': 'application/octet-stream'}, body: data});
	t.is(ok.status, 202);
	const put = await rawRequest(env.mirror.url, `${session}?digest=${sha256(data)}`, {method: 'PUT', body: ''});
	t.is(put.status, 201, put.body.toString());
	await assertHealthy(t, env);
});

test('unknown upload ids (random UUID, non-UUID, encoded traversal): 404 BLOB_UPLOAD_UNKNOWN or 400, never a file', async t => {
	const env = await setup(t);
	const ids: Array<[string, string, string[]]> = [
		['random UUID', randomUUID(), ['BLOB_UPLOAD_UNKNOWN']],
		['nil UUID', '00000000-0000-0000-0000-000000000000', ['BLOB_UPLOAD_UNKNOWN']],
		['upper-case UUID', randomUUID().toUpperCase(), ['BLOB_UPLOAD_UNKNOWN']],
		['not a UUID', 'not-a-uuid', ['BLOB_UPLOAD_UNKNOWN']],
		['36 dashes', '-'.repeat(36), ['BLOB_UPLOAD_UNKNOWN']],
		['dots', '....', ['BLOB_UPLOAD_UNKNOWN']],
		['300 characters', 'a'.repeat(300), ['BLOB_UPLOAD_UNKNOWN']],
		['encoded ../../etc/passwd', '..%2f..%2fetc%2fpasswd', ['BLOB_UPLOAD_UNKNOWN', 'NAME_INVALID']],
		['encoded traversal to the sentinel', `..%2F..%2F..%2F${SENTINEL}`, ['BLOB_UPLOAD_UNKNOWN', 'NAME_INVALID']],
		['encoded dot-dot', '%2e%2e', ['BLOB_UPLOAD_UNKNOWN', 'NAME_INVALID']],
		['NUL', `${randomUUID()}%00`, ['BLOB_UPLOAD_UNKNOWN', 'NAME_INVALID']],
	];
	const cases: Case[] = [];
	for (const [label, id, codes] of ids) {
		const status = codes.includes('NAME_INVALID') ? [400, 404] : 404;
		const base = `/v2/private/up/blobs/uploads/${id}`;
		cases.push(
			{name: `${label}: status`, path: base, status, code: codes},
			{name: `${label}: PATCH`, method: 'PATCH', path: base, headers: {'content-type': 'application/octet-stream'}, body: 'hello', status, code: codes},
			{name: `${label}: PUT`, method: 'PUT', path: `${base}?digest=${sha256(Buffer.from('hello'))}`, headers: {'content-type': 'application/octet-stream'}, body: 'hello', status, code: codes},
			{name: `${label}: DELETE`, method: 'DELETE', path: base, status, code: codes},
		);
	}

	// A real session, but asked for through another repository.
	const session = await startSession(env, 'private/a');
	const id = session.split('/').at(-1)!;
	cases.push(
		{name: 'session of another repository: status', path: `/v2/private/b/blobs/uploads/${id}`, status: 404, code: 'BLOB_UPLOAD_UNKNOWN'},
		{name: 'session of another repository: PATCH', method: 'PATCH', path: `/v2/private/b/blobs/uploads/${id}`, body: 'x', status: 404, code: 'BLOB_UPLOAD_UNKNOWN'},
		{name: 'session through a cached namespace', path: `/v2/team/app/blobs/uploads/${id}`, status: [404, 405], code: ['BLOB_UPLOAD_UNKNOWN', 'UNSUPPORTED']},
	);
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);
	await assertHealthy(t, env);
});

// --- headers ----------------------------------------------------------------------------------

/** Writes raw bytes on a socket and reads the status line of whatever comes back. */
async function rawExchange(url: string, text: string | Buffer): Promise<{status: number; closed: boolean; error?: string}> {
	const target = new URL(url);
	return new Promise(resolve => {
		let data = '';
		const socket = connect(Number(target.port), target.hostname);
		const timer = setTimeout(() => socket.destroy(new Error('timeout')), 10_000);
		socket.on('data', chunk => {
			data += chunk.toString('latin1');
		});
		const done = (error?: string) => {
			clearTimeout(timer);
			const match = /^HTTP\/1\.1 (\d{3})/.exec(data);
			resolve({status: match ? Number(match[1]) : 0, closed: true, ...(error ? {error} : {})});
		};

		socket.once('error', error => done(error.message));
		socket.once('close', () => done());
		socket.write(text, () => socket.end());
	});
}

test('huge request headers and garbage requests: a 4xx (431 for headers), never a crash', async t => {
	const env = await setup(t);
	const big = 'x'.repeat(100 * 1024);
	const cases: Case[] = [
		{name: '100 KiB header value on /v2/', path: '/v2/', headers: {'x-big': big}, status: [400, 413, 431], raw: true},
		{name: '100 KiB Authorization', path: `/v2/private/known/blobs/${env.known.digest}`, headers: {authorization: `Bearer ${big}`}, status: [400, 401, 413, 431], raw: true},
		{name: '100 KiB Range', path: `/v2/private/known/blobs/${env.known.digest}`, headers: {range: `bytes=${'1'.repeat(100 * 1024)}-`}, status: [400, 413, 416, 431], raw: true},
		{name: '100 KiB path', path: `/v2/private/${'a'.repeat(100 * 1024)}/manifests/latest`, status: [400, 414, 431], raw: true},
		{name: '2000 headers', path: '/v2/', headers: Object.fromEntries(Array.from({length: 2000}, (_, n) => [`x-h-${n}`, 'y'.repeat(40)])), status: [400, 431], raw: true},
		{name: 'unknown method', method: 'FOO', path: '/v2/', status: [400, 405, 501], raw: true},
	];
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);

	const garbage: Array<[string, string | Buffer]> = [
		['not HTTP', 'hello\r\n\r\n'],
		['space in the path', 'GET /v2/private/a b/manifests/latest HTTP/1.1\r\nHost: x\r\n\r\n'],
		['control character in the path', 'GET /v2/private/a\u0001b/tags/list HTTP/1.1\r\nHost: x\r\n\r\n'],
		['header injection', 'GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: b\rX-B: c\r\n\r\n'],
		['bad Content-Length', 'PUT /v2/private/m/manifests/latest HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n'],
		['two Content-Lengths', 'PUT /v2/private/m/manifests/latest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'],
		['binary', randomBytes(2048)],
	];
	for (const [label, text] of garbage) {
		const result = await rawExchange(env.mirror.url, text);
		t.true(result.status === 0 || (result.status >= 400 && result.status < 500), `${label}: a 4xx or a closed connection (${result.status})`);
	}

	await assertHealthy(t, env);
});

test('malformed Accept, Content-Length and Transfer-Encoding headers: the right manifest or a 4xx, never a 500', async t => {
	const env = await setup(t);
	const manifest = dockerManifest(env);
	const pushed = await rawRequest(env.mirror.url, '/v2/private/m/manifests/acc', {method: 'PUT', headers: {'content-type': DOCKER_MANIFEST}, body: manifest});
	t.is(pushed.status, 201, pushed.body.toString());
	const accepts = ['', ',,,', ';;;', '*/*;q=abc', `${DOCKER_MANIFEST};q=-1`, `${DOCKER_MANIFEST};q=2`, 'text/html', `${'a/b, '.repeat(2000)}${DOCKER_MANIFEST}`, '*', '/', 'application/*;;;q=0.5,,'];
	const cases: Case[] = [];
	for (const accept of accepts) {
		// Either the manifest (negotiation accepted it) or MANIFEST_UNKNOWN (it did not): nothing else.
		cases.push({name: `Accept ${JSON.stringify(accept.slice(0, 40))}`, path: '/v2/private/m/manifests/acc', headers: {accept}, status: 404, code: 'MANIFEST_UNKNOWN', okBody: manifest});
	}

	cases.push(
		{name: 'Content-Length: abc', method: 'PUT', path: '/v2/private/m/manifests/x', headers: {'content-length': 'abc'}, status: 400, raw: true},
		{name: 'Content-Length and Transfer-Encoding', method: 'PUT', path: '/v2/private/m/manifests/x', headers: {'content-length': '2', 'transfer-encoding': 'chunked'}, body: '2\r\n{}\r\n0\r\n\r\n', status: 400, raw: true},
		{name: 'Transfer-Encoding: gzip', method: 'PATCH', path: `${await startSession(env)}`, headers: {'transfer-encoding': 'gzip'}, body: 'x', status: [400, 415, 501], raw: true},
		{name: 'Authorization garbage (no auth configured)', path: '/v2/private/m/manifests/nope', headers: {authorization: 'Basic !!!'}, status: [401, 404], code: ['UNAUTHORIZED', 'MANIFEST_UNKNOWN']},
		{name: 'Host header traversal', method: 'POST', path: '/v2/private/up/blobs/uploads/?digest=sha256:bad', headers: {host: `../../${SENTINEL}`}, status: 400, code: 'DIGEST_INVALID'},
	);
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);
	await assertHealthy(t, env);
});

// --- manifests --------------------------------------------------------------------------------

test('invalid, oversized and wrongly typed manifests: 4xx with MANIFEST_INVALID (or the specific code), nothing stored', async t => {
	const env = await setup(t);
	const put = (name: string, body: Buffer | string, contentType: string | undefined, status: number | number[], code: string | string[], reference = 'latest', headers: Record<string, string> = {}): Case => ({
		name,
		method: 'PUT',
		path: `/v2/private/m/manifests/${reference}`,
		headers: {...(contentType === undefined ? {} : {'content-type': contentType}), ...headers},
		body,
		status,
		code,
	});
	const unknownBlob = `sha256:${hex64('d')}`;
	const oversized = Buffer.alloc(5 * 1024 * 1024, 0x20);
	oversized.write('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"a":"');
	oversized.write('"}}', oversized.length - 3);
	const cases: Case[] = [
		put('truncated JSON', '{', DOCKER_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('empty body', '', DOCKER_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('null', 'null', DOCKER_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('array', '[]', DOCKER_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('string', '"manifest"', DOCKER_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('number', '42', DOCKER_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('binary', randomBytes(1024), DOCKER_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('invalid UTF-8', Buffer.concat([Buffer.from('{"schemaVersion":2,"x":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')]), OCI_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('deeply nested', `${'['.repeat(200_000)}${']'.repeat(200_000)}`, OCI_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('schema 1', '{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}', 'application/vnd.docker.distribution.manifest.v1+prettyjws', 400, 'MANIFEST_INVALID'),
		put('schemaVersion 3', '{"schemaVersion":3}', OCI_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('schemaVersion as a string', '{"schemaVersion":"2","mediaType":"application/vnd.oci.image.manifest.v1+json"}', OCI_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('no config', JSON.stringify({schemaVersion: 2, mediaType: OCI_MANIFEST, layers: []}), OCI_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('config is a string', JSON.stringify({schemaVersion: 2, mediaType: OCI_MANIFEST, config: 'x', layers: []}), OCI_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('bad descriptor digest', JSON.stringify({schemaVersion: 2, mediaType: OCI_MANIFEST, config: {mediaType: 'a/b', size: 1, digest: 'sha256:zz'}, layers: []}), OCI_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('negative size', JSON.stringify({schemaVersion: 2, mediaType: OCI_MANIFEST, config: {mediaType: 'a/b', size: -1, digest: env.manifestBlobs.config.digest}, layers: []}), OCI_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('layers is an object', JSON.stringify({schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: {mediaType: 'a/b', size: env.manifestBlobs.config.bytes.length, digest: env.manifestBlobs.config.digest}, layers: {}}), DOCKER_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('unknown blob', JSON.stringify({schemaVersion: 2, mediaType: OCI_MANIFEST, config: {mediaType: 'a/b', size: 10, digest: unknownBlob}, layers: []}), OCI_MANIFEST, 400, 'MANIFEST_BLOB_UNKNOWN'),
		put('index of unknown manifests', JSON.stringify({schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{mediaType: OCI_MANIFEST, size: 10, digest: unknownBlob}]}), 'application/vnd.oci.image.index.v1+json', 400, 'MANIFEST_BLOB_UNKNOWN'),
		put('size that does not match the blob', dockerManifest(env, {config: {mediaType: 'application/vnd.docker.container.image.v1+json', size: 1, digest: env.manifestBlobs.config.digest}}), DOCKER_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('5 MiB with Content-Length', oversized, OCI_MANIFEST, [400, 413], ['MANIFEST_INVALID', 'SIZE_INVALID']),
		{...put('5 MiB chunked', oversized, OCI_MANIFEST, [400, 413], ['MANIFEST_INVALID', 'SIZE_INVALID']), headers: {'content-type': OCI_MANIFEST, 'transfer-encoding': 'chunked'}},
		put('Content-Length larger than the limit, small body', '{}', OCI_MANIFEST, [400, 413], ['MANIFEST_INVALID', 'SIZE_INVALID'], 'latest', {'content-length': String(64 * 1024 * 1024)}),
		// Wrong content types for a valid manifest.
		put('text/plain', dockerManifest(env), 'text/plain', [400, 415], ['MANIFEST_INVALID', 'UNSUPPORTED']),
		put('application/json', dockerManifest(env), 'application/json', [400, 415], ['MANIFEST_INVALID', 'UNSUPPORTED']),
		put('a layer media type', dockerManifest(env), 'application/vnd.oci.image.layer.v1.tar', [400, 415], ['MANIFEST_INVALID', 'UNSUPPORTED']),
		put('OCI type for a Docker manifest', dockerManifest(env), OCI_MANIFEST, [400, 415], ['MANIFEST_INVALID', 'UNSUPPORTED']),
		put('no media type anywhere, text/plain', JSON.stringify({schemaVersion: 2, config: {mediaType: 'a/b', size: 1, digest: unknownBlob}, layers: []}), 'text/plain', [400, 415], ['MANIFEST_INVALID', 'UNSUPPORTED']),
		put('a bad tag', dockerManifest(env), DOCKER_MANIFEST, 400, 'TAG_INVALID', '-latest'),
		{name: 'PUT to a cached namespace', method: 'PUT', path: '/v2/team/app/manifests/latest', headers: {'content-type': DOCKER_MANIFEST}, body: dockerManifest(env), status: 405, code: 'UNSUPPORTED'},
	];
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);

	const tags = await rawRequest(env.mirror.url, '/v2/private/m/tags/list');
	if (tags.status === 200) {
		t.deepEqual((JSON.parse(tags.body.toString()) as {tags?: unknown}).tags ?? [], [], 'no tag was created by any of them');
	} else {
		t.is(tags.status, 404, 'no tag was created by any of them');
		t.is(errorCode(tags), 'NAME_UNKNOWN');
	}
	// The good one still goes in.
	const good = await rawRequest(env.mirror.url, '/v2/private/m/manifests/latest', {method: 'PUT', headers: {'content-type': DOCKER_MANIFEST}, body: dockerManifest(env)});
	t.is(good.status, 201, good.body.toString());
	await assertHealthy(t, env);
});

// --- methods ----------------------------------------------------------------------------------

test('methods that do not apply: 405 UNSUPPORTED with a V2 body', async t => {
	const env = await setup(t);
	const unsupported = {status: 405, code: 'UNSUPPORTED'};
	const cases: Case[] = [
		{name: 'PATCH a manifest', method: 'PATCH', path: '/v2/private/m/manifests/latest', body: '{}', ...unsupported},
		{name: 'POST a manifest', method: 'POST', path: '/v2/private/m/manifests/latest', body: '{}', ...unsupported},
		{name: 'DELETE /v2/', method: 'DELETE', path: '/v2/', ...unsupported},
		{name: 'PUT /v2/', method: 'PUT', path: '/v2/', body: '', ...unsupported},
		{name: 'POST /v2/', method: 'POST', path: '/v2/', ...unsupported},
		{name: 'PATCH /v2/', method: 'PATCH', path: '/v2/', ...unsupported},
		{name: 'POST tags/list', method: 'POST', path: '/v2/private/known/tags/list', ...unsupported},
		{name: 'DELETE tags/list', method: 'DELETE', path: '/v2/private/known/tags/list', ...unsupported},
		{name: 'PUT a blob', method: 'PUT', path: `/v2/private/known/blobs/${env.known.digest}`, body: 'x', ...unsupported},
		{name: 'PATCH a blob', method: 'PATCH', path: `/v2/private/known/blobs/${env.known.digest}`, body: 'x', ...unsupported},
		{name: 'POST a blob', method: 'POST', path: `/v2/private/known/blobs/${env.known.digest}`, ...unsupported},
		{name: 'POST _catalog', method: 'POST', path: '/v2/_catalog', ...unsupported},
		{name: 'DELETE _catalog', method: 'DELETE', path: '/v2/_catalog', ...unsupported},
		{name: 'PUT referrers', method: 'PUT', path: `/v2/private/known/referrers/${env.known.digest}`, body: '{}', ...unsupported},
		{name: 'TRACE /v2/', method: 'TRACE', path: '/v2/', ...unsupported},
		{name: 'PROPFIND a manifest', method: 'PROPFIND', path: '/v2/private/m/manifests/latest', status: [405, 501], code: 'UNSUPPORTED'},
		{name: 'DELETE a cached manifest', method: 'DELETE', path: '/v2/team/app/manifests/1', ...unsupported},
		{name: 'DELETE a cached blob', method: 'DELETE', path: `/v2/team/app/blobs/${env.cachedLayer}`, ...unsupported},
		{name: 'upload to a cached namespace', method: 'POST', path: '/v2/team/app/blobs/uploads/', ...unsupported},
		{name: 'monolithic upload to a cached namespace', method: 'POST', path: `/v2/team/app/blobs/uploads/?digest=${sha256(Buffer.from('x'))}`, body: 'x', ...unsupported},
	];
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);
	const blob = await rawRequest(env.mirror.url, `/v2/private/known/blobs/${env.known.digest}`);
	t.deepEqual(blob.body, env.known.bytes, 'the blob is untouched');
	t.is(env.upstream.count({method: 'DELETE'}), 0);
	await assertHealthy(t, env);
});
