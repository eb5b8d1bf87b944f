/**
 * Hostile input, table-driven: malformed names, digests, ranges, upload ids,
 * huge headers, invalid and oversized manifests, wrong content types and
 * methods that do not apply. Every case names the one answer the mirror gives:
 * a request that reaches the V2 layer gets its 4xx with its V2 error code, a
 * JSON body and the API version header (never a 500, never a reset); one that
 * Node's HTTP parser refuses gets that parser's status. Afterwards the mirror
 * still answers GET /v2/, and nothing was written outside storage.dir.
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
	/** The status the mirror answers. */
	status: number;
	/** The V2 error code of a 4xx; omitted for HEAD (no body) and `raw` cases. */
	code?: string;
	/**
	 * The request is refused by Node's HTTP parser before it reaches the V2
	 * layer (huge headers, unknown methods): the status is the parser's, with
	 * no V2 body.
	 */
	/** For a 2xx: the exact body. */
	body200?: Buffer;
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

/** Sends every case; returns one line per case that did not get what it should. */
async function runCases(t: ExecutionContext, env: Env, cases: Case[]): Promise<string[]> {
	const problems: string[] = [];
	for (const entry of cases) {
		const method = entry.method ?? 'GET';
		const response: RawResponse = await rawRequest(env.mirror.url, entry.path, {method, headers: entry.headers, body: entry.body, timeoutMs: 15_000});
		const code = errorCode(response);
		const label = `${entry.name} [${method} ${entry.path.length > 120 ? `${entry.path.slice(0, 120)}…` : entry.path}]`;
		const found = `got ${response.status} ${code ?? '-'}${response.error ? ` (${response.error})` : ''}`;
		if (response.status === 0) {
			problems.push(`${label}: no response at all: ${response.error ?? ''}`);
			continue;
		}

		if (response.status !== entry.status) {
			problems.push(`${label}: expected ${entry.status} ${entry.code ?? ''}, ${found}`);
			continue;
		}

		if (entry.body200 !== undefined) {
			if (!response.complete || !response.body.equals(entry.body200)) {
				problems.push(`${label}: a ${response.status} with the wrong body`);
			}

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

			if (code === undefined || code !== entry.code) {
				problems.push(`${label}: expected code ${entry.code ?? '(none given)'}, ${found}`);
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

test('paths no route matches: 404 NOT_FOUND; an unknown ?ns=: 404 NAME_UNKNOWN; reading a bad tag: 404 MANIFEST_UNKNOWN; escapes: 400 NAME_INVALID', async t => {
	const env = await setup(t);
	// No route of createRouter matches: the error middleware's NOT_FOUND.
	const unrouted = {status: 404, code: 'NOT_FOUND'};
	const cases: Case[] = [
		{name: 'no name', path: '/v2//manifests/latest', ...unrouted},
		{name: 'no name, blob', path: `/v2//blobs/${validDigest}`, ...unrouted},
		{name: 'raw dot-dot to an upload id', path: `/v2/private/up/blobs/uploads/../../../${SENTINEL}`, ...unrouted},
		{name: 'raw dot-dot after the API root', path: `/v2/../../${SENTINEL}`, ...unrouted},
		{name: 'double slash after the API root', path: '/v2//', ...unrouted},
		{name: 'no resource', path: '/v2/private/x', ...unrouted},
		{name: 'unknown resource', path: '/v2/private/x/secrets/latest', ...unrouted},
		{name: 'empty manifest reference', path: '/v2/private/x/manifests/', ...unrouted},
		// NamespaceRouter.resolve: ?ns= names no configured upstream (the value is a query parameter, not a path).
		{name: 'unknown upstream by ns', path: '/v2/team/app/manifests/1?ns=evil.example', status: 404, code: 'NAME_UNKNOWN'},
		{name: 'traversal in ns', path: `/v2/team/app/manifests/1?ns=..%2F..%2F${SENTINEL}`, status: 404, code: 'NAME_UNKNOWN'},
		{name: 'bad tag (reads: no manifest can have it)', path: '/v2/private/x/manifests/-bad', status: 404, code: 'MANIFEST_UNKNOWN'},
		{name: 'tag of 129 characters', path: `/v2/private/x/manifests/${'t'.repeat(129)}`, status: 404, code: 'MANIFEST_UNKNOWN'},
		// rejectEscapes refuses any %-escape but %3A in the path before a handler parses the tag.
		{name: 'tag with escaped dot-dot', path: '/v2/private/x/manifests/%2e%2e', status: 400, code: 'NAME_INVALID'},
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
		// A %-escape in the path is refused by rejectEscapes (NAME_INVALID) before the digest is parsed;
		// in the query (monolithic POST, upload PUT) the digest itself is refused.
		const expect = digest.includes('%') ? {status: 400, code: 'NAME_INVALID'} : {status: 400, code: 'DIGEST_INVALID'};
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

	// RFC 9110 lets a server ignore an unknown range unit; parseRange takes only bytes= and refuses it like a malformed one.
	cases.push({name: 'unknown unit', path: `/v2/private/known/blobs/${env.known.digest}`, headers: {range: 'items=0-5'}, status: 416, code: 'RANGE_INVALID'});
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

test('malformed Content-Range on upload PATCH and PUT: 416 BLOB_UPLOAD_INVALID, or 400 BLOB_UPLOAD_INVALID when the body does not match the range, and the session is still usable', async t => {
	const env = await setup(t);
	const cases: Case[] = [];
	// 416: parseContentRange refuses the header, or UploadService.append finds it does not start where the session ends
	// (ChunkRangeError). 400: the range parses and starts right, but the body that arrived has another length.
	const malformed: Array<[string, string, number, number]> = [
		['not a range', 'abc', 5, 416],
		['end before start', '5-2', 5, 416],
		['equals sign', 'bytes=0-4', 5, 416],
		['negative start', '-1-5', 5, 416],
		['open end', '0-', 5, 416],
		['does not start at the session offset', '10-14', 5, 416],
		['more announced than sent', '0-9', 5, 400],
		['fewer announced than sent', '0-1', 5, 400],
		['huge end', '0-99999999999999999999', 5, 400],
		['bad total', '0-4/abc', 5, 416],
		['hex', '0x0-0x4', 5, 416],
		['spaces', '0 - 4', 5, 416],
	];
	for (const [label, contentRange, length, status] of malformed) {
		const session = await startSession(env);
		cases.push({
			name: `PATCH ${label}`,
			method: 'PATCH',
			path: session,
			headers: {'content-type': 'application/octet-stream', 'content-range': contentRange},
			body: randomBytes(length),
			status,
			code: 'BLOB_UPLOAD_INVALID',
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
			status: 416,
			code: 'BLOB_UPLOAD_INVALID',
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

test('unknown upload ids (random UUID, non-UUID, encoded traversal): 404 BLOB_UPLOAD_UNKNOWN, 400 NAME_INVALID for escapes, never a file', async t => {
	const env = await setup(t);
	// UploadService.status: an id that is no session of this repository; rejectEscapes: a %-escape in the path.
	const unknown = {status: 404, code: 'BLOB_UPLOAD_UNKNOWN'};
	const escaped = {status: 400, code: 'NAME_INVALID'};
	const ids: Array<[string, string, {status: number; code: string}]> = [
		['random UUID', randomUUID(), unknown],
		['nil UUID', '00000000-0000-0000-0000-000000000000', unknown],
		['upper-case UUID', randomUUID().toUpperCase(), unknown],
		['not a UUID', 'not-a-uuid', unknown],
		['36 dashes', '-'.repeat(36), unknown],
		['dots', '....', unknown],
		['300 characters', 'a'.repeat(300), unknown],
		['encoded ../../etc/passwd', '..%2f..%2fetc%2fpasswd', escaped],
		['encoded traversal to the sentinel', `..%2F..%2F..%2F${SENTINEL}`, escaped],
		['encoded dot-dot', '%2e%2e', escaped],
		['NUL', `${randomUUID()}%00`, escaped],
	];
	const cases: Case[] = [];
	for (const [label, id, expect] of ids) {
		const base = `/v2/private/up/blobs/uploads/${id}`;
		cases.push(
			{name: `${label}: status`, path: base, ...expect},
			{name: `${label}: PATCH`, method: 'PATCH', path: base, headers: {'content-type': 'application/octet-stream'}, body: 'hello', ...expect},
			{name: `${label}: PUT`, method: 'PUT', path: `${base}?digest=${sha256(Buffer.from('hello'))}`, headers: {'content-type': 'application/octet-stream'}, body: 'hello', ...expect},
			{name: `${label}: DELETE`, method: 'DELETE', path: base, ...expect},
		);
	}

	// A real session, but asked for through another repository.
	const session = await startSession(env, 'private/a');
	const id = session.split('/').at(-1)!;
	cases.push(
		{name: 'session of another repository: status', path: `/v2/private/b/blobs/uploads/${id}`, status: 404, code: 'BLOB_UPLOAD_UNKNOWN'},
		{name: 'session of another repository: PATCH', method: 'PATCH', path: `/v2/private/b/blobs/uploads/${id}`, body: 'x', status: 404, code: 'BLOB_UPLOAD_UNKNOWN'},
		// writableTargetOf: sessions exist only in local namespaces.
		{name: 'session through a cached namespace', path: `/v2/team/app/blobs/uploads/${id}`, status: 405, code: 'UNSUPPORTED'},
	);
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);
	await assertHealthy(t, env);
});

// --- headers ----------------------------------------------------------------------------------

/** Writes raw bytes on a socket and reads the status line of whatever comes back. */
type Exchange = {status: number; headers: Record<string, string>; body: string; error?: string};

/** Writes `text` on a fresh connection and reads whatever comes back until the server closes it. */
async function rawExchange(url: string, text: string | Buffer): Promise<Exchange> {
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
			const match = /^HTTP\/1\.1 (\d{3})[^\r]*\r\n/.exec(data);
			const end = data.indexOf('\r\n\r\n');
			const headers: Record<string, string> = {};
			for (const line of (match && end > 0 ? data.slice(match[0].length, end) : '').split('\r\n')) {
				const colon = line.indexOf(':');
				if (colon > 0) {
					headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
				}
			}

			resolve({status: match ? Number(match[1]) : 0, headers, body: end > 0 ? data.slice(end + 4) : '', ...(error ? {error} : {})});
		};

		socket.once('error', error => done(error.message));
		socket.once('close', () => done());
		socket.write(text, () => socket.end());
	});
}

/** A V2 error answer to a request Node's parser refused (http/server.ts): status, V2 body, API version, Connection: close. */
function assertParserAnswer(t: ExecutionContext, result: Exchange, status: number, label: string): void {
	t.is(result.status, status, `${label}: status (${result.error ?? 'no error'})`);
	t.is(result.headers['docker-distribution-api-version'], API_VERSION, `${label}: API version header`);
	t.is(result.headers['connection'], 'close', `${label}: Connection: close`);
	t.is(result.headers['content-type'], 'application/json', `${label}: JSON`);
	t.is(Number(result.headers['content-length']), Buffer.byteLength(result.body, 'latin1'), `${label}: the whole body`);
	t.is((JSON.parse(result.body) as {errors: Array<{code: string}>}).errors[0]?.code, 'UNSUPPORTED', `${label}: V2 error code`);
}

test('requests Node\'s parser refuses get a V2 error: 431 for huge headers, 405 for CONNECT, 400 for the rest; never a crash', async t => {
	const env = await setup(t);
	const big = 'x'.repeat(100 * 1024);
	const request = (line: string, headers: string[] = []) => [line, 'Host: x', ...headers, '', ''].join('\r\n');
	// Past the 16 KiB header limit (the request line counts): 431.
	const huge: Array<[string, string]> = [
		['100 KiB header value', request('GET /v2/ HTTP/1.1', [`X-Big: ${big}`])],
		['100 KiB Authorization', request(`GET /v2/private/known/blobs/${env.known.digest} HTTP/1.1`, [`Authorization: Bearer ${big}`])],
		['100 KiB Range', request(`GET /v2/private/known/blobs/${env.known.digest} HTTP/1.1`, [`Range: bytes=${'1'.repeat(100 * 1024)}-`])],
		['100 KiB path', request(`GET /v2/private/${'a'.repeat(100 * 1024)}/manifests/latest HTTP/1.1`)],
		['2000 headers', request('GET /v2/ HTTP/1.1', Array.from({length: 2000}, (_, n) => `X-H-${n}: ${'y'.repeat(40)}`))],
	];
	for (const [label, text] of huge) {
		assertParserAnswer(t, await rawExchange(env.mirror.url, text), 431, label);
	}

	assertParserAnswer(t, await rawExchange(env.mirror.url, request('FOO /v2/ HTTP/1.1')), 400, 'unknown method');
	assertParserAnswer(t, await rawExchange(env.mirror.url, request('CONNECT example.com:443 HTTP/1.1')), 405, 'CONNECT');

	const garbage: Array<[string, string | Buffer]> = [
		['not HTTP', 'hello\r\n\r\n'],
		['space in the path', request('GET /v2/private/a b/manifests/latest HTTP/1.1')],
		['control character in the path', request('GET /v2/private/a\u0001b/tags/list HTTP/1.1')],
		['raw UTF-8 in the path', Buffer.concat([Buffer.from('GET /v2/private/'), Buffer.from('caf\u00e9', 'utf8'), Buffer.from('/tags/list HTTP/1.1\r\nHost: x\r\n\r\n')])],
		['header injection (bare CR)', 'GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: b\rX-B: c\r\n\r\n'],
		['bare LF line ends', 'GET /v2/ HTTP/1.1\nHost: x\nX-A: b\n\n'],
		['header without colon', request('GET /v2/ HTTP/1.1', ['NoColonHere'])],
		['obs-fold', request('GET /v2/ HTTP/1.1', ['X-A: b', ' folded'])],
		['NUL in a header', request('GET /v2/ HTTP/1.1', ['X-A: b\u0000c'])],
		['bad Content-Length', request('PUT /v2/private/m/manifests/latest HTTP/1.1', ['Content-Length: -5'])],
		['two Content-Lengths', 'PUT /v2/private/m/manifests/latest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'],
		['Content-Length and Transfer-Encoding', 'PUT /v2/private/m/manifests/latest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
		['broken chunked framing', 'PUT /v2/private/m/manifests/latest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'],
		['binary', Buffer.from(Array.from({length: 2048}, (_, n) => (n * 37 + 1) % 256))],
	];
	for (const [label, text] of garbage) {
		assertParserAnswer(t, await rawExchange(env.mirror.url, text), 400, label);
	}

	await assertHealthy(t, env);
});

test('malformed Accept, Content-Length and Transfer-Encoding headers: the manifest, MANIFEST_UNKNOWN or 400, never a 500', async t => {
	const env = await setup(t);
	const manifest = dockerManifest(env);
	const pushed = await rawRequest(env.mirror.url, '/v2/private/m/manifests/acc', {method: 'PUT', headers: {'content-type': DOCKER_MANIFEST}, body: manifest});
	t.is(pushed.status, 201, pushed.body.toString());
	// parseAccept keeps the bare types (parameters and empty parts dropped, q=0 excluded); accepts() takes an empty
	// list, */* and application/* as "anything". Whatever else does not name the Docker manifest type is refused
	// by negotiate() as MANIFEST_UNKNOWN.
	const served = {status: 200, body200: manifest};
	const refused = {status: 404, code: 'MANIFEST_UNKNOWN'};
	const accepts: Array<[string, Pick<Case, 'status' | 'code' | 'body200'>]> = [
		['', served],
		[',,,', served],
		[';;;', served],
		['*/*;q=abc', served],
		[`${DOCKER_MANIFEST};q=-1`, served],
		[`${DOCKER_MANIFEST};q=2`, served],
		['text/html', refused],
		[`${'a/b, '.repeat(2000)}${DOCKER_MANIFEST}`, served],
		['*', refused],
		['/', refused],
		['application/*;;;q=0.5,,', served],
	];
	const cases: Case[] = [];
	for (const [accept, expect] of accepts) {
		cases.push({name: `Accept ${JSON.stringify(accept.slice(0, 40))}`, path: '/v2/private/m/manifests/acc', headers: {accept}, ...expect});
	}

	cases.push(
		{name: 'Content-Length: abc', method: 'PUT', path: '/v2/private/m/manifests/x', headers: {'content-length': 'abc'}, status: 400, code: 'UNSUPPORTED'},
		{name: 'Content-Length and Transfer-Encoding', method: 'PUT', path: '/v2/private/m/manifests/x', headers: {'content-length': '2', 'transfer-encoding': 'chunked'}, body: '2\r\n{}\r\n0\r\n\r\n', status: 400, code: 'UNSUPPORTED'},
		// Node's parser refuses a request whose last transfer coding is not chunked.
		{name: 'Transfer-Encoding: gzip', method: 'PATCH', path: `${await startSession(env)}`, headers: {'transfer-encoding': 'gzip'}, body: 'x', status: 400, code: 'UNSUPPORTED'},
		// Without `auth` in the config there is no auth middleware: the header is ignored.
		{name: 'Authorization garbage (no auth configured)', path: '/v2/private/m/manifests/nope', headers: {authorization: 'Basic !!!'}, status: 404, code: 'MANIFEST_UNKNOWN'},
		{name: 'Host header traversal', method: 'POST', path: '/v2/private/up/blobs/uploads/?digest=sha256:bad', headers: {host: `../../${SENTINEL}`}, status: 400, code: 'DIGEST_INVALID'},
	);
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);
	await assertHealthy(t, env);
});

// --- manifests --------------------------------------------------------------------------------

test('invalid, oversized and wrongly typed manifests: 400 MANIFEST_INVALID (or the specific code), 413 over 4 MiB, nothing stored', async t => {
	const env = await setup(t);
	const put = (name: string, body: Buffer | string, contentType: string | undefined, status: number, code: string, reference = 'latest', headers: Record<string, string> = {}): Case => ({
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
		// readBody: over MAX_MANIFEST_BYTES by the declared Content-Length or by what arrives (TooLargeError).
		put('5 MiB with Content-Length', oversized, OCI_MANIFEST, 413, 'MANIFEST_INVALID'),
		{...put('5 MiB chunked', oversized, OCI_MANIFEST, 413, 'MANIFEST_INVALID'), headers: {'content-type': OCI_MANIFEST, 'transfer-encoding': 'chunked'}},
		// The rest of a body over the limit is read and dropped, not cut: the client gets the 413, not a reset.
		put('10 MiB with Content-Length', Buffer.alloc(10 * 1024 * 1024, 0x20), OCI_MANIFEST, 413, 'MANIFEST_INVALID'),
		{...put('10 MiB chunked', Buffer.alloc(10 * 1024 * 1024, 0x20), OCI_MANIFEST, 413, 'MANIFEST_INVALID'), headers: {'content-type': OCI_MANIFEST, 'transfer-encoding': 'chunked'}},
		put('Content-Length larger than the limit, small body', '{}', OCI_MANIFEST, 413, 'MANIFEST_INVALID', 'latest', {'content-length': String(64 * 1024 * 1024)}),
		// Wrong content types for a valid manifest: LocalWriter.putManifest refuses a Content-Type that contradicts
		// the manifest's mediaType, or a type it cannot store, as MANIFEST_INVALID.
		put('text/plain', dockerManifest(env), 'text/plain', 400, 'MANIFEST_INVALID'),
		put('application/json', dockerManifest(env), 'application/json', 400, 'MANIFEST_INVALID'),
		put('a layer media type', dockerManifest(env), 'application/vnd.oci.image.layer.v1.tar', 400, 'MANIFEST_INVALID'),
		put('OCI type for a Docker manifest', dockerManifest(env), OCI_MANIFEST, 400, 'MANIFEST_INVALID'),
		put('no media type anywhere, text/plain', JSON.stringify({schemaVersion: 2, config: {mediaType: 'a/b', size: 1, digest: unknownBlob}, layers: []}), 'text/plain', 400, 'MANIFEST_INVALID'),
		put('a bad tag', dockerManifest(env), DOCKER_MANIFEST, 400, 'TAG_INVALID', '-latest'),
		{name: 'PUT to a cached namespace', method: 'PUT', path: '/v2/team/app/manifests/latest', headers: {'content-type': DOCKER_MANIFEST}, body: dockerManifest(env), status: 405, code: 'UNSUPPORTED'},
	];
	const problems = await runCases(t, env, cases);
	t.deepEqual(problems, []);

	// The repository exists (setup pushed its blobs), so its tag list is there, and empty.
	const tags = await rawRequest(env.mirror.url, '/v2/private/m/tags/list');
	t.is(tags.status, 200);
	t.deepEqual(JSON.parse(tags.body.toString()), {name: 'private/m', tags: []}, 'no tag was created by any of them');
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
		// Node's parser knows PROPFIND (WebDAV): it reaches the router, which has no such route.
		{name: 'PROPFIND a manifest', method: 'PROPFIND', path: '/v2/private/m/manifests/latest', ...unsupported},
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
