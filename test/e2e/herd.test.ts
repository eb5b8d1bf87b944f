import test from 'ava';
import {randomBytes} from 'node:crypto';
import {pushImage, sha256, type BuiltImage} from '../helpers/images.js';
import {startStack} from '../helpers/stack.js';
import {stopSharedStoreServers} from '../helpers/mirror.js';

/** An "image" whose one layer is a big random blob; the mirror never parses layers. */
// Run again on S3 + PostgreSQL with MIRROR_TEST_STORES=s3+postgres (see helpers/mirror.ts).
test.after.always(stopSharedStoreServers);

function bigBlobImage(size: number): BuiltImage {
	const layer = randomBytes(size);
	const config = Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', rootfs: {type: 'layers', diff_ids: []}}));
	const manifest = Buffer.from(
		JSON.stringify({
			schemaVersion: 2,
			mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
			config: {mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha256(config)},
			layers: [{mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: sha256(layer)}],
		}),
	);
	return {
		manifest,
		digest: sha256(manifest),
		mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
		config: {digest: sha256(config), bytes: config, mediaType: 'application/vnd.docker.container.image.v1+json'},
		layers: [{digest: sha256(layer), bytes: layer, mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip'}],
		arch: 'amd64',
	};
}

test('10 concurrent clients on one uncached 48 MiB blob: exactly one upstream GET, every client gets the right bytes', async t => {
	const {upstream, mirror} = await startStack(t);
	const image = bigBlobImage(48 * 1024 * 1024);
	await pushImage(upstream.url, 'library/big', '1', image);
	upstream.resetCounts();
	const layer = image.layers[0]!;

	const results = await Promise.all(
		Array.from({length: 10}, async () => {
			const response = await fetch(`${mirror.url}/v2/library/big/blobs/${layer.digest}`);
			const body = Buffer.from(await response.arrayBuffer());
			return {status: response.status, length: response.headers.get('content-length'), digest: sha256(body), size: body.length};
		}),
	);
	for (const result of results) {
		t.deepEqual(result, {status: 200, length: String(layer.bytes.length), digest: layer.digest, size: layer.bytes.length});
	}

	t.is(upstream.count({method: 'GET', kind: 'blob'}), 1, 'one upstream fetch for ten clients');
	const cached = await fetch(`${mirror.url}/v2/library/big/blobs/${layer.digest}`, {method: 'HEAD'});
	t.is(cached.status, 200);
	t.is(upstream.count({kind: 'blob'}), 1);
});

test('a client that goes away does not stop the fill: the blob ends up cached and verified', async t => {
	const {upstream, mirror} = await startStack(t);
	const image = bigBlobImage(24 * 1024 * 1024);
	await pushImage(upstream.url, 'library/leaver', '1', image);
	upstream.resetCounts();
	const layer = image.layers[0]!;

	const controller = new AbortController();
	const response = await fetch(`${mirror.url}/v2/library/leaver/blobs/${layer.digest}`, {signal: controller.signal});
	t.is(response.status, 200);
	const reader = response.body!.getReader();
	await reader.read();
	controller.abort();

	await mirror.registry.fills.drain();
	const again = await fetch(`${mirror.url}/v2/library/leaver/blobs/${layer.digest}`);
	t.is(sha256(Buffer.from(await again.arrayBuffer())), layer.digest);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 1, 'the abandoned fill completed and served the second request');
});
