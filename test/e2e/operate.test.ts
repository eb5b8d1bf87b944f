import test from 'ava';
import {createServer, type IncomingMessage} from 'node:http';
import {mkdir, rm, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {buildImage, buildIndex, pushImage, pushIndex, sha256} from '../helpers/images.js';
import {closeServer, listenLocal, run, waitFor} from '../helpers/process.js';
import {renderedDom, visibleText} from '../helpers/chromium.js';
import {startStack} from '../helpers/stack.js';

/** The value of one sample in the Prometheus text format, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
	let total = 0;
	for (const line of text.split('\n')) {
		if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) {
			continue;
		}

		if (Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) {
			total += Number(line.slice(line.lastIndexOf(' ') + 1));
		}
	}

	return total;
}

async function pullAll(url: string, name: string, image: Awaited<ReturnType<typeof buildImage>>): Promise<void> {
	await (await fetch(`${url}/v2/${name}/manifests/1`, {headers: {accept: image.mediaType}})).arrayBuffer();
	for (const blob of [image.config, ...image.layers]) {
		await (await fetch(`${url}/v2/${name}/blobs/${blob.digest}`)).arrayBuffer();
	}
}

test('metrics count hits, misses, bytes and upstream requests; healthz and readyz answer', async t => {
	const {upstream, mirror} = await startStack(t);
	const image = await buildImage({layers: 2, layerSize: 256 * 1024});
	await pushImage(upstream.url, 'library/metered', '1', image);
	const blobBytes = [image.config, ...image.layers].reduce((sum, blob) => sum + blob.bytes.length, 0);

	await pullAll(mirror.url, 'library/metered', image);
	await pullAll(mirror.url, 'library/metered', image);
	// A response is counted once the server has finished it, which can be a moment after the client has every byte.
	let metrics = '';
	await waitFor(async () => {
		metrics = await (await fetch(`${mirror.url}/metrics`)).text();
		return sample(metrics, 'registry_mirror_served_bytes_total', {kind: 'blob'}) >= 2 * blobBytes;
	}, 'the served bytes to be counted', 10_000);
	t.is(sample(metrics, 'registry_mirror_cache_requests_total', {kind: 'blob', outcome: 'miss'}), 3);
	t.is(sample(metrics, 'registry_mirror_cache_requests_total', {kind: 'blob', outcome: 'hit'}), 3);
	t.is(sample(metrics, 'registry_mirror_cache_requests_total', {kind: 'manifest', outcome: 'miss'}), 1);
	t.is(sample(metrics, 'registry_mirror_cache_requests_total', {kind: 'manifest', outcome: 'hit'}), 1);
	t.is(sample(metrics, 'registry_mirror_upstream_fetched_bytes_total', {upstream: 'docker.io'}), blobBytes);
	t.is(sample(metrics, 'registry_mirror_served_bytes_total', {kind: 'blob'}), 2 * blobBytes);
	t.is(sample(metrics, 'registry_mirror_upstream_requests_total', {upstream: 'docker.io', kind: 'blob', status: '200'}), 3);
	t.is(sample(metrics, 'registry_mirror_fills_in_flight'), 0);
	t.is(sample(metrics, 'registry_mirror_store_bytes', {kind: 'cached'}), blobBytes + image.manifest.length);
	t.is(sample(metrics, 'registry_mirror_upstream_up', {upstream: 'docker.io'}), 1);
	t.is(sample(metrics, 'registry_mirror_http_requests_total', {route: '/v2/*name/blobs/:digest', method: 'GET', status: '200'}), 6, 'three blobs, pulled twice');

	const health = await fetch(`${mirror.url}/healthz`);
	t.deepEqual([health.status, await health.json()], [200, {status: 'ok'}]);
	const ready = await fetch(`${mirror.url}/readyz`);
	t.deepEqual([ready.status, await ready.json()], [200, {status: 'ready', checks: {storage: 'ok', database: 'ok'}, upstreams: {'docker.io': 'healthy'}}]);

	// An upstream that cannot be reached is reported, and the replica stays ready: it still serves what it has.
	await upstream.stop();
	const offline = await fetch(`${mirror.url}/v2/library/metered/manifests/${'a'.repeat(8)}`);
	t.is(offline.status, 502);
	const stillReady = await fetch(`${mirror.url}/readyz`);
	const report = (await stillReady.json()) as {upstreams: Record<string, string>};
	t.is(stillReady.status, 200);
	t.regex(report.upstreams['docker.io'] ?? '', /^unreachable \(ECONNREFUSED, \d+ s ago\)$/);
	const dashboard = await fetch(`${mirror.url}/?format=json`);
	t.is(((await dashboard.json()) as {upstreams: Array<{reachable: boolean}>}).upstreams[0]?.reachable, false, 'the dashboard says so too');

	// Storage that cannot take a write makes the replica not ready (root ignores permissions: replace the dir by a file).
	const tmp = join(mirror.dataDir, 'tmp');
	await rm(tmp, {recursive: true, force: true});
	await writeFile(tmp, 'not a directory');
	const broken = await fetch(`${mirror.url}/readyz`);
	t.is(broken.status, 503);
	t.regex(((await broken.json()) as {checks: {storage: string}}).checks.storage, /not writable: ENOTDIR/);
	await rm(tmp, {force: true});
	await mkdir(tmp);
});

test('webhooks: push, pull and delete events in the reference envelope, retried after a failure', async t => {
	const received: Array<{contentType: string | undefined; events: Array<{id: string; action: string; target: Record<string, unknown>; actor: Record<string, unknown>}>}> = [];
	let calls = 0;
	const hook = createServer((request: IncomingMessage, response) => {
		const chunks: Buffer[] = [];
		request.on('data', (chunk: Buffer) => chunks.push(chunk));
		request.on('end', () => {
			calls++;
			if (calls === 1) {
				response.statusCode = 500; // the first delivery fails: it must be retried
				response.end();
				return;
			}

			received.push({contentType: request.headers['content-type'], ...(JSON.parse(Buffer.concat(chunks).toString('utf8')) as {events: []})});
			response.end();
		});
	});
	const port = await listenLocal(hook);
	t.teardown(async () => closeServer(hook));
	const {mirror} = await startStack(t, {
		mirror: {extra: {notifications: {endpoints: [{name: 'test', url: `http://127.0.0.1:${port}/events`, backoff: '100ms', events: ['push', 'pull', 'delete']}]}}},
	});
	const image = await buildImage();
	await pushImage(mirror.url, 'private/hooked', '1', image);
	await (await fetch(`${mirror.url}/v2/private/hooked/manifests/1`, {headers: {accept: image.mediaType}})).arrayBuffer();
	t.is((await fetch(`${mirror.url}/v2/private/hooked/manifests/${image.digest}`, {method: 'DELETE'})).status, 202);

	const events = () => received.flatMap(batch => batch.events);
	await waitFor(async () => events().some(event => event.action === 'delete'), 'the delete event');
	t.true(calls >= 2, 'the failed delivery was retried');
	t.true(received.every(batch => batch.contentType === 'application/vnd.docker.distribution.events.v1+json'));
	const manifestPush = events().find(event => event.action === 'push' && event.target['tag'] === '1');
	t.like(manifestPush?.target, {repository: 'private/hooked', tag: '1', digest: image.digest, size: image.manifest.length, length: image.manifest.length});
	const pull = events().find(event => event.action === 'pull');
	t.like(pull?.target, {repository: 'private/hooked', digest: image.digest, tag: '1'});
	t.true(events().filter(event => event.action === 'push').length >= 3, 'blob pushes too');
	t.is(new Set(events().map(event => event.id)).size, events().length, 'each event delivered once');
	t.like(events().find(event => event.action === 'delete')?.target, {repository: 'private/hooked', digest: image.digest});
});

test('prefetch caches chosen platforms ahead of time; the dashboard shows what a person needs in headless Chromium', async t => {
	const {upstream, mirror} = await startStack(t);
	const amd64 = await buildImage({arch: 'amd64', layers: 2});
	const arm64 = await buildImage({arch: 'arm64', layers: 2});
	await pushIndex(upstream.url, 'library/tool', '2', buildIndex([amd64, arm64], 'oci'));
	upstream.resetCounts();

	const result = await run(process.execPath, ['--import', 'tsx', 'src/main.ts', 'prefetch', '--url', mirror.url, '--platform', 'linux/arm64', 'tool:2'], {timeoutMs: 60_000});
	t.is(result.code, 0, result.stdout + result.stderr);
	t.regex(result.stdout, /tool:2: cached/);
	for (const blob of [arm64.config, ...arm64.layers]) {
		t.is(upstream.count({method: 'GET', pathIncludes: blob.digest}), 1, 'every arm64 blob fetched once');
	}

	for (const blob of amd64.layers) {
		t.is(upstream.count({pathIncludes: blob.digest}), 0, 'no amd64 layer fetched');
	}

	upstream.resetCounts();
	for (const blob of arm64.layers) {
		const response = await fetch(`${mirror.url}/v2/tool/blobs/${blob.digest}`);
		t.is(sha256(Buffer.from(await response.arrayBuffer())), blob.digest);
	}

	t.is(upstream.count({kind: 'blob'}), 0, 'prefetched layers are served from the cache');
	const pushed = await buildImage();
	await pushImage(mirror.url, 'private/shown', 'v1', pushed);

	const text = visibleText(await renderedDom(`${mirror.url}/`));
	t.regex(text, /Hit ratio \d+\.\d%/);
	t.regex(text, /Bytes saved [\d.]+ (B|KiB|MiB)/);
	t.regex(text, /Disk use [\d.]+ (B|KiB|MiB) \(no quota\)/);
	t.regex(text, /docker\.io http:\/\/127\.0\.0\.1:\d+ healthy/);
	t.regex(text, /tool \d+/, 'the prefetched image is among the top images');
	t.regex(text, /private\/shown:v1 sha256:[0-9a-f]{12} anonymous/, 'the push is listed');
});
