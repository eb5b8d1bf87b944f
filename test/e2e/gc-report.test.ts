/**
 * What `gc` and `stats` tell an operator: a dry run lists what it would
 * remove and what the grace period kept back; a blob larger than the whole
 * quota is served, kept, logged and shown as over the quota.
 */
import test from 'ava';
import {buildImage, pushImage, sha256} from '../helpers/images.js';
import {startMirrorProcess} from '../helpers/mirror-process.js';
import {startReferenceRegistry} from '../helpers/reference-registry.js';
import {formatBytes} from '../../src/util/format.js';

test('gc --dry-run lists the manifests and blobs it would remove, then the totals, and says what the grace period kept', async t => {
	const mirror = await startMirrorProcess();
	t.teardown(async () => mirror.stop());
	const gone = await buildImage({layers: 1, label: 'gc-gone'});
	const kept = await buildImage({layers: 1, label: 'gc-kept'});
	await pushImage(mirror.url, 'private/gone', '1', gone);
	await pushImage(mirror.url, 'private/kept', '1', kept);
	t.is((await fetch(`${mirror.url}/v2/private/gone/manifests/${gone.digest}`, {method: 'DELETE'})).status, 202);

	// Right after the delete, the default grace period (1 h) keeps everything back, and says so.
	const early = await mirror.command(['gc', '--dry-run']);
	t.is(early.code, 0, early.stderr);
	t.is(
		early.stdout,
		'would remove 0 manifests and 0 blobs, 0 B\n' + 'kept 1 manifests and 2 blobs used within the grace period (--grace 1h); they go in a later run\n',
	);

	const dry = await mirror.command(['gc', '--dry-run', '--grace', '0s']);
	t.is(dry.code, 0, dry.stderr);
	const blobs = [gone.config, gone.layers[0]!].sort((a, b) => a.digest.localeCompare(b.digest));
	t.is(
		dry.stdout,
		[
			`would remove manifest private/gone@${gone.digest} (${gone.mediaType}, ${formatBytes(gone.manifest.length)})`,
			...blobs.map(blob => `would remove blob ${blob.digest} (${formatBytes(blob.bytes.length)})`),
			`would remove 1 manifests and 2 blobs, ${formatBytes(blobs.reduce((sum, blob) => sum + blob.bytes.length, 0))}`,
			'',
		].join('\n'),
	);
	const still = await fetch(`${mirror.url}/v2/private/gone/blobs/${gone.layers[0]!.digest}`);
	t.is(still.status, 200, 'a dry run removes nothing');
	await still.arrayBuffer();

	const applied = await mirror.command(['gc', '--grace', '0s']);
	t.regex(applied.stdout, /^removed manifest private\/gone@sha256:[0-9a-f]{64} /m);
	t.regex(applied.stdout, /^removed 1 manifests and 2 blobs, /m);
	t.is((await fetch(`${mirror.url}/v2/private/gone/blobs/${gone.layers[0]!.digest}`)).status, 404);
	const alive = await fetch(`${mirror.url}/v2/private/kept/manifests/1`, {headers: {accept: kept.mediaType}});
	t.is(alive.status, 200);
	await alive.arrayBuffer();
});

test('a blob larger than storage.max_size is served and kept, logged once with the sizes, and stats shows the cache over its quota', async t => {
	const upstream = await startReferenceRegistry();
	t.teardown(async () => upstream.stop());
	const image = await buildImage({layers: 1, layerSize: 3 * 1024 * 1024, label: 'too-big'});
	const big = image.layers[0]!.bytes;
	await pushImage(upstream.url, 'library/big', '1', image);

	const mirror = await startMirrorProcess({upstreams: {'docker.io': {url: upstream.url}}, extra: {storage: {max_size: '1MiB'}}});
	t.teardown(async () => mirror.stop());
	const manifest = await fetch(`${mirror.url}/v2/big/manifests/1`, {headers: {accept: image.mediaType}});
	t.is(manifest.status, 200);
	await manifest.arrayBuffer();
	const response = await fetch(`${mirror.url}/v2/big/blobs/${sha256(big)}`);
	t.is(response.status, 200);
	t.is(sha256(Buffer.from(await response.arrayBuffer())), sha256(big), 'served whole');

	upstream.resetCounts();
	const again = await fetch(`${mirror.url}/v2/big/blobs/${sha256(big)}`);
	t.is(sha256(Buffer.from(await again.arrayBuffer())), sha256(big));
	t.is(upstream.count({kind: 'blob'}), 0, 'kept: the second pull is served from the cache');

	const warnings = mirror.logs().split('\n').filter(line => line.includes('blob larger than storage.max_size'));
	t.is(warnings.length, 1, mirror.logs());
	const warning = JSON.parse(warnings[0]!) as {level: number; digest: string; size: number; maxSize: number};
	t.like(warning, {level: 40, digest: sha256(big), size: big.length, maxSize: 1024 * 1024});

	const stats = await mirror.command(['stats']);
	t.regex(stats.stdout, /^cached {8}3\.0 MiB of 1\.0 MiB quota \(over by 2\.0 MiB\)$/m, stats.stdout);
	const json = JSON.parse((await mirror.command(['stats', '--json'])).stdout) as {cachedBytes: number; maxSize: number; overQuota: boolean};
	t.like(json, {cachedBytes: big.length, maxSize: 1024 * 1024, overQuota: true}, 'everything else cached made room for it');
});
