/**
 * Upstream faults against the scripted fault upstream (test/helpers/fault-upstream.ts).
 * For every fault: what the client got (the V2 error the mirror answers, or
 * the 200 of a fill that had started, cut before its end — never a complete
 * 200 with wrong or short content), that nothing wrong was stored, and that
 * the next request after the upstream recovers gets the right content.
 */
import test, {type ExecutionContext} from 'ava';
import {randomBytes} from 'node:crypto';
import {existsSync} from 'node:fs';
import {readFile, readdir} from 'node:fs/promises';
import {createServer} from 'node:http';
import {join} from 'node:path';
import {setTimeout as sleep} from 'node:timers/promises';
import {
	type Fault,
	type FaultUpstream,
	type FaultUpstreamOptions,
	type RawResponse,
	type TokenFault,
	errorCode,
	rawRequest,
	sha256,
	startFaultUpstream,
} from '../helpers/fault-upstream.js';
import {buildImage, pushImage} from '../helpers/images.js';
import {type Mirror, startMirror} from '../helpers/mirror.js';
import {closeServer, listenLocal, tempDir} from '../helpers/process.js';
import {startStack} from '../helpers/stack.js';

const API_VERSION = 'registry/2.0';
const MANIFEST_TYPE = 'application/vnd.docker.distribution.manifest.v2+json';

type TestImage = {repo: string; tag: string; manifest: Buffer; digest: string; config: {digest: string; bytes: Buffer}; layer: {digest: string; bytes: Buffer}};

/** Registers a small image (config + one random layer) on the fault upstream. */
function addImage(upstream: FaultUpstream, repo: string, tag: string, layerSize = 256 * 1024): TestImage {
	const config = Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', rootfs: {type: 'layers', diff_ids: []}, nonce: randomBytes(8).toString('hex')}));
	const layer = randomBytes(layerSize);
	const configDigest = upstream.addBlob(repo, config);
	const layerDigest = upstream.addBlob(repo, layer);
	const manifest = Buffer.from(
		JSON.stringify({
			schemaVersion: 2,
			mediaType: MANIFEST_TYPE,
			config: {mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: configDigest},
			layers: [{mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: layerDigest}],
		}),
	);
	const digest = upstream.addManifest(repo, tag, manifest, MANIFEST_TYPE);
	return {repo, tag, manifest, digest, config: {digest: configDigest, bytes: config}, layer: {digest: layerDigest, bytes: layer}};
}

type Setup = {upstream: FaultUpstream; mirror: Mirror; image: TestImage};

async function setup(
	t: ExecutionContext,
	options: {upstream?: FaultUpstreamOptions; config?: Record<string, unknown>; layerSize?: number} = {},
): Promise<Setup> {
	const upstream = await startFaultUpstream(options.upstream);
	t.teardown(async () => upstream.stop());
	const mirror = await startMirror({
		// A generous timeout by default (the upstream shares the test's event loop, which may be busy);
		// the tests about timeouts set a short one.
		upstreams: {fault: {url: upstream.url, tag_ttl: '1s', timeout: '10s', ...options.config}},
	});
	t.teardown(async () => mirror.stop());
	const image = addImage(upstream, 'team/app', '1', options.layerSize);
	return {upstream, mirror, image};
}

function blobPath(mirror: Mirror, digest: string): string {
	const hex = digest.slice('sha256:'.length);
	return join(mirror.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

async function getBlob(mirror: Mirror, repo: string, digest: string, headers: Record<string, string> = {}): Promise<RawResponse> {
	return rawRequest(mirror.url, `/v2/${repo}/blobs/${digest}`, {headers, timeoutMs: 20_000});
}

async function getManifest(mirror: Mirror, repo: string, reference: string): Promise<RawResponse> {
	return rawRequest(mirror.url, `/v2/${repo}/manifests/${reference}`, {headers: {accept: MANIFEST_TYPE}, timeoutMs: 20_000});
}

/** Bytes a fill of unknown size withholds until the digest is verified (UNKNOWN_SIZE_HOLDBACK in src/proxy/blob-fill.ts). */
const UNKNOWN_SIZE_HOLDBACK = 64 * 1024;
const LAYER_SIZE = 256 * 1024;

/** What the client gets while a fault lasts. */
type Failure =
	/** A V2 error: the fault struck before the upstream's 200 (UpstreamClient, checkUpstreamStatus). */
	| {status: number; code: string; retryAfter?: string}
	/**
	 * The fill had started, so its 200 was out; then the mirror cut the connection. What arrived is a prefix of
	 * what the upstream sent (its `right` or `wrong` bytes), at most `atMost` bytes (a fill holds back the last
	 * byte of a known size, or UNKNOWN_SIZE_HOLDBACK, until the digest checks).
	 */
	| {status: 200; cut: 'right' | 'wrong'; atMost: number};

const UNAVAILABLE: Failure = {status: 502, code: 'UNAVAILABLE'};

function describeFailure(expected: Failure): string {
	return 'cut' in expected ? 'the 200 of the started fill, cut short' : `${expected.status} ${expected.code}`;
}

function assertFailure(t: ExecutionContext, response: RawResponse, expected: Failure, right: Buffer, what: string): void {
	if (!('cut' in expected)) {
		t.is(response.status, expected.status, `${what}: status (${response.body.toString('utf8', 0, 300)})`);
		t.true(response.complete, `${what}: a complete error response`);
		t.is(response.headers['docker-distribution-api-version'], API_VERSION, `${what}: V2 error`);
		t.is(errorCode(response), expected.code, `${what}: V2 error code`);
		t.is(response.headers['retry-after'], expected.retryAfter, `${what}: Retry-After`);
		return;
	}

	t.is(response.status, 200, `${what}: the fill's 200 was out before the fault`);
	t.false(response.complete, `${what}: then the connection was cut (${response.error ?? 'no error'})`);
	t.true(response.body.length <= expected.atMost, `${what}: ${response.body.length} bytes arrived, at most ${expected.atMost}`);
	const sent = expected.cut === 'right' ? right : Buffer.from(right.map(byte => byte ^ 0xff)); // the fault upstream's wrong bytes
	t.deepEqual(response.body, sent.subarray(0, response.body.length), `${what}: what arrived is what the upstream sent`);
}

function assertOk(t: ExecutionContext, response: RawResponse, expected: Buffer, what: string): void {
	t.is(response.status, 200, `${what}: status (${response.body.toString('utf8', 0, 300)})`);
	t.true(response.complete, `${what}: complete`);
	t.is(sha256(response.body), sha256(expected), `${what}: right bytes`);
}

/**
 * Recovery: the upstream is healthy again, and the very next request gets the
 * right bytes. No test here fails the upstream often enough before recovering
 * to open the circuit breaker (5 failures in a row), so no cool-down is in the way.
 */
async function recovered(t: ExecutionContext, request: () => Promise<RawResponse>, expected: Buffer, what: string): Promise<RawResponse> {
	const response = await request();
	assertOk(t, response, expected, what);
	return response;
}

async function assertNothingStored(t: ExecutionContext, mirror: Mirror, digest: string): Promise<void> {
	await mirror.registry.fills.drain();
	t.false(existsSync(blobPath(mirror, digest)), `no file under blobs/ for ${digest}`);
	t.is(await mirror.registry.metadata.getBlob(digest), undefined, `no blob row for ${digest}`);
	t.deepEqual(await readdir(join(mirror.dataDir, 'tmp')), [], 'tmp/ is empty');
}

async function assertStored(t: ExecutionContext, mirror: Mirror, digest: string): Promise<void> {
	await mirror.registry.fills.drain();
	const file = blobPath(mirror, digest);
	t.true(existsSync(file), `blob file for ${digest}`);
	t.is(sha256(await readFile(file)), digest, 'stored bytes match the digest');
	t.deepEqual(await readdir(join(mirror.dataDir, 'tmp')), [], 'tmp/ is empty');
}

// --- blob body faults -------------------------------------------------------------------------

const blobFault = test.macro({
	/** `gets`: the upstream GETs of one client (UpstreamClient.stream retries a 502/503/504 and a dropped connection twice). */
	async exec(t, fault: Fault, expected: Failure, gets: number) {
		const {upstream, mirror, image} = await setup(t, fault.kind === 'hang' || fault.kind === 'stall' ? {config: {timeout: '1s'}} : {});
		t.is(image.layer.bytes.length, LAYER_SIZE);
		const path = `/v2/team/app/blobs/${image.layer.digest}`;
		const clear = upstream.setFault(path, fault);

		const broken = await getBlob(mirror, 'team/app', image.layer.digest);
		assertFailure(t, broken, expected, image.layer.bytes, `${fault.kind}: first client`);
		t.is(upstream.count({method: 'GET', path}), gets, 'the upstream GETs of one client');
		await assertNothingStored(t, mirror, image.layer.digest);

		// While the fault persists, a second attempt fails the same way and still stores nothing.
		const again = await getBlob(mirror, 'team/app', image.layer.digest);
		assertFailure(t, again, expected, image.layer.bytes, `${fault.kind}: second client`);
		await assertNothingStored(t, mirror, image.layer.digest);

		clear();
		await recovered(t, async () => getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'after recovery');
		await assertStored(t, mirror, image.layer.digest);
		const cached = await getBlob(mirror, 'team/app', image.layer.digest);
		assertOk(t, cached, image.layer.bytes, 'served from the cache');
	},
	title: (_, fault: Fault, expected: Failure) =>
		`blob fault ${JSON.stringify(fault)}: the client gets ${describeFailure(expected)}, nothing is stored, recovery gets the right bytes`,
});

// Faults the digest reveals only at the end (wrong bytes, a complete-looking chunked truncation): the fill's 200
// went out, then the connection is cut; no resume can help.
test(blobFault, {kind: 'wrong-bytes'}, {status: 200, cut: 'wrong', atMost: LAYER_SIZE - 1}, 1);
test(blobFault, {kind: 'wrong-bytes', chunked: true}, {status: 200, cut: 'wrong', atMost: LAYER_SIZE - UNKNOWN_SIZE_HOLDBACK}, 1);
test(blobFault, {kind: 'short', chunked: true}, {status: 200, cut: 'right', atMost: LAYER_SIZE / 2 - UNKNOWN_SIZE_HOLDBACK}, 1);
// A body that breaks on every request without bringing anything new: resumes stop once three answers in a row brought
// nothing (Fill's MAX_IDLE_RESUMES), then the cut. Here the first answer already brought nothing: three GETs; a chunked
// upstream ignores Range, so each resume starts over and breaks where the first did: the first GET and three resumes.
test(blobFault, {kind: 'reset', afterBytes: 0, delayMs: 0}, {status: 200, cut: 'right', atMost: 0}, 3);
test(blobFault, {kind: 'reset', afterBytes: 100 * 1024, chunked: true}, {status: 200, cut: 'right', atMost: 100 * 1024 - UNKNOWN_SIZE_HOLDBACK}, 4);
// No 200 from the upstream: the mirror answers 502 UNAVAILABLE (a 500 is not retried, a 503 and a dropped connection are).
test(blobFault, {kind: 'status', status: 500}, UNAVAILABLE, 1);
test(blobFault, {kind: 'status', status: 503}, UNAVAILABLE, 3);
test(blobFault, {kind: 'hang'}, UNAVAILABLE, 1);
test(blobFault, {kind: 'drop'}, UNAVAILABLE, 3);

/**
 * A body that breaks `times` times (the fault then clears, as on a flaky link): the mirror resumes from the
 * last byte written, the client's one GET gets the whole blob, and the upstream sends every byte exactly once.
 */
const resumedFault = test.macro({
	async exec(t, fault: Fault, times: number, gets: number) {
		// A stall is noticed by the socket timeout: 2 s, so that a loaded machine's slow resumed answer is not taken for another.
		const {upstream, mirror, image} = await setup(t, fault.kind === 'stall' ? {config: {timeout: '2s'}} : {});
		const path = `/v2/team/app/blobs/${image.layer.digest}`;
		upstream.setFault(path, fault, {times, methods: ['GET']});
		assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'one GET through the breaks');
		t.is(upstream.count({method: 'GET', path}), gets, 'the first request and one per break');
		t.is(upstream.bytesSent(path), LAYER_SIZE, 'every byte sent once (1.0x)');
		await assertStored(t, mirror, image.layer.digest);
		assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'then a hit');
		t.is(upstream.count({method: 'GET', path}), gets, 'the hit asks the upstream nothing');
	},
	title: (_, fault: Fault, times: number) => `blob fault ${JSON.stringify(fault)} ${times} time(s): resumed with Range, the client gets the whole blob, the upstream sends it once`,
});

// A reset also discards what the mirror had not read from its socket yet; a second's pause before it lets the
// mirror take the 100 KiB, so every byte is sent once.
test(resumedFault, {kind: 'reset', afterBytes: 100 * 1024, delayMs: 1000}, 1, 2);
test(resumedFault, {kind: 'reset', afterBytes: 100 * 1024, delayMs: 1000}, 2, 3);
test(resumedFault, {kind: 'reset', afterBytes: 100 * 1024, delayMs: 1000, chunked: true}, 1, 2);
test(resumedFault, {kind: 'short'}, 1, 2);
test(resumedFault, {kind: 'short', bytes: LAYER_SIZE - 1}, 1, 2);
test(resumedFault, {kind: 'stall', afterBytes: 64 * 1024}, 1, 2);

test('an upstream that answers a Range request with a 200 from byte 0: the known part is skipped, the bytes are right', async t => {
	const upstream = await startFaultUpstream({ignoreRange: true});
	t.teardown(async () => upstream.stop());
	const mirror = await startMirror({upstreams: {fault: {url: upstream.url, tag_ttl: '1s', timeout: '10s'}}});
	t.teardown(async () => mirror.stop());
	const image = addImage(upstream, 'team/app', '1');
	const path = `/v2/team/app/blobs/${image.layer.digest}`;
	upstream.setFault(path, {kind: 'reset', afterBytes: 100 * 1024, delayMs: 1000}, {times: 1, methods: ['GET']});
	assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'one GET');
	t.is(upstream.count({method: 'GET', path}), 2);
	t.is(upstream.bytesSent(path), LAYER_SIZE + 100 * 1024, 'the second answer started over from byte 0');
	await assertStored(t, mirror, image.layer.digest);
});

test('an upstream that sends no Content-Length: the right bytes (a Range is ignored while the size is unknown), stored once verified', async t => {
	const {upstream, mirror, image} = await setup(t);
	const path = `/v2/team/app/blobs/${image.layer.digest}`;
	upstream.setFault(path, {kind: 'chunked'});
	// getBlob answers as soon as the fill has the upstream's headers: no size yet, so no Range can be checked.
	const ranged = await getBlob(mirror, 'team/app', image.layer.digest, {range: 'bytes=10-19'});
	t.true(ranged.complete, 'complete');
	t.is(ranged.status, 200, 'the Range is ignored while the size is unknown');
	t.is(ranged.headers['content-range'], undefined);
	t.is(sha256(ranged.body), image.layer.digest, '200: the whole blob');

	assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'chunked upstream');
	await assertStored(t, mirror, image.layer.digest);
	upstream.clearFaults();
	assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'from the cache');
	t.is(upstream.count({method: 'GET', path}), 1, 'one upstream GET');
});

test('transient faults on manifest requests (one 503, one dropped connection) are retried: the client gets the manifest', async t => {
	const {upstream, mirror, image} = await setup(t);
	upstream.setFault('/v2/team/app/manifests/1', {kind: 'status', status: 503}, {times: 1});
	assertOk(t, await getManifest(mirror, 'team/app', '1'), image.manifest, 'after one 503');
	t.is(upstream.count({method: 'GET', path: '/v2/team/app/manifests/1'}), 2, 'one retry');
	const other = addImage(upstream, 'team/app', '2', 1024);
	upstream.setFault('/v2/team/app/manifests/2', {kind: 'drop'}, {times: 1});
	assertOk(t, await getManifest(mirror, 'team/app', '2'), other.manifest, 'after one dropped connection');
});

test('a transient 503 on an uncached blob GET is retried: the client gets the bytes', async t => {
	const {upstream, mirror, image} = await setup(t);
	const path = `/v2/team/app/blobs/${image.layer.digest}`;
	upstream.setFault(path, {kind: 'status', status: 503}, {times: 1});
	assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'after one 503');
	await assertStored(t, mirror, image.layer.digest);
});

test('a connection dropped before the response on an uncached blob GET is retried: the client gets the bytes', async t => {
	const {upstream, mirror, image} = await setup(t);
	const path = `/v2/team/app/blobs/${image.layer.digest}`;
	upstream.setFault(path, {kind: 'drop'}, {times: 1});
	assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'after one dropped connection');
	await assertStored(t, mirror, image.layer.digest);
});

test('429 on an uncached blob: the client gets 429 TOOMANYREQUESTS with the upstream\'s Retry-After, nothing is stored, recovery works', async t => {
	const {upstream, mirror, image} = await setup(t);
	const path = `/v2/team/app/blobs/${image.layer.digest}`;
	const clear = upstream.setFault(path, {kind: 'rate-limit', retryAfter: 17, limit: 100, remaining: 0});
	const limited = await getBlob(mirror, 'team/app', image.layer.digest);
	// UpstreamClient: a 429 is not retried; checkServerSide throws TOOMANYREQUESTS with the Retry-After.
	assertFailure(t, limited, {status: 429, code: 'TOOMANYREQUESTS', retryAfter: '17'}, image.layer.bytes, '429');
	t.is(upstream.count({method: 'GET', path}), 1, 'one upstream GET');

	await assertNothingStored(t, mirror, image.layer.digest);
	clear();
	await recovered(t, async () => getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'after recovery');
	await assertStored(t, mirror, image.layer.digest);
});

test('slow body, longer in total than the timeout but never silent that long: two clients get the right bytes from one upstream GET', async t => {
	const {upstream, mirror, image} = await setup(t, {layerSize: 96 * 1024, config: {timeout: '2s'}});
	const path = `/v2/team/app/blobs/${image.layer.digest}`;
	// 12 pieces, 250 ms apart: 2.75 s in all against a 2 s timeout.
	upstream.setFault(path, {kind: 'slow', chunkSize: 8 * 1024, delayMs: 250});
	let firstByteAt = 0;
	const first = rawRequest(mirror.url, path, {
		timeoutMs: 20_000,
		onData() {
			firstByteAt ||= Date.now();
		},
	});
	await sleep(300);
	const second = getBlob(mirror, 'team/app', image.layer.digest);
	const [a, b] = await Promise.all([first, second]);
	assertOk(t, a, image.layer.bytes, 'first client');
	assertOk(t, b, image.layer.bytes, 'second client (joined the running fill)');
	const upstreamDone = upstream.requests.find(entry => entry.path === path && entry.method === 'GET')?.finishedAt ?? 0;
	t.true(firstByteAt > 0 && firstByteAt < upstreamDone, `the first bytes reached the client before the upstream had finished sending (${upstreamDone - firstByteAt} ms earlier)`);
	t.is(upstream.count({method: 'GET', path}), 1, 'one upstream GET');
	await assertStored(t, mirror, image.layer.digest);
});

test('connection refused: an uncached blob and manifest fail with 502 UNAVAILABLE, nothing is stored, recovery works', async t => {
	const {upstream, mirror, image} = await setup(t);
	await upstream.refuse();
	// The ping fails to connect (after got's retries): UpstreamClient's unreachable → 502 UNAVAILABLE.
	assertFailure(t, await getBlob(mirror, 'team/app', image.layer.digest), UNAVAILABLE, image.layer.bytes, 'blob');
	assertFailure(t, await getManifest(mirror, 'team/app', '1'), UNAVAILABLE, image.manifest, 'manifest');
	await assertNothingStored(t, mirror, image.layer.digest);
	t.is(await mirror.registry.metadata.getManifest(image.digest), undefined, 'no manifest cached');

	await upstream.accept();
	await recovered(t, async () => getManifest(mirror, 'team/app', '1'), image.manifest, 'manifest after recovery');
	assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'blob after recovery');
	await assertStored(t, mirror, image.layer.digest);
});

// --- manifest faults --------------------------------------------------------------------------

const manifestFault = test.macro({
	async exec(t, fault: Fault, expected: Failure) {
		const {upstream, mirror, image} = await setup(t);
		const byTag = '/v2/team/app/manifests/1';
		const byDigest = `/v2/team/app/manifests/${image.digest}`;
		const clearTag = upstream.setFault(byTag, fault);
		const clearDigest = upstream.setFault(byDigest, fault);

		assertFailure(t, await getManifest(mirror, 'team/app', '1'), expected, image.manifest, 'by tag');
		assertFailure(t, await getManifest(mirror, 'team/app', image.digest), expected, image.manifest, 'by digest');
		t.is(await mirror.registry.metadata.getManifest(image.digest), undefined, 'nothing cached');
		t.is(await mirror.registry.metadata.getTag({registry: 'fault', name: 'team/app'}, '1'), undefined, 'no tag cached');

		clearTag();
		clearDigest();
		await recovered(t, async () => getManifest(mirror, 'team/app', '1'), image.manifest, 'by tag after recovery');
		assertOk(t, await getManifest(mirror, 'team/app', image.digest), image.manifest, 'by digest after recovery');
	},
	title: (_, fault: Fault, expected: Failure) => `manifest fault ${JSON.stringify(fault)}: ${describeFailure(expected)} for the client, nothing cached, recovery`,
});

// Manifests are buffered (UpstreamClient.request) and checked (ProxyManifests.#fetch) before anything is sent.
test(manifestFault, {kind: 'wrong-bytes'}, {status: 502, code: 'DIGEST_INVALID'});
test(manifestFault, {kind: 'short'}, UNAVAILABLE);
test(manifestFault, {kind: 'reset', afterBytes: 10}, UNAVAILABLE);
test(manifestFault, {kind: 'status', status: 502}, UNAVAILABLE);
test(manifestFault, {kind: 'rate-limit', retryAfter: 5}, {status: 429, code: 'TOOMANYREQUESTS', retryAfter: '5'});

// --- auth -------------------------------------------------------------------------------------

const tokenFault = test.macro({
	async exec(t, fault: TokenFault) {
		const {upstream, mirror, image} = await setup(t);
		upstream.setTokenFault(fault);
		// UpstreamClient.#fetchToken: a failed token fetch is 502 UNAVAILABLE, and nothing is cached, so each request asks again.
		assertFailure(t, await getManifest(mirror, 'team/app', '1'), UNAVAILABLE, image.manifest, 'manifest');
		assertFailure(t, await getBlob(mirror, 'team/app', image.layer.digest), UNAVAILABLE, image.layer.bytes, 'blob');
		t.is(upstream.count({kind: 'token'}), 2, 'the token endpoint was asked once per request');
		t.is(upstream.count({kind: 'blob'}), 0, 'no blob request without a token');
		await assertNothingStored(t, mirror, image.layer.digest);

		upstream.setTokenFault(null);
		await recovered(t, async () => getManifest(mirror, 'team/app', '1'), image.manifest, 'manifest after recovery');
		assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'blob after recovery');
		await assertStored(t, mirror, image.layer.digest);
	},
	title: (_, fault: TokenFault) => `token endpoint failing (${String(fault)}): clients get 502 UNAVAILABLE, nothing is stored, recovery works`,
});

test(tokenFault, 500);
test(tokenFault, 'invalid-json');
test(tokenFault, 'no-token');

test('a token that expires during a long blob (earlier than announced): the blob completes, the next request gets a 401 and the mirror renews and retries once', async t => {
	// Tokens really live 1.5 s (announced: 300 s); the blob takes ~2.1 s.
	const {upstream, mirror, image} = await setup(t, {upstream: {tokenExpiresIn: 300, tokenValidMs: 1500}, layerSize: 64 * 1024});
	assertOk(t, await getManifest(mirror, 'team/app', '1'), image.manifest, 'manifest');
	const layerPath = `/v2/team/app/blobs/${image.layer.digest}`;
	upstream.setFault(layerPath, {kind: 'slow', chunkSize: 8 * 1024, delayMs: 300}); // the token dies meanwhile
	assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'slow blob');
	const tokensBefore = upstream.count({kind: 'token'});

	// The mirror still holds the token (announced for 300 s); the upstream now refuses it.
	assertOk(t, await getBlob(mirror, 'team/app', image.config.digest), image.config.bytes, 'next blob');
	const configPath = `/v2/team/app/blobs/${image.config.digest}`;
	const attempts = upstream.requests.filter(entry => entry.path === configPath);
	t.deepEqual(attempts.map(entry => entry.status), [401, 200], 'one 401, one retry');
	t.not(attempts[0]?.authorization, attempts[1]?.authorization, 'the retry carried a new token');
	t.is(upstream.count({kind: 'token'}), tokensBefore + 1, 'renewed once');
	await assertStored(t, mirror, image.config.digest);
});

test('configured credentials go to the upstream\'s own token realm, never to the registry as Basic', async t => {
	const credentials = {username: 'mirror-user', password: 's3cret-pass'};
	const {upstream, mirror, image} = await setup(t, {upstream: {credentials}, config: credentials});
	assertOk(t, await getManifest(mirror, 'team/app', '1'), image.manifest, 'manifest');
	assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'blob');
	const expected = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
	t.is(upstream.tokenRequests.length, 1, 'one token, for the repository\'s pull scope, serves both requests');
	for (const entry of upstream.tokenRequests) {
		t.is(entry.authorization, expected, 'the token request carries the credentials');
	}

	for (const entry of upstream.requests) {
		t.false((entry.authorization ?? '').toLowerCase().startsWith('basic'), `${entry.path}: no Basic credentials to the registry`);
	}
});

test('credentials go to the token realm the upstream\'s /v2/ challenge names, on another host too (auth.docker.io for registry-1.docker.io)', async t => {
	const credentials = {username: 'mirror-user', password: 's3cret-pass'};
	// The registry is 127.0.0.1, the realm is "localhost": another host, but the one the upstream named for itself.
	const {upstream, mirror, image} = await setup(t, {upstream: {realmHost: 'localhost', credentials}, config: credentials});
	t.regex(upstream.realm, /^http:\/\/localhost:\d+\/token$/);
	assertOk(t, await getManifest(mirror, 'team/app', '1'), image.manifest, 'manifest');
	t.is(upstream.tokenRequests.length, 1);
	t.is(upstream.tokenRequests[0]?.authorization, `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`);
});

test('a 401 naming a token realm on another port of the upstream\'s host gets no Authorization', async t => {
	const credentials = {username: 'mirror-user', password: 's3cret-pass'};
	const {upstream, mirror, image} = await setup(t, {upstream: {credentials}, config: credentials});
	const foreign: Array<{authorization: string | undefined; url: string}> = [];
	const server = createServer((request, response) => {
		foreign.push({authorization: request.headers.authorization, url: request.url ?? ''});
		response.writeHead(200, {'content-type': 'application/json'});
		response.end(JSON.stringify({token: 'foreign', expires_in: 300}));
	});
	const port = await listenLocal(server, 0);
	t.teardown(async () => closeServer(server));
	t.not(port, upstream.port);
	upstream.setFault('/v2/team/app/manifests/1', {kind: 'challenge', realm: `http://127.0.0.1:${port}/token`});
	const denied = await getManifest(mirror, 'team/app', '1');
	t.is(denied.status, 404, 'the upstream kept refusing: NAME_UNKNOWN');
	t.is(errorCode(denied), 'NAME_UNKNOWN');
	t.is(upstream.tokenRequests.length, 1, 'the own realm, asked first, with the credentials');
	t.truthy(upstream.tokenRequests[0]?.authorization);
	t.is(foreign.length, 1, 'the realm the 401 named was asked once');
	t.is(foreign[0]?.authorization, undefined, 'without the credentials');
	t.false(foreign[0]?.url.includes(credentials.username), 'no account in the query');
	upstream.clearFaults();
	assertOk(t, await getManifest(mirror, 'team/app', '1'), image.manifest, 'the own realm serves again');
});


test('a blob redirect to a CDN on another host carries no Authorization header, and the bytes are right', async t => {
	const credentials = {username: 'mirror-user', password: 's3cret-pass'};
	const {upstream, mirror, image} = await setup(t, {upstream: {credentials}, config: credentials});
	const path = `/v2/team/app/blobs/${image.layer.digest}`;
	upstream.setFault(path, {kind: 'redirect'});
	assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'blob via the CDN');
	t.true(upstream.requests.some(entry => entry.path === path && entry.authorization?.startsWith('Bearer ')), 'the registry got the Bearer token');
	t.is(upstream.cdnRequests.length, 1, 'the CDN served it');
	t.is(upstream.cdnRequests[0]?.authorization, undefined, 'no Authorization header to the CDN');
	await assertStored(t, mirror, image.layer.digest);
});

test('Basic-auth upstream: the credentials go to the registry, never to the CDN it redirects blob GETs to', async t => {
	const credentials = {username: 'mirror-user', password: 's3cret-pass'};
	const {upstream, mirror, image} = await setup(t, {upstream: {auth: 'basic', credentials}, config: credentials});
	const path = `/v2/team/app/blobs/${image.layer.digest}`;
	upstream.setFault(path, {kind: 'redirect'});
	assertOk(t, await getManifest(mirror, 'team/app', '1'), image.manifest, 'manifest');
	assertOk(t, await getBlob(mirror, 'team/app', image.layer.digest), image.layer.bytes, 'blob via the CDN');
	const basic = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
	t.true(upstream.requests.some(entry => entry.path === path && entry.authorization === basic), 'the registry got Basic credentials');
	t.is(upstream.cdnRequests.length, 1);
	t.is(upstream.cdnRequests[0]?.authorization, undefined, 'no Authorization header to the CDN');
	t.is(upstream.tokenRequests.length, 0);
});

// --- stale-if-error ---------------------------------------------------------------------------

type StaleFault = 'status' | 'rate-limit' | 'hang' | 'refused';

/** Why the revalidation failed, as the Warning quotes it (the upstream client's error message). */
const STALE_REASON: Record<StaleFault, string> = {
	status: 'upstream fault answered 503',
	'rate-limit': 'upstream fault is rate-limiting',
	hang: 'upstream fault unreachable',
	refused: 'upstream fault unreachable',
};
/** The revalidating HEADs the upstream received: a 503 is retried twice; a connection refused reaches nothing. */
const STALE_HEADS: Record<StaleFault, number> = {status: 3, 'rate-limit': 1, hang: 1, refused: 0};

const staleTag = test.macro({
	async exec(t, kind: StaleFault) {
		// The reason quoted is the upstream's answer (or the 1 s timeout): revalidate_timeout is long enough that a
		// loaded machine does not answer first with "no answer within" (that case has a test of its own).
		const {upstream, mirror, image} = await setup(t, {config: {revalidate_timeout: '20s', ...(kind === 'hang' ? {timeout: '1s'} : {})}});
		const first = await recovered(t, async () => getManifest(mirror, 'team/app', '1'), image.manifest, 'first pull');
		t.is(first.headers['warning'], undefined);
		await sleep(1100); // past tag_ttl

		const path = '/v2/team/app/manifests/1';
		upstream.resetCounts();
		let clear: () => Promise<void>;
		if (kind === 'refused') {
			await upstream.refuse();
			clear = async () => upstream.accept();
		} else {
			const fault: Fault = kind === 'status' ? {kind: 'status', status: 503} : kind === 'rate-limit' ? {kind: 'rate-limit', retryAfter: 60} : {kind: 'hang'};
			const off = upstream.setFault(path, fault);
			clear = async () => off();
		}

		const stale = await getManifest(mirror, 'team/app', '1');
		assertOk(t, stale, image.manifest, 'stale copy');
		t.is(stale.headers['docker-content-digest'], image.digest);
		// The distribution-spec's form (ProxyManifests.#stale): warn-code 299, warn-agent "-", the reason quoted.
		t.is(stale.headers['warning'], `299 - "stale: upstream fault failed (${STALE_REASON[kind]}); serving the cached copy"`, 'a Warning header saying the copy is stale');
		t.is(upstream.count({kind: 'manifest', path}), STALE_HEADS[kind], 'the mirror tried to revalidate');

		// A tag that was never cached has nothing to fall back on. The fault is on tag 1's path only, so a
		// reachable upstream answers this tag with its 404; a refused connection is 502 UNAVAILABLE.
		const never = await getManifest(mirror, 'team/app', 'never-pulled');
		assertFailure(t, never, kind === 'refused' ? UNAVAILABLE : {status: 404, code: 'MANIFEST_UNKNOWN'}, image.manifest, 'uncached tag');

		await clear();
		// The stale answer did not mark the tag checked: the next request revalidates, and the copy is fresh again.
		const fresh = await recovered(t, async () => getManifest(mirror, 'team/app', '1'), image.manifest, 'after recovery');
		t.is(fresh.headers['warning'], undefined, 'no Warning once the upstream answers');
	},
	title: (_, kind: StaleFault) => `a cached tag past its TTL is served stale with a Warning when the upstream ${kind === 'status' ? 'answers 503' : kind === 'rate-limit' ? 'answers 429' : kind === 'hang' ? 'hangs past the timeout' : 'refuses connections'}`,
});

test(staleTag, 'status');
test(staleTag, 'rate-limit');
test(staleTag, 'hang');
test(staleTag, 'refused');

test('a hanging upstream: a cached tag past its TTL is answered within revalidate_timeout, stale, while the revalidation carries on', async t => {
	// The upstream timeout (60 s) is far past the client's patience (20 s): only the bound lets the client have an answer.
	const {upstream, mirror, image} = await setup(t, {config: {timeout: '60s', revalidate_timeout: '1s'}});
	assertOk(t, await getManifest(mirror, 'team/app', '1'), image.manifest, 'first pull');
	await sleep(1100); // past tag_ttl
	const path = '/v2/team/app/manifests/1';
	upstream.resetCounts();
	upstream.setFault(path, {kind: 'hang'});
	const stale = await getManifest(mirror, 'team/app', '1');
	assertOk(t, stale, image.manifest, 'the stale copy, within the bound');
	t.is(stale.headers['warning'], '299 - "stale: upstream fault failed (no answer within 1000 ms); serving the cached copy"');
	const again = await getManifest(mirror, 'team/app', '1');
	assertOk(t, again, image.manifest, 'a second client joins the revalidation in flight and is answered within the bound too');
	t.is(upstream.count({kind: 'manifest', path}), 1, 'one revalidating HEAD, still hanging');
	upstream.clearFaults();
	await upstream.refuse(); // drops the hanging connection: the revalidation in the background fails
	await upstream.accept();
	const fresh = await recovered(t, async () => getManifest(mirror, 'team/app', '1'), image.manifest, 'after recovery');
	t.is(fresh.headers['warning'], undefined);
});

test('offline upstream: serves only what is cached (404 MANIFEST_UNKNOWN / BLOB_UNKNOWN otherwise) and sends the upstream nothing', async t => {
	const upstream = await startFaultUpstream();
	t.teardown(async () => upstream.stop());
	const image = addImage(upstream, 'team/app', '1', 32 * 1024);
	const other = addImage(upstream, 'team/app', '2', 32 * 1024);
	const dataDir = await tempDir('mirror-offline-');

	const online = await startMirror({upstreams: {fault: {url: upstream.url}}, dataDir});
	assertOk(t, await getManifest(online, 'team/app', '1'), image.manifest, 'online: manifest');
	assertOk(t, await getBlob(online, 'team/app', image.config.digest), image.config.bytes, 'online: config');
	await online.registry.fills.drain();
	await online.stop();

	const offline = await startMirror({upstreams: {fault: {url: upstream.url, offline: true, tag_ttl: '1s'}}, dataDir});
	t.teardown(async () => offline.stop());
	upstream.resetCounts();
	await sleep(1100); // the tag is past its TTL: offline serves it anyway

	assertOk(t, await getManifest(offline, 'team/app', '1'), image.manifest, 'cached tag');
	assertOk(t, await getManifest(offline, 'team/app', image.digest), image.manifest, 'cached digest');
	assertOk(t, await getBlob(offline, 'team/app', image.config.digest), image.config.bytes, 'cached blob');

	const cases: Array<[string, string, number, string]> = [
		['GET', `/v2/team/app/manifests/2`, 404, 'MANIFEST_UNKNOWN'],
		['GET', `/v2/team/app/manifests/${other.digest}`, 404, 'MANIFEST_UNKNOWN'],
		['GET', `/v2/team/app/blobs/${image.layer.digest}`, 404, 'BLOB_UNKNOWN'],
		['GET', `/v2/other/repo/manifests/latest`, 404, 'MANIFEST_UNKNOWN'],
	];
	for (const [method, path, status, code] of cases) {
		const response = await rawRequest(offline.url, path, {method, headers: {accept: MANIFEST_TYPE}});
		t.is(response.status, status, path);
		t.is(errorCode(response), code, path);
	}

	const head = await rawRequest(offline.url, `/v2/team/app/blobs/${image.layer.digest}`, {method: 'HEAD'});
	t.is(head.status, 404, 'HEAD of an uncached blob');
	const headCached = await rawRequest(offline.url, `/v2/team/app/blobs/${image.config.digest}`, {method: 'HEAD'});
	t.is(headCached.status, 200, 'HEAD of a cached blob');

	await offline.registry.fills.drain();
	t.is(upstream.requests.length + upstream.tokenRequests.length + upstream.cdnRequests.length, 0, 'the upstream heard nothing');
});

test('against the real reference registry: stopped, the cached tag is served stale with a Warning; restarted, fresh again; an offline mirror on the same data serves the cache and asks nothing', async t => {
	const {upstream, mirror} = await startStack(t, {upstream: {tag_ttl: '1s', timeout: '5s'}});
	const image = await buildImage({layers: 1, layerSize: 16 * 1024});
	const layer = image.layers[0]!;
	await pushImage(upstream.url, 'library/stale', '1', image);
	assertOk(t, await getManifest(mirror, 'library/stale', '1'), image.manifest, 'first pull');
	assertOk(t, await getBlob(mirror, 'library/stale', layer.digest), layer.bytes, 'layer');
	await mirror.registry.fills.drain();

	await upstream.stop();
	await sleep(1100);
	const stale = await getManifest(mirror, 'library/stale', '1');
	assertOk(t, stale, image.manifest, 'stale tag');
	t.is(stale.headers['warning'], '299 - "stale: upstream docker.io failed (upstream docker.io unreachable); serving the cached copy"');
	assertOk(t, await getManifest(mirror, 'library/stale', image.digest), image.manifest, 'cached digest while the upstream is down');
	assertOk(t, await getBlob(mirror, 'library/stale', layer.digest), layer.bytes, 'cached layer while the upstream is down');
	const missing = await getBlob(mirror, 'library/stale', image.config.digest);
	assertFailure(t, missing, UNAVAILABLE, image.config.bytes, 'an uncached blob cannot be served');

	await upstream.start();
	const fresh = await recovered(t, async () => getManifest(mirror, 'library/stale', '1'), image.manifest, 'after the restart');
	t.is(fresh.headers['warning'], undefined, 'fresh again');
	t.is(fresh.headers['docker-content-digest'], image.digest);

	await mirror.stop();
	const offline = await startMirror({upstreams: {'docker.io': {url: upstream.url, offline: true}}, dataDir: mirror.dataDir});
	t.teardown(async () => offline.stop());
	upstream.resetCounts();
	assertOk(t, await getManifest(offline, 'library/stale', '1'), image.manifest, 'offline: cached tag');
	assertOk(t, await getBlob(offline, 'library/stale', layer.digest), layer.bytes, 'offline: cached layer');
	const config = await getBlob(offline, 'library/stale', image.config.digest);
	t.is(config.status, 404, 'offline: an uncached blob');
	t.is(errorCode(config), 'BLOB_UNKNOWN');
	const other = await getManifest(offline, 'library/stale', '2');
	t.is(other.status, 404, 'offline: an uncached tag');
	t.is(errorCode(other), 'MANIFEST_UNKNOWN');
	t.is(upstream.requests.length, 0, 'the offline mirror sent the upstream nothing');
});

test('a 404 from the upstream for a manifest is cached briefly: a second request within a second does not reach the upstream', async t => {
	const {upstream, mirror} = await setup(t);
	const path = '/v2/team/app/manifests/typo';
	const first = await getManifest(mirror, 'team/app', 'typo');
	t.is(first.status, 404);
	t.is(errorCode(first), 'MANIFEST_UNKNOWN');
	const second = await getManifest(mirror, 'team/app', 'typo');
	t.is(second.status, 404);
	t.is(errorCode(second), 'MANIFEST_UNKNOWN');
	t.is(upstream.count({kind: 'manifest', path}), 1, 'one upstream request for two client requests');
});

const circuitBreaker = test.macro({
	async exec(t, warm: boolean) {
		// A short timeout keeps this quick: without a breaker every client waits 500 ms per attempt.
		const {upstream, mirror, image} = await setup(t, {config: {timeout: '500ms'}});
		if (warm) {
			await recovered(t, async () => getManifest(mirror, 'team/app', '1'), image.manifest, 'warm-up (ping and token cached)');
		}

		upstream.setFault(/.*/, {kind: 'hang'});
		const heard = (): number => upstream.requests.length + upstream.tokenRequests.length + upstream.cdnRequests.length;

		// Ten clients, one after another, each asking for a tag the mirror has never seen. Each of the first five
		// sends one request (the ping from a cold start, else the manifest GET), which times out: 502 UNAVAILABLE.
		// The fifth failure opens the breaker (threshold 5, cool-down 2 s): the other five fail at once with the
		// breaker's 503 UNAVAILABLE, milliseconds later, well within the cool-down.
		const reached: number[] = [];
		const statuses: number[] = [];
		for (let n = 0; n < 10; n++) {
			const before = heard();
			const response = await getManifest(mirror, 'team/app', `dead-${n}`);
			statuses.push(response.status);
			t.is(response.headers['docker-distribution-api-version'], API_VERSION);
			t.is(errorCode(response), 'UNAVAILABLE', `client ${n}: V2 error body`);
			reached.push(heard() - before);
		}

		t.deepEqual(statuses, [502, 502, 502, 502, 502, 503, 503, 503, 503, 503], 'five timeouts, then the open breaker');
		t.deepEqual(reached, [1, 1, 1, 1, 1, 0, 0, 0, 0, 0], 'requests per client: after five failures the rest fail fast without reaching the upstream');
	},
	title: (_, warm: boolean) =>
		`circuit breaker (${warm ? 'after a successful pull' : 'from a cold start'}): once a dead upstream has timed out a few times, the next clients fail fast without reaching it`,
});

test(circuitBreaker, true);
test(circuitBreaker, false);

// --- ranges -----------------------------------------------------------------------------------

test('Range on an uncached blob: 206 with Content-Range; 416 for bytes=999999999-', async t => {
	const {upstream, mirror, image} = await setup(t);
	const size = image.layer.bytes.length;
	const ranged = await getBlob(mirror, 'team/app', image.layer.digest, {range: 'bytes=10-19'});
	t.is(ranged.status, 206);
	t.is(ranged.headers['content-range'], `bytes 10-19/${size}`);
	t.true(ranged.complete);
	t.deepEqual(ranged.body, image.layer.bytes.subarray(10, 20));

	const tail = await getBlob(mirror, 'team/app', image.config.digest, {range: 'bytes=-5'});
	t.is(tail.status, 206, 'suffix range on another uncached blob');
	t.deepEqual(tail.body, image.config.bytes.subarray(-5));
	t.is(tail.headers['content-range'], `bytes ${image.config.bytes.length - 5}-${image.config.bytes.length - 1}/${image.config.bytes.length}`);

	const other = addImage(upstream, 'team/app', '2', 1024);
	const unsatisfiable = await getBlob(mirror, 'team/app', other.layer.digest, {range: 'bytes=999999999-'});
	t.is(unsatisfiable.status, 416);
	t.is(errorCode(unsatisfiable), 'RANGE_INVALID');
	t.is(unsatisfiable.headers['content-range'], `bytes */${other.layer.bytes.length}`);

	await mirror.registry.fills.drain();
	const cachedRange = await getBlob(mirror, 'team/app', image.layer.digest, {range: `bytes=${size - 3}-`});
	t.is(cachedRange.status, 206, 'on the cached blob too');
	t.deepEqual(cachedRange.body, image.layer.bytes.subarray(size - 3));
	const cachedBad = await getBlob(mirror, 'team/app', image.layer.digest, {range: 'bytes=999999999-'});
	t.is(cachedBad.status, 416);
	t.is(cachedBad.headers['content-range'], `bytes */${size}`);
	await assertStored(t, mirror, image.layer.digest);
});

test('a client whose own connection breaks midway resumes with Range and gets the rest from the fill, then from the cache', async t => {
	const {upstream, mirror, image} = await setup(t);
	const path = `/v2/team/app/blobs/${image.layer.digest}`;
	upstream.setFault(path, {kind: 'slow', chunkSize: 16 * 1024, delayMs: 20}, {methods: ['GET']});
	const cut = await rawRequest(mirror.url, path, {timeoutMs: 20_000, abortAfterBytes: 100 * 1024});
	t.is(cut.status, 200);
	t.false(cut.complete, 'the client hung up');
	t.deepEqual(cut.body, image.layer.bytes.subarray(0, cut.body.length), 'what arrived is a correct prefix');

	const rest = await getBlob(mirror, 'team/app', image.layer.digest, {range: `bytes=${cut.body.length}-`});
	t.is(rest.status, 206);
	t.true(rest.complete);
	t.is(rest.headers['content-range'], `bytes ${cut.body.length}-${image.layer.bytes.length - 1}/${image.layer.bytes.length}`);
	t.is(sha256(Buffer.concat([cut.body, rest.body])), image.layer.digest, 'prefix + resumed rest = the blob');
	await assertStored(t, mirror, image.layer.digest);
	t.is(upstream.count({method: 'GET', path}), 1, 'the client leaving did not stop or restart the fill');
});

