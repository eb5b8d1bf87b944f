import test from 'ava';
import {randomBytes} from 'node:crypto';
import {writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {setTimeout as sleep} from 'node:timers/promises';
import {parseDigest} from '../../src/v2/grammar.js';
import {type BuiltImage, pushImage, sha256} from '../helpers/images.js';
import {run, tempDir} from '../helpers/process.js';
import {startStack} from '../helpers/stack.js';

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const LAYER = 'application/vnd.oci.image.layer.v1.tar';

/** An image from raw blobs (the mirror never looks inside layers). */
function imageOf(layers: Buffer[], label: string): BuiltImage {
	const config = Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', config: {Labels: {label}}, rootfs: {type: 'layers', diff_ids: []}}));
	const manifest = Buffer.from(
		JSON.stringify({
			schemaVersion: 2,
			mediaType: MANIFEST,
			config: {mediaType: 'application/vnd.oci.image.config.v1+json', size: config.length, digest: sha256(config)},
			layers: layers.map(layer => ({mediaType: LAYER, size: layer.length, digest: sha256(layer)})),
		}),
	);
	return {
		manifest,
		digest: sha256(manifest),
		mediaType: MANIFEST,
		config: {digest: sha256(config), bytes: config, mediaType: 'application/vnd.oci.image.config.v1+json'},
		layers: layers.map(layer => ({digest: sha256(layer), bytes: layer, mediaType: LAYER})),
		arch: 'amd64',
	};
}

async function pull(url: string, name: string, image: BuiltImage): Promise<void> {
	const manifest = await fetch(`${url}/v2/${name}/manifests/${image.digest}`, {headers: {accept: MANIFEST}});
	if (manifest.status !== 200) {
		throw new Error(`manifest ${name}: ${manifest.status}`);
	}

	await manifest.arrayBuffer();
	for (const blob of [image.config, ...image.layers]) {
		const response = await fetch(`${url}/v2/${name}/blobs/${blob.digest}`);
		const bytes = Buffer.from(await response.arrayBuffer());
		if (response.status !== 200 || sha256(bytes) !== blob.digest) {
			throw new Error(`blob ${blob.digest} of ${name}: ${response.status}`);
		}
	}
}

test('quota: LRU images are evicted, the newest stays, shared blobs of kept images stay, pushed content is untouched', async t => {
	const MiB = 1024 * 1024;
	const {upstream, mirror} = await startStack(t, {mirror: {extra: {storage: {max_size: '3.5MiB'}}}});
	const {registry} = mirror;
	const shared = randomBytes(128 * 1024);
	const images = ['a', 'b', 'c', 'd', 'e'].map(name => ({name: `library/${name}`, image: imageOf([shared, randomBytes(MiB)], name)}));
	for (const {name, image} of images) {
		await pushImage(upstream.url, name, '1', image);
	}

	// A pushed image in a local namespace: bigger than what the quota leaves, and never evicted.
	const pushed = imageOf([randomBytes(2 * MiB)], 'pushed');
	await pushImage(mirror.url, 'private/kept', '1', pushed);

	for (const {name, image} of images) {
		await pull(mirror.url, name, image);
		await registry.maintenance.enforceQuota(0);
		t.true((await registry.metadata.cachedBytes()) <= 3.5 * MiB, `after ${name}: ${await registry.metadata.cachedBytes()} bytes cached`);
	}

	const newest = images.at(-1)!;
	upstream.resetCounts();
	await pull(mirror.url, newest.name, newest.image);
	t.is(upstream.count({kind: 'blob'}), 0, 'the most recently pulled image is still cached');
	t.true((await registry.metadata.getBlob(sha256(shared))) !== undefined, 'the blob shared with the kept image is still there');
	t.not(await registry.blobs.size(parseDigest(sha256(shared))), undefined);

	const oldest = images[0]!;
	t.is(await registry.metadata.getManifest(oldest.image.digest), undefined, 'the least recently used image was evicted');
	t.is(await registry.blobs.size(parseDigest(oldest.image.layers[1]!.digest)), undefined, 'with its own layer file');

	for (const blob of [pushed.config, ...pushed.layers]) {
		const response = await fetch(`${mirror.url}/v2/private/kept/blobs/${blob.digest}`);
		t.is(sha256(Buffer.from(await response.arrayBuffer())), blob.digest, 'pushed content is untouched');
	}

	// An evicted image comes back from the upstream when asked for again: its config and its own layer
	// (the shared layer is still cached for the kept images, and docker.io is known to have it).
	upstream.resetCounts();
	await pull(mirror.url, oldest.name, oldest.image);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 2);
});

test('gc after deletes frees exactly the unreferenced blobs, also while a push is running; the CLI reports the store', async t => {
	const {mirror} = await startStack(t);
	const {registry} = mirror;
	const shared = randomBytes(64 * 1024);
	const x = imageOf([shared, randomBytes(32 * 1024)], 'x');
	const y = imageOf([shared, randomBytes(32 * 1024)], 'y');
	await pushImage(mirror.url, 'private/x', '1', x);
	await pushImage(mirror.url, 'private/y', '1', y);
	t.is((await fetch(`${mirror.url}/v2/private/x/manifests/${x.digest}`, {method: 'DELETE'})).status, 202);
	await sleep(1200);

	// A push in progress: one blob complete but no manifest yet, one upload half done.
	const fresh = randomBytes(16 * 1024);
	const freshDigest = sha256(fresh);
	t.is((await fetch(`${mirror.url}/v2/private/z/blobs/uploads/?digest=${freshDigest}`, {method: 'POST', body: fresh})).status, 201);
	const session = await fetch(`${mirror.url}/v2/private/z/blobs/uploads/`, {method: 'POST'});
	const location = new URL(session.headers.get('location')!, mirror.url).toString();
	const half = randomBytes(8192);
	const patched = await fetch(location, {method: 'PATCH', body: half.subarray(0, 4096), headers: {'content-range': '0-4095'}});
	t.is(patched.status, 202);

	const dry = await registry.maintenance.gc({dryRun: true, graceMs: 1000});
	t.deepEqual(
		dry.blobs.map(blob => blob.digest).sort(),
		[x.config.digest, x.layers[1]!.digest].sort(),
		'exactly the blobs only the deleted manifest referenced',
	);
	t.not(await registry.metadata.getBlob(x.config.digest), undefined, 'a dry run removes nothing');

	const report = await registry.maintenance.gc({dryRun: false, graceMs: 1000});
	t.deepEqual(report.blobs.map(blob => blob.digest).sort(), [x.config.digest, x.layers[1]!.digest].sort());
	t.is(report.freedBytes, x.config.bytes.length + x.layers[1]!.bytes.length);
	t.is(await registry.blobs.size(parseDigest(x.layers[1]!.digest)), undefined);
	for (const blob of [y.config, ...y.layers]) {
		const response = await fetch(`${mirror.url}/v2/private/y/blobs/${blob.digest}`);
		t.is(sha256(Buffer.from(await response.arrayBuffer())), blob.digest, 'the kept image is whole, its shared layer included');
	}

	// The push carries on: its finished blob and its half upload survived.
	const finished = await fetch(`${location}${location.includes('?') ? '&' : '?'}digest=${sha256(half)}`, {
		method: 'PUT',
		body: half.subarray(4096),
		headers: {'content-range': '4096-8191'},
	});
	t.is(finished.status, 201);
	const z = imageOf([fresh, half], 'z');
	await pushImage(mirror.url, 'private/z', '1', z);
	const zManifest = await fetch(`${mirror.url}/v2/private/z/manifests/1`, {headers: {accept: MANIFEST}});
	t.is(zManifest.status, 200);

	// The CLI reads the same store.
	const dir = await tempDir('cli-');
	const config = join(dir, 'mirror.yml');
	await writeFile(config, `storage: {dir: ${mirror.dataDir}}\nupstreams: {docker.io: {url: http://127.0.0.1:9}}\nnamespaces: [{prefix: private/, local: true}, {prefix: "", upstream: docker.io}]\n`);
	const cli = async (...args: string[]) => run(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args, '--config', config], {timeoutMs: 60_000});
	await registry.access.flush();
	const ls = await cli('ls');
	t.is(ls.code, 0, ls.stderr);
	t.regex(ls.stdout, /private\/y\s+pushed\s+1/);
	t.regex(ls.stdout, /private\/z\s+pushed\s+1/);
	const stats = JSON.parse((await cli('stats', '--json')).stdout) as {pushedRepositories: number; pushedBytes: number};
	t.is(stats.pushedRepositories, 2);
	t.true(stats.pushedBytes > 0);
	const verify = await cli('verify');
	t.is(verify.code, 0, verify.stdout + verify.stderr);
	t.regex(verify.stdout, /verified \d+ blobs: 0 bad, 0 missing, 0 orphaned/);
	const gcDry = await cli('gc', '--dry-run', '--grace', '0s');
	t.is(gcDry.code, 0);
	t.regex(gcDry.stdout, /would remove 0 manifests and 0 blobs/);
	const help = await cli('prefetch', '--help');
	t.regex(help.stdout, /--platform <os\/arch>/);
});
