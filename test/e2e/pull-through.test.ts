import test from 'ava';
import {buildImage, buildIndex, pushImage, pushIndex} from '../helpers/images.js';
import {tempDir} from '../helpers/process.js';
import {skopeoOk} from '../helpers/skopeo.js';
import {assertCopied, startStack} from '../helpers/stack.js';
import {stopSharedStoreServers} from '../helpers/mirror.js';

// Run again on S3 + PostgreSQL with MIRROR_TEST_STORES=s3+postgres (see helpers/mirror.ts).
test.after.always(stopSharedStoreServers);

test('skopeo inspects and copies a single-platform image through the mirror; a second copy fetches no blob upstream', async t => {
	const {upstream, mirror} = await startStack(t);
	const image = await buildImage({layers: 3, layerSize: 256 * 1024});
	await pushImage(upstream.url, 'library/app', '1', image);
	upstream.resetCounts();

	const raw = await skopeoOk(['inspect', '--raw', '--tls-verify=false', `docker://${mirror.host}/library/app:1`]);
	t.is(raw, image.manifest.toString('utf8'));

	const first = await tempDir('copy-');
	await skopeoOk(['copy', '--src-tls-verify=false', `docker://${mirror.host}/library/app:1`, `dir:${first}`]);
	await assertCopied(t, first, image);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 4, 'config + 3 layers, each fetched once');

	upstream.resetCounts();
	const second = await tempDir('copy-');
	await skopeoOk(['copy', '--src-tls-verify=false', `docker://${mirror.host}/library/app:1`, `dir:${second}`]);
	await assertCopied(t, second, image);
	t.is(upstream.count({kind: 'blob'}), 0, 'no blob request reached the upstream');
	t.is(upstream.count({kind: 'manifest'}), 0, 'the tag is within its TTL: no manifest request either');
});

test('both platforms of an index, each with every layer checked; the index is cached as itself', async t => {
	const {upstream, mirror} = await startStack(t);
	const amd64 = await buildImage({arch: 'amd64', layers: 2, format: 'oci'});
	const arm64 = await buildImage({arch: 'arm64', layers: 2, format: 'oci'});
	const index = buildIndex([amd64, arm64], 'oci');
	await pushIndex(upstream.url, 'team/tools/multi', 'v2', index);

	const raw = await skopeoOk(['inspect', '--raw', '--tls-verify=false', `docker://${mirror.host}/team/tools/multi:v2`]);
	t.is(raw, index.manifest.toString('utf8'));

	for (const [arch, image] of [['amd64', amd64], ['arm64', arm64]] as const) {
		const dir = await tempDir(`copy-${arch}-`);
		await skopeoOk(['copy', '--override-arch', arch, '--src-tls-verify=false', `docker://${mirror.host}/team/tools/multi:v2`, `dir:${dir}`]);
		await assertCopied(t, dir, image);
	}

	// The children were fetched when asked for, and are cached now.
	const response = await fetch(`${mirror.url}/v2/team/tools/multi/manifests/${arm64.digest}`, {headers: {accept: arm64.mediaType}});
	t.is(response.status, 200);
	t.is(response.headers.get('content-type'), arm64.mediaType);
	t.deepEqual(Buffer.from(await response.arrayBuffer()), arm64.manifest);
});

test('a digest-pinned reference pulls through, and single-segment Docker Hub names get library/', async t => {
	const {upstream, mirror} = await startStack(t);
	const image = await buildImage({layers: 2});
	await pushImage(upstream.url, 'library/pinned', null, image);

	const dir = await tempDir('copy-');
	await skopeoOk(['copy', '--src-tls-verify=false', `docker://${mirror.host}/pinned@${image.digest}`, `dir:${dir}`]);
	await assertCopied(t, dir, image);
	t.true(upstream.requests.some(request => request.path === `/v2/library/pinned/manifests/${image.digest}`));
});
