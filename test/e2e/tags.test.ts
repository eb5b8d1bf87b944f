/**
 * Tag history, pins and the upstream pull budget (issue 16).
 * - history and pins: the reference registry moves a tag; the CLI (a child
 *   process on the running mirror's store) lists what it pointed at and pins
 *   it; docker pulls through the mirror get the pinned digest until unpin.
 * - the budget: the fault upstream counts pulls like Docker Hub (ratelimit-*
 *   headers, 429 once spent, HEADs free).
 */
import {writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import test, {type ExecutionContext} from 'ava';
import {startDockerd} from '../helpers/dockerd.js';
import {type FaultUpstream, rawRequest, startFaultUpstream} from '../helpers/fault-upstream.js';
import {type BuiltImage, buildImage, pushImage} from '../helpers/images.js';
import {type Mirror, startMirror} from '../helpers/mirror.js';
import {run, tempDir} from '../helpers/process.js';
import {startStack} from '../helpers/stack.js';

const TTL_MS = 1000;
const MANIFEST_TYPE = 'application/vnd.docker.distribution.manifest.v2+json';

/** Runs the CLI on the store of `mirror` (a config naming its data dir and the same namespaces). */
async function cliFor(mirror: Mirror): Promise<(...args: string[]) => ReturnType<typeof run>> {
	const dir = await tempDir('tags-cli-');
	const config = join(dir, 'mirror.yml');
	await writeFile(config, `storage: {dir: ${mirror.dataDir}}\nupstreams: {docker.io: {url: http://127.0.0.1:9}}\nnamespaces: [{prefix: private/, local: true}, {prefix: "", upstream: docker.io}]\n`);
	return async (...args: string[]) => run(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args, '--config', config], {timeoutMs: 60_000});
}

async function sleep(ms: number): Promise<void> {
	await new Promise(resolve => setTimeout(resolve, ms));
}

/** The digest the mirror answers for a tag now. */
async function served(mirror: Mirror, name: string, tag: string): Promise<string | null> {
	const response = await fetch(`${mirror.url}/v2/${name}/manifests/${tag}`, {method: 'HEAD', headers: {accept: `${MANIFEST_TYPE}, application/vnd.oci.image.manifest.v1+json`}});
	return response.headers.get('docker-content-digest');
}

type HistoryJson = {
	upstream: string;
	current?: {digest: string; pinned: boolean};
	pin?: {digest: string; pinnedAt: string};
	history: Array<{digest: string; firstSeen: string; lastSeen: string}>;
};

test('history lists every digest a moved tag had; a pin made by the CLI holds for docker pulls through the running mirror until unpin; pinned content survives eviction', async t => {
	t.timeout(300_000);
	const {upstream, mirror} = await startStack(t, {upstream: {tag_ttl: '1s'}, mirror: {extra: {storage: {max_size: '1GiB'}}}});
	const cli = await cliFor(mirror);
	const images: BuiltImage[] = [];
	for (const label of ['one', 'two', 'three', 'four']) {
		images.push(await buildImage({layers: 1, layerSize: 64 * 1024, label}));
	}

	const [one, two, three, four] = images as [BuiltImage, BuiltImage, BuiltImage, BuiltImage];
	// The tag moves twice; the mirror sees each digest once its TTL has run out.
	for (const image of [one, two, three]) {
		await pushImage(upstream.url, 'library/moving', '1', image);
		await sleep(TTL_MS + 100);
		t.is(await served(mirror, 'moving', '1'), image.digest);
	}

	const text = await cli('history', 'moving:1');
	t.is(text.code, 0, text.stderr);
	t.regex(text.stdout, /^moving:1 from docker\.io \(library\/moving\)\n/);
	t.regex(text.stdout, new RegExp(`${three.digest}\\s+\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\s+\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\s+served`));
	const json = await cli('history', 'moving:1', '--json');
	t.is(json.code, 0, json.stderr);
	const report = JSON.parse(json.stdout) as HistoryJson;
	t.deepEqual(report.history.map(entry => entry.digest), [one.digest, two.digest, three.digest]);
	for (const entry of report.history) {
		t.true(Date.parse(entry.firstSeen) <= Date.parse(entry.lastSeen), 'first seen is not after last seen');
	}

	t.true(Date.parse(report.history[0]!.firstSeen) < Date.parse(report.history[1]!.firstSeen), 'in the order the mirror saw them');
	t.like(report, {upstream: 'docker.io', current: {digest: three.digest, pinned: false}});
	// The same through the HTTP API.
	const api = await fetch(`${mirror.url}/api/v1/moving/tags/1/history`);
	t.is(api.status, 200);
	t.deepEqual(((await api.json()) as HistoryJson).history.map(entry => entry.digest), [one.digest, two.digest, three.digest]);

	// Pin (the digest served now) from the CLI while the mirror runs; the upstream moves the tag again.
	const pinned = await cli('pin', 'moving:1');
	t.is(pinned.code, 0, pinned.stderr);
	t.is(pinned.stdout, `pinned moving:1 at ${three.digest}\n`);
	await pushImage(upstream.url, 'library/moving', '1', four);
	await sleep(TTL_MS + 100);
	upstream.resetCounts();
	const dockerd = await startDockerd({mirrorUrl: mirror.url});
	t.teardown(async () => dockerd.stop());
	const pull = await dockerd.docker(['pull', 'moving:1'], 180_000);
	t.is(pull.code, 0, pull.stderr);
	const digestOf = async () => (await dockerd.docker(['image', 'inspect', '--format', '{{index .RepoDigests 0}}', 'moving:1'])).stdout.trim();
	t.is(await digestOf(), `moving@${three.digest}`, 'docker got the pinned digest');
	t.is(upstream.count({pathIncludes: '/manifests/'}), 0, 'a pinned tag is not revalidated');

	// A digest the repository does not have cannot be pinned (the CLI never fetches).
	const absent = await cli('pin', 'moving:1', four.digest);
	t.is(absent.code, 1);
	t.regex(absent.stderr, new RegExp(`^${four.digest} is not cached for moving: pull moving@${four.digest} through the mirror first`));

	// Eviction (a quota smaller than everything cached) keeps the pinned image whole.
	await mirror.registry.access.flush();
	const evicted = await mirror.registry.maintenance.enforceQuota(Number.MAX_SAFE_INTEGER / 2);
	t.true(evicted.manifests >= 1, 'older images were evicted');
	t.truthy(await mirror.registry.metadata.getManifest(three.digest), 'the pinned manifest stays');
	for (const blob of [three.config, ...three.layers]) {
		t.truthy(await mirror.registry.metadata.getBlob(blob.digest), `pinned blob ${blob.digest} stays`);
	}

	t.falsy(await mirror.registry.metadata.getManifest(one.digest), 'an unpinned old image went');

	// Unpinned: after the TTL the next pull gets the tag where the upstream has it now.
	const unpinned = await cli('unpin', 'moving:1');
	t.is(unpinned.code, 0, unpinned.stderr);
	t.is((await cli('unpin', 'moving:1')).code, 1, 'unpinning twice is refused');
	await sleep(TTL_MS + 100);
	t.is((await dockerd.docker(['rmi', 'moving:1'])).code, 0);
	const again = await dockerd.docker(['pull', 'moving:1'], 180_000);
	t.is(again.code, 0, again.stderr);
	t.is(await digestOf(), `moving@${four.digest}`);
	const last = JSON.parse((await cli('history', 'moving:1', '--json')).stdout) as HistoryJson;
	t.deepEqual(last.history.map(entry => entry.digest), [one.digest, two.digest, three.digest, four.digest]);
	t.is(last.pin, undefined);
});

test('pins through the HTTP API: pin, list, unpin; a local name, a bad tag or an uncached tag is a V2 error', async t => {
	const {upstream, mirror} = await startStack(t);
	const image = await buildImage({layers: 1, layerSize: 1024, label: 'api'});
	await pushImage(upstream.url, 'library/api', '2', image);
	t.is(await served(mirror, 'api', '2'), image.digest);

	const pin = await fetch(`${mirror.url}/api/v1/api/tags/2/pin`, {method: 'PUT'});
	t.is(pin.status, 200);
	t.like(await pin.json(), {repository: 'api', tag: '2', digest: image.digest});
	const list = (await (await fetch(`${mirror.url}/api/v1/pins`)).json()) as {pins: Array<{repository: string; tag: string; digest: string}>};
	t.like(list.pins, [{repository: 'library/api', tag: '2', digest: image.digest}]);
	const local = await fetch(`${mirror.url}/api/v1/private/x/tags/1/pin`, {method: 'PUT'});
	t.is(local.status, 405);
	t.is(((await local.json()) as {errors: Array<{code: string}>}).errors[0]?.code, 'UNSUPPORTED');
	const badTag = await fetch(`${mirror.url}/api/v1/api/tags/-bad/history`);
	t.is(badTag.status, 400);
	t.is(((await badTag.json()) as {errors: Array<{code: string}>}).errors[0]?.code, 'TAG_INVALID');
	const notCached = await fetch(`${mirror.url}/api/v1/api/tags/9/pin`, {method: 'PUT'});
	t.is(notCached.status, 404);
	t.is(((await notCached.json()) as {errors: Array<{code: string}>}).errors[0]?.code, 'MANIFEST_UNKNOWN');
	const unpin = await fetch(`${mirror.url}/api/v1/api/tags/2/pin`, {method: 'DELETE'});
	t.is(unpin.status, 200);
	t.is((await fetch(`${mirror.url}/api/v1/api/tags/2/pin`, {method: 'DELETE'})).status, 404);
});

/** A small image on the fault upstream: a config and one layer. */
function addImage(upstream: FaultUpstream, repo: string, tag: string, seed: string): {digest: string; manifest: Buffer} {
	const config = Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', rootfs: {type: 'layers', diff_ids: []}, seed}));
	const layer = Buffer.from(`layer ${seed}`.repeat(100));
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
	return {digest: upstream.addManifest(repo, tag, manifest, MANIFEST_TYPE), manifest};
}

/** One sample of the Prometheus text, undefined when absent. */
function sample(text: string, name: string, upstream: string): number | undefined {
	const line = text.split('\n').find(entry => entry.startsWith(`${name}{`) && entry.includes(`upstream="${upstream}"`));
	return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function getManifest(mirror: Mirror, repo: string, tag: string) {
	return rawRequest(mirror.url, `/v2/${repo}/manifests/${tag}`, {headers: {accept: MANIFEST_TYPE}, timeoutMs: 20_000});
}

async function budgetSetup(t: ExecutionContext, extra: Record<string, unknown>): Promise<{upstream: FaultUpstream; mirror: Mirror}> {
	const upstream = await startFaultUpstream();
	t.teardown(async () => upstream.stop());
	const mirror = await startMirror({upstreams: {fault: {url: upstream.url, tag_ttl: '1s', timeout: '10s', ...extra}}});
	t.teardown(async () => mirror.stop());
	return {upstream, mirror};
}

test('pull budget: under the reserve cached tags are only checked with HEADs; once spent a miss gets 429 with Retry-After, cached tags are still served; the gauges show it', async t => {
	const {upstream, mirror} = await budgetSetup(t, {ratelimit_reserve: 5});
	const cached = addImage(upstream, 'team/cached', '1', 'a');
	upstream.setRateLimit({limit: 100, remaining: 8, source: '203.0.113.9', retryAfter: 1800});

	let response = await getManifest(mirror, 'team/cached', '1');
	t.is(response.status, 200);
	t.is(response.headers['docker-content-digest'], cached.digest);
	let metrics = await (await fetch(`${mirror.url}/metrics`)).text();
	t.is(sample(metrics, 'registry_mirror_upstream_ratelimit_remaining', 'fault'), 7);
	t.is(sample(metrics, 'registry_mirror_upstream_ratelimit_limit', 'fault'), 100);
	t.is(sample(metrics, 'registry_mirror_upstream_ratelimit_window_seconds', 'fault'), 21_600);
	t.is(sample(metrics, 'registry_mirror_upstream_ratelimit_reserve', 'fault'), 5);
	t.is(sample(metrics, 'registry_mirror_upstream_ratelimit_short', 'fault'), 0);
	t.regex(metrics, /registry_mirror_upstream_ratelimit_source\{upstream="fault",source="203\.0\.113\.9"\} 1/);

	// Others spend the budget: remaining falls to 4, under the reserve of 5. The tag moves upstream; past its TTL
	// the mirror's HEAD (not counted) brings the new count and the new digest, and the tag stays served from the cache.
	upstream.setRateLimit({limit: 100, remaining: 4, source: '203.0.113.9', retryAfter: 1800});
	const moved = addImage(upstream, 'team/cached', '1', 'b');
	await sleep(TTL_MS + 100);
	upstream.resetCounts();
	response = await getManifest(mirror, 'team/cached', '1');
	t.is(response.status, 200);
	t.is(response.headers['docker-content-digest'], cached.digest, 'served from the cache');
	t.regex(String(response.headers['warning']), new RegExp(`^299 - "stale: tag is at ${moved.digest} upstream; not fetched while the pull budget is short \\(4 left, reserve 5\\)`));
	t.deepEqual(upstream.requests.map(entry => `${entry.method} ${entry.path}`), ['HEAD /v2/team/cached/manifests/1']);
	t.is(upstream.rateLimitRemaining(), 4);
	metrics = await (await fetch(`${mirror.url}/metrics`)).text();
	t.is(sample(metrics, 'registry_mirror_upstream_ratelimit_short', 'fault'), 1);
	t.is(sample(metrics, 'registry_mirror_upstream_ratelimit_remaining', 'fault'), 4);

	// A miss is content the mirror does not have: the budget is spent on it until it is gone, then 429.
	for (const seed of ['w', 'x', 'y', 'z']) {
		addImage(upstream, `team/miss-${seed}`, '1', seed);
		t.is((await getManifest(mirror, `team/miss-${seed}`, '1')).status, 200);
	}

	t.is(upstream.rateLimitRemaining(), 0);
	addImage(upstream, 'team/fresh', '1', 'fresh');
	const refused = await getManifest(mirror, 'team/fresh', '1');
	t.is(refused.status, 429);
	t.is(refused.headers['retry-after'], '1800');
	t.is((JSON.parse(refused.body.toString()) as {errors: Array<{code: string}>}).errors[0]?.code, 'TOOMANYREQUESTS');
	metrics = await (await fetch(`${mirror.url}/metrics`)).text();
	t.is(sample(metrics, 'registry_mirror_upstream_ratelimit_remaining', 'fault'), 0);
	t.true((sample(metrics, 'registry_mirror_upstream_ratelimit_retry_after_seconds', 'fault') ?? 0) > 1700);
	t.is(sample(metrics, 'registry_mirror_upstream_up', 'fault'), 1, 'a 429 does not open the circuit');
	const page = await (await fetch(`${mirror.url}/`)).text();
	t.regex(page, /0 of 100 per 6 h \(reserve 5: short, cached tags checked with HEADs only\), 429: retry in \d+ s, source 203\.0\.113\.9/, 'the dashboard shows the budget');

	// Cached tags keep being served past their TTL, with no upstream GET (HEADs are free and still answered).
	await sleep(TTL_MS + 100);
	upstream.resetCounts();
	for (let index = 0; index < 3; index++) {
		const answer = await getManifest(mirror, 'team/cached', '1');
		t.is(answer.status, 200);
		t.is(answer.headers['docker-content-digest'], cached.digest);
		t.is((await getManifest(mirror, 'team/miss-x', '1')).status, 200);
	}

	t.is(upstream.count({method: 'GET'}), 0, 'no upstream GET while the budget is spent');
	t.true(upstream.count({method: 'HEAD', kind: 'manifest'}) >= 1);
});

test('max_stale: a cached tag the upstream cannot confirm is served stale up to max_stale past its TTL, then answered with the upstream\'s error', async t => {
	const {upstream, mirror} = await budgetSetup(t, {max_stale: '2s', revalidate_timeout: '5s'});
	const image = addImage(upstream, 'team/old', '1', 'old');
	t.is((await getManifest(mirror, 'team/old', '1')).status, 200);
	upstream.setFault(/\/manifests\//, {kind: 'rate-limit', retryAfter: 60, limit: 100, remaining: 0});

	await sleep(TTL_MS + 100);
	const stale = await getManifest(mirror, 'team/old', '1');
	t.is(stale.status, 200);
	t.is(stale.headers['docker-content-digest'], image.digest);
	t.regex(String(stale.headers['warning']), /^299 - "stale: /);

	await sleep(2000 + 200); // past tag_ttl + max_stale since the last check
	const refused = await getManifest(mirror, 'team/old', '1');
	t.is(refused.status, 429);
	t.is(refused.headers['retry-after'], '60');
	const error = (JSON.parse(refused.body.toString()) as {errors: Array<{code: string; message: string; detail: {reason: string}}>}).errors[0];
	t.is(error?.code, 'TOOMANYREQUESTS');
	t.regex(error?.detail.reason ?? '', /past upstreams\.fault\.max_stale/);

	// When the upstream answers again, the tag is served (and fresh) again.
	upstream.clearFaults();
	const back = await getManifest(mirror, 'team/old', '1');
	t.is(back.status, 200);
	t.is(back.headers['warning'], undefined);
});
