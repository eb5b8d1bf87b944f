import test from 'ava';
import {setTimeout as sleep} from 'node:timers/promises';
import {buildImage, buildIndex, pushImage, pushIndex} from '../helpers/images.js';
import {startStack} from '../helpers/stack.js';
import {stopSharedStoreServers} from '../helpers/mirror.js';

// Run again on S3 + PostgreSQL with MIRROR_TEST_STORES=s3+postgres (see helpers/mirror.ts).
test.after.always(stopSharedStoreServers);

const API_VERSION = 'registry/2.0';

async function errorOf(response: Response): Promise<string | undefined> {
	const body = (await response.json()) as {errors?: Array<{code: string}>};
	return body.errors?.[0]?.code;
}

test('base, manifests and blobs answer with the exact upstream bytes and the V2 headers', async t => {
	const {upstream, mirror} = await startStack(t);
	const image = await buildImage({layers: 1});
	await pushImage(upstream.url, 'library/hdr', '1', image);

	const base = await fetch(`${mirror.url}/v2/`);
	t.is(base.status, 200);
	t.is(base.headers.get('docker-distribution-api-version'), API_VERSION);
	t.deepEqual(await base.json(), {});

	const head = await fetch(`${mirror.url}/v2/library/hdr/manifests/1`, {method: 'HEAD', headers: {accept: image.mediaType}});
	t.is(head.status, 200);
	t.is(head.headers.get('content-type'), image.mediaType);
	t.is(head.headers.get('docker-content-digest'), image.digest);
	t.is(head.headers.get('content-length'), String(image.manifest.length));
	t.is((await head.arrayBuffer()).byteLength, 0);

	const get = await fetch(`${mirror.url}/v2/library/hdr/manifests/1`, {headers: {accept: image.mediaType}});
	t.deepEqual(Buffer.from(await get.arrayBuffer()), image.manifest);
	t.is(get.headers.get('docker-distribution-api-version'), API_VERSION);

	const layer = image.layers[0]!;
	const blobHead = await fetch(`${mirror.url}/v2/library/hdr/blobs/${layer.digest}`, {method: 'HEAD'});
	t.is(blobHead.status, 200);
	t.is(blobHead.headers.get('content-length'), String(layer.bytes.length));
	t.is(blobHead.headers.get('docker-content-digest'), layer.digest);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 0, 'a HEAD of an uncached blob does not fetch it');

	const blob = await fetch(`${mirror.url}/v2/library/hdr/blobs/${layer.digest}`);
	t.deepEqual(Buffer.from(await blob.arrayBuffer()), layer.bytes);

	const ranged = await fetch(`${mirror.url}/v2/library/hdr/blobs/${layer.digest}`, {headers: {range: 'bytes=10-19'}});
	t.is(ranged.status, 206);
	t.is(ranged.headers.get('content-range'), `bytes 10-19/${layer.bytes.length}`);
	t.deepEqual(Buffer.from(await ranged.arrayBuffer()), layer.bytes.subarray(10, 20));

	const tags = await fetch(`${mirror.url}/v2/hdr/tags/list`);
	t.deepEqual(await tags.json(), {name: 'hdr', tags: ['1']});
});

test('errors are V2 JSON with the right code and status, and carry the API version header', async t => {
	const {mirror} = await startStack(t);
	const cases: Array<[string, RequestInit, number, string]> = [
		['/v2/library/nothere/manifests/latest', {}, 404, 'MANIFEST_UNKNOWN'],
		['/v2/library/nothere/blobs/sha256:' + 'a'.repeat(64), {}, 404, 'BLOB_UNKNOWN'],
		['/v2/Upper/manifests/latest', {}, 400, 'NAME_INVALID'],
		['/v2/a//b/manifests/latest', {}, 400, 'NAME_INVALID'],
		['/v2/library%2fapp/manifests/latest', {}, 400, 'NAME_INVALID'],
		['/v2/library/app/manifests/bad:tag!', {}, 400, 'DIGEST_INVALID'],
		['/v2/library/app/manifests/-bad', {}, 404, 'MANIFEST_UNKNOWN'], // no manifest can have this reference (OCI conformance)
		['/v2/library/app/blobs/sha256:xyz', {}, 400, 'DIGEST_INVALID'],
		['/v2/library/app/blobs/md5:' + 'a'.repeat(32), {}, 400, 'DIGEST_INVALID'],
		['/v2/library/app/tags/list?n=x', {}, 400, 'PAGINATION_NUMBER_INVALID'],
		['/v2/no/such/endpoint', {}, 404, 'NOT_FOUND'],
		['/v2/library/app/manifests/latest', {method: 'PUT', body: '{}'}, 405, 'UNSUPPORTED'],
		['/v2/library/app/manifests/latest?ns=quay.io', {}, 404, 'NAME_UNKNOWN'],
	];
	for (const [path, init, status, code] of cases) {
		const response = await fetch(`${mirror.url}${path}`, init);
		t.is(response.status, status, path);
		t.is(response.headers.get('docker-distribution-api-version'), API_VERSION, path);
		t.is(response.headers.get('content-type'), 'application/json; charset=utf-8', path);
		t.is(await errorOf(response), code, path);
	}
});

test('a client that cannot take a manifest list gets the linux/amd64 image, as from the reference registry', async t => {
	const {upstream, mirror} = await startStack(t);
	const amd64 = await buildImage({arch: 'amd64'});
	const arm64 = await buildImage({arch: 'arm64'});
	await pushIndex(upstream.url, 'library/multi', '1', buildIndex([amd64, arm64], 'docker'));

	const response = await fetch(`${mirror.url}/v2/library/multi/manifests/1`, {headers: {accept: amd64.mediaType}});
	t.is(response.status, 200);
	t.is(response.headers.get('docker-content-digest'), amd64.digest);
	t.deepEqual(Buffer.from(await response.arrayBuffer()), amd64.manifest);
});

test('tags: cached within tag_ttl, then revalidated with a HEAD, refetched when moved, stale when the upstream is down', async t => {
	const {upstream, mirror} = await startStack(t, {upstream: {tag_ttl: '1s'}});
	const first = await buildImage({label: 'one'});
	await pushImage(upstream.url, 'library/moving', 'latest', first);
	const url = `${mirror.url}/v2/library/moving/manifests/latest`;
	const digestOf = async () => {
		const response = await fetch(url);
		await response.arrayBuffer();
		return {status: response.status, digest: response.headers.get('docker-content-digest'), warning: response.headers.get('warning')};
	};

	upstream.resetCounts();
	t.deepEqual(await digestOf(), {status: 200, digest: first.digest, warning: null});
	t.deepEqual(await digestOf(), {status: 200, digest: first.digest, warning: null});
	t.is(upstream.count({kind: 'manifest'}), 1, 'the second request within the TTL never reached the upstream');

	await sleep(1100);
	upstream.resetCounts();
	t.deepEqual(await digestOf(), {status: 200, digest: first.digest, warning: null});
	t.is(upstream.count({method: 'HEAD', kind: 'manifest'}), 1, 'revalidated with one HEAD');
	t.is(upstream.count({method: 'GET', kind: 'manifest'}), 0, 'unchanged: no GET');

	const second = await buildImage({label: 'two'});
	await pushImage(upstream.url, 'library/moving', 'latest', second);
	await sleep(1100);
	upstream.resetCounts();
	t.deepEqual(await digestOf(), {status: 200, digest: second.digest, warning: null});
	t.is(upstream.count({method: 'GET', kind: 'manifest'}), 1, 'moved: fetched once');

	await upstream.stop();
	await sleep(1100);
	const stale = await digestOf();
	t.is(stale.status, 200);
	t.is(stale.digest, second.digest);
	t.is(stale.warning, '299 - "stale: upstream docker.io failed (upstream docker.io unreachable); serving the cached copy"');

	const missing = await fetch(`${mirror.url}/v2/library/never-pulled/manifests/latest`);
	t.is(missing.status, 502);
	t.is(await errorOf(missing), 'UNAVAILABLE');
});
