/**
 * `workers: 2`: two worker processes share the port (node's cluster module)
 * and one SQLite store, each with its own memory cache of answers. A miss is
 * still fetched once for the machine, a worker killed mid-fill costs no
 * client wrong bytes, and what one worker (or the CLI) changes is what every
 * worker answers: a tag moved upstream after its TTL, a push at once, a
 * delete at once. Every request below opens its own connection, and the
 * tests check from the logs that both workers answered.
 */
import test, {type ExecutionContext} from 'ava';
import {createHash, randomBytes} from 'node:crypto';
import {readFile, readdir, readlink} from 'node:fs/promises';
import {join} from 'node:path';
import {type RawResponse, rawRequest} from '../helpers/fault-upstream.js';
import {buildImage, pushImage, sha256} from '../helpers/images.js';
import {type MirrorProcess, startMirrorProcess} from '../helpers/mirror-process.js';
import {waitFor} from '../helpers/process.js';
import {type ReferenceRegistry, startReferenceRegistry} from '../helpers/reference-registry.js';
import {startTokenServer} from '../helpers/token-server.js';

const MANIFEST_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

async function upstreamRegistry(t: ExecutionContext, blobBytesPerSecond?: number): Promise<ReferenceRegistry> {
	const tokens = await startTokenServer();
	t.teardown(async () => tokens.stop());
	const upstream = await startReferenceRegistry({tokenServer: tokens, blobBytesPerSecond});
	t.teardown(async () => upstream.stop());
	return upstream;
}

async function mirrorWithWorkers(t: ExecutionContext, upstream: ReferenceRegistry, extra: Record<string, unknown> = {}): Promise<MirrorProcess> {
	const mirror = await startMirrorProcess({
		upstreams: {'docker.io': {url: upstream.url, tag_ttl: '2s'}},
		extra: {workers: 2, ...extra},
	});
	t.teardown(async () => mirror.stop());
	return mirror;
}

/** One request on its own connection, with a request id to find it in the log by. */
async function get(mirror: MirrorProcess, path: string, options: {method?: string; headers?: Record<string, string>; id?: string} = {}): Promise<RawResponse> {
	return rawRequest(mirror.url, path, {method: options.method, headers: {...options.headers, ...(options.id ? {'x-request-id': options.id} : {})}, timeoutMs: 60_000});
}

/** The worker ids the log says answered the requests whose ids start with `prefix`. */
function workersThatAnswered(mirror: MirrorProcess, prefix: string): Set<number> {
	const workers = new Set<number>();
	for (const line of mirror.logs().split('\n')) {
		if (line.includes(`"id":"${prefix}`) && line.includes('"msg":"request"')) {
			const worker = /"worker":(\d+)/.exec(line)?.[1];
			if (worker !== undefined) {
				workers.add(Number(worker));
			}
		}
	}

	return workers;
}

function digestOf(body: Buffer): string {
	return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

test.serial('a herd of 20 clients on one uncached blob across two workers: one upstream GET, every client right bytes, both workers serving', async t => {
	const upstream = await upstreamRegistry(t, 8 * 1024 * 1024);
	const image = await buildImage({layers: 1, layerSize: 16 * 1024 * 1024});
	await pushImage(upstream.url, 'library/herd', '1', image);
	const mirror = await mirrorWithWorkers(t, upstream);
	upstream.resetCounts();
	const layer = image.layers[0]!;

	const results = await Promise.all(
		Array.from({length: 20}, async (_, index) => get(mirror, `/v2/library/herd/blobs/${layer.digest}`, {id: `herd-${index}`})),
	);
	for (const result of results) {
		t.is(result.status, 200, result.status === 200 ? '' : `${result.body.toString('utf8')}\n${mirror.logs().slice(-3000)}`);
		t.true(result.complete, result.error);
		t.is(digestOf(result.body), layer.digest);
	}

	t.is(upstream.count({method: 'GET', kind: 'blob'}), 1, 'one upstream GET for the whole machine');
	await waitFor(async () => workersThatAnswered(mirror, 'herd-').size === 2, 'request log lines of both workers', 10_000);
	t.deepEqual([...workersThatAnswered(mirror, 'herd-')].sort(), [1, 2]);
	// The worker that does not fill asks the filling one where its fill is (HEADs on the internal endpoint) and
	// then reads the temp file itself: no byte of the blob crosses between the workers over HTTP.
	const internal = mirror
		.logs()
		.split('\n')
		.filter(line => line.includes('"msg":"request"') && line.includes(`"path":"/_mirror/fills/${layer.digest}"`))
		.map(line => /"method":"(\w+)"/.exec(line)?.[1]);
	t.true(internal.includes('HEAD'), 'the other worker asked where the fill is');
	t.false(internal.includes('GET'), 'and read no bytes over the internal endpoint');
});

/** The pids of the primary's children (its workers). */
async function workerPids(primary: number): Promise<number[]> {
	const children = await readFile(`/proc/${primary}/task/${primary}/children`, 'utf8');
	return children.trim().split(/\s+/).filter(Boolean).map(Number);
}

/**
 * Which of `pids` has a file of the store's scratch space open for writing: the worker running the fill
 * (the other follows the same file, open read-only).
 */
async function fillingPid(pids: number[], dataDir: string): Promise<number | undefined> {
	for (const pid of pids) {
		const fds = await readdir(`/proc/${pid}/fd`).catch(() => []);
		for (const fd of fds) {
			const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
			const flags = /^flags:\s*(\d+)/m.exec(await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => ''))?.[1];
			if (target.startsWith(join(dataDir, 'tmp')) && flags !== undefined && (Number.parseInt(flags, 8) & 0o3) !== 0) {
				return pid;
			}
		}
	}

	return undefined;
}

test.serial('kill -9 of the worker that fills: clients of the other worker get the right bytes or a cut, never wrong ones; the blob is then served whole', async t => {
	const upstream = await upstreamRegistry(t, 2 * 1024 * 1024); // a 6 s fill: time to find the worker and kill it
	const image = await buildImage({layers: 1, layerSize: 12 * 1024 * 1024});
	await pushImage(upstream.url, 'library/victim', '1', image);
	const mirror = await mirrorWithWorkers(t, upstream);

	upstream.resetCounts();
	const layer = image.layers[0]!;
	const path = `/v2/library/victim/blobs/${layer.digest}`;

	const clients = Array.from({length: 6}, async (_, index) => get(mirror, path, {id: `victim-${index}`}));
	let filler: number | undefined;
	await waitFor(async () => {
		filler = await fillingPid(await workerPids(mirror.pid), mirror.dataDir);
		return filler !== undefined;
	}, 'a worker filling the blob', 20_000);
	process.kill(filler!, 'SIGKILL');

	// Clients of the killed worker lose their connection (before or after the headers); the others carry on.
	const results = await Promise.all(clients);
	for (const result of results) {
		t.true(result.status === 0 || result.status === 200, `status ${result.status}`);
		t.true(result.body.equals(layer.bytes.subarray(0, result.body.length)), 'what arrived is a correct prefix');
		if (result.complete) {
			t.is(digestOf(result.body), layer.digest);
		}
	}

	t.true(results.some(result => result.complete), 'the clients of the surviving worker got the whole blob');
	await waitFor(async () => workersThatAnswered(mirror, 'victim-').size > 0, 'the request log of the surviving worker', 10_000);

	// The primary starts another worker; the blob is served whole, fetched again at most once more.

	await waitFor(async () => (await workerPids(mirror.pid)).length === 2, 'a replacement worker', 20_000);

	await waitFor(async () => mirror.logs().includes('worker exited; starting another'), 'the primary noticing', 5000);

	const again = await Promise.all(Array.from({length: 4}, async () => get(mirror, path)));

	for (const result of again) {
		t.is(result.status, 200);
		t.is(digestOf(result.body), layer.digest);
	}

	t.true(upstream.count({method: 'GET', kind: 'blob'}) <= 2, `at most one refetch (${upstream.count({method: 'GET', kind: 'blob'})} GETs)`);
});

test.serial('a tag moved upstream is answered by every worker after its TTL; within it, from memory without asking the upstream', async t => {
	const upstream = await upstreamRegistry(t);
	const first = await buildImage({label: 'moved-1'});
	const second = await buildImage({label: 'moved-2'});
	await pushImage(upstream.url, 'library/moving', 'latest', first);
	const mirror = await mirrorWithWorkers(t, upstream);
	upstream.resetCounts();
	const path = '/v2/library/moving/manifests/latest';

	t.is((await get(mirror, path, {headers: {accept: MANIFEST_ACCEPT}})).headers['docker-content-digest'], first.digest);
	const warm = await Promise.all(Array.from({length: 10}, async (_, index) => get(mirror, path, {headers: {accept: MANIFEST_ACCEPT}, id: `warm-${index}`})));
	t.deepEqual(new Set(warm.map(response => response.headers['docker-content-digest'])), new Set([first.digest]));
	t.is(upstream.count({method: 'GET', kind: 'manifest'}), 1, 'within the TTL, neither worker asks the upstream again');
	await waitFor(async () => workersThatAnswered(mirror, 'warm-').size === 2, 'both workers answering', 10_000);

	await pushImage(upstream.url, 'library/moving', 'latest', second);
	await new Promise(resolve => setTimeout(resolve, 2500)); // tag_ttl is 2s
	const after = await Promise.all(Array.from({length: 10}, async (_, index) => get(mirror, path, {headers: {accept: MANIFEST_ACCEPT}, id: `moved-${index}`})));
	for (const response of after) {
		t.is(response.headers['docker-content-digest'], second.digest, `${response.status} ${response.error ?? ""} ${response.body.toString("utf8").slice(0, 500)} ${response.status === 0 ? mirror.logs().slice(-6000) : ""}`);
		t.is(sha256(response.body), second.digest);
	}

	await waitFor(async () => workersThatAnswered(mirror, 'moved-').size === 2, 'both workers answering', 10_000);
});

test.serial('a pushed manifest and a delete are what every worker answers at once, though both had the old one in memory', async t => {
	const upstream = await upstreamRegistry(t);
	const mirror = await mirrorWithWorkers(t, upstream);
	const one = await buildImage({label: 'pushed-1'});
	const two = await buildImage({label: 'pushed-2'});
	const path = '/v2/private/app/manifests/v1';
	const read = async (prefix: string) =>
		Promise.all(Array.from({length: 10}, async (_, index) => get(mirror, path, {headers: {accept: MANIFEST_ACCEPT}, id: `${prefix}-${index}`})));

	await pushImage(mirror.url, 'private/app', 'v1', one);
	const before = await read('before');
	t.deepEqual(new Set(before.map(response => response.headers['docker-content-digest'])), new Set([one.digest]));
	await waitFor(async () => workersThatAnswered(mirror, 'before-').size === 2, 'both workers answering', 10_000);

	await pushImage(mirror.url, 'private/app', 'v1', two);
	for (const response of await read('pushed')) {
		t.is(response.status, 200);
		t.is(response.headers['docker-content-digest'], two.digest, 'the new push, from whichever worker');
	}

	const deleted = await get(mirror, `/v2/private/app/manifests/${two.digest}`, {method: 'DELETE'});
	t.is(deleted.status, 202);
	for (const response of await read('deleted')) {
		t.is(response.status, 404);
	}

	await waitFor(async () => workersThatAnswered(mirror, 'deleted-').size === 2, 'both workers answering', 10_000);
});

test.serial('/metrics counts the requests of both workers', async t => {
	const upstream = await upstreamRegistry(t);
	const mirror = await mirrorWithWorkers(t, upstream);
	const blob = randomBytes(1000);
	const digest = digestOf(blob);
	for (let index = 0; index < 10; index++) {
		t.is((await get(mirror, `/v2/private/metrics/blobs/${digest}`, {id: `count-${index}`})).status, 404);
	}

	await waitFor(async () => workersThatAnswered(mirror, 'count-').size === 2, 'both workers answering', 10_000);
	const text = (await get(mirror, '/metrics')).body.toString('utf8');
	const counted = text
		.split('\n')
		.filter(line => line.startsWith('registry_mirror_http_requests_total{') && line.includes('status="404"') && line.includes('/blobs/'))
		.reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
	t.is(counted, 10);
});
