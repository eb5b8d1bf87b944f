import {mkdir, writeFile} from 'node:fs/promises';
import path from 'node:path';
import test, {type ExecutionContext} from 'ava';
import {AccessRecorder} from '../../src/store/access.js';
import {GC_GRACE_MS, Maintenance} from '../../src/store/maintenance.js';
import {LOCAL_REGISTRY, type RepoKey} from '../../src/store/metadata.js';
import {silentLogger} from '../../src/util/log.js';
import {type Digest} from '../../src/v2/grammar.js';
import {type Stores, bytes, digestOf, openStores, storeBlob, writeBlobFile} from './fakes.js';

const nginx: RepoKey = {registry: 'docker.io', name: 'library/nginx'};
const redis: RepoKey = {registry: 'docker.io', name: 'library/redis'};
const pushedRepo: RepoKey = {registry: LOCAL_REGISTRY, name: 'private/app'};
const NOW = 100_000_000;

type Image = {manifest: string; manifestSize: number; blobs: Digest[]};

/** An image: its blobs (files and rows) and a manifest referencing them, tagged `tag`, all last used at `now`. */
async function image(h: Stores, repo: RepoKey, tag: string, layers: Buffer[], options: {pushed?: boolean; now: number; shared?: Digest[]}): Promise<Image> {
	const blobs: Digest[] = [];
	for (const layer of layers) {
		blobs.push(await storeBlob(h, repo, layer, {pushed: options.pushed, now: options.now}));
	}

	const references = [...blobs, ...(options.shared ?? [])].map(digest => digest.value);
	const content = Buffer.from(JSON.stringify({schemaVersion: 2, layers: references.map(digest => ({digest}))}));
	const manifest = digestOf(content).value;
	await h.metadata.putManifest({
		repo,
		manifest: {digest: manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json', content},
		tag,
		pushed: options.pushed ?? false,
		references,
		now: options.now,
	});
	return {manifest, manifestSize: content.length, blobs};
}

async function present(h: Stores, digest: Digest): Promise<[row: boolean, file: boolean]> {
	return [(await h.metadata.getBlob(digest.value)) !== undefined, (await h.blobs.size(digest)) !== undefined];
}

type Fixture = Stores & {a: Image; b: Image; p: Image; cached: number};

/** a (least recently used) and b share a layer; p is pushed and older than both. */
async function fixture(t: ExecutionContext): Promise<Fixture> {
	const h = await openStores(t);
	const a = await image(h, nginx, 'latest', [bytes(1000, 1), bytes(2000, 2)], {now: 1000});
	const b = await image(h, redis, 'latest', [bytes(1500, 3)], {now: 2000, shared: [a.blobs[0]!]});
	const p = await image(h, pushedRepo, 'v1', [bytes(4000, 4)], {pushed: true, now: 500});
	const cached = 1000 + 2000 + 1500 + a.manifestSize + b.manifestSize;
	t.is(await h.metadata.cachedBytes(), cached);
	t.is(await h.metadata.pushedBytes(), 4000 + p.manifestSize);
	return {...h, a, b, p, cached};
}

function maintenance(h: Stores, maxSize: number | undefined, access?: AccessRecorder, now = NOW): Maintenance {
	return new Maintenance(h.metadata, h.blobs, access, silentLogger(), maxSize, () => now);
}

test('under the quota nothing is evicted; without a quota nothing ever is', async t => {
	const h = await fixture(t);
	t.deepEqual(await maintenance(h, h.cached).enforceQuota(), {manifests: 0, freedBytes: 0});
	t.deepEqual(await maintenance(h, undefined).enforceQuota(1e12), {manifests: 0, freedBytes: 0});
	t.is(await h.metadata.cachedBytes(), h.cached);
});

test('over the quota the least recently used cached image goes, with the blobs no other image references', async t => {
	const h = await fixture(t);
	t.deepEqual(await maintenance(h, h.cached - 1).enforceQuota(), {manifests: 1, freedBytes: 2000});

	t.is(await h.metadata.getManifest(h.a.manifest), undefined);
	t.is(await h.metadata.getTag(nginx, 'latest'), undefined);
	t.deepEqual(await present(h, h.a.blobs[1]!), [false, false]);
	t.deepEqual(await present(h, h.a.blobs[0]!), [true, true]); // b references it too
	t.truthy(await h.metadata.getManifest(h.b.manifest));
	t.deepEqual(await present(h, h.b.blobs[0]!), [true, true]);
	t.is(await h.metadata.cachedBytes(), h.cached - 2000 - h.a.manifestSize);
});

test('room is made for the incoming bytes', async t => {
	const h = await fixture(t);
	const quota = maintenance(h, h.cached + 100);
	t.deepEqual(await quota.enforceQuota(100), {manifests: 0, freedBytes: 0});
	t.deepEqual(await quota.enforceQuota(101), {manifests: 1, freedBytes: 2000});
	t.truthy(await h.metadata.getManifest(h.b.manifest));
});

test('pushed content is never evicted, even when it alone is over the quota', async t => {
	const h = await fixture(t);
	t.deepEqual(await maintenance(h, 0).enforceQuota(), {manifests: 2, freedBytes: 4500});
	t.is(await h.metadata.cachedBytes(), 0);
	t.truthy(await h.metadata.getManifest(h.p.manifest));
	t.is((await h.metadata.getTag(pushedRepo, 'v1'))?.digest, h.p.manifest);
	t.deepEqual(await present(h, h.p.blobs[0]!), [true, true]);
	t.deepEqual(await maintenance(h, 0).enforceQuota(), {manifests: 0, freedBytes: 0});
});

test('the LRU order includes accesses not yet written: the recorder is flushed first', async t => {
	const h = await fixture(t);
	const access = new AccessRecorder(h.metadata, 3_600_000);
	t.teardown(async () => access.close());
	access.touch('manifest', h.a.manifest, 3000); // a is now more recent than b

	t.deepEqual(await maintenance(h, h.cached - 1, access).enforceQuota(), {manifests: 1, freedBytes: 1500});
	t.is(await h.metadata.getManifest(h.b.manifest), undefined);
	t.truthy(await h.metadata.getManifest(h.a.manifest));
	t.deepEqual(await present(h, h.a.blobs[0]!), [true, true]);
});

test('cached blobs no manifest references go first, unless touched within the last minute', async t => {
	const h = await fixture(t);
	const old = await storeBlob(h, nginx, bytes(700, 5), {now: NOW - 60_001});
	const recent = await storeBlob(h, nginx, bytes(800, 6), {now: NOW - 59_999});
	const cached = h.cached + 1500;

	t.deepEqual(await maintenance(h, cached - 1).enforceQuota(), {manifests: 0, freedBytes: 700});
	t.deepEqual(await present(h, old), [false, false]);
	t.deepEqual(await present(h, recent), [true, true]);
	t.truthy(await h.metadata.getManifest(h.a.manifest));
});

/** A live image, an image no repository links any more, and a blob no manifest references; all last used at 1000. */
async function gcFixture(t: ExecutionContext): Promise<Stores & {live: Image; unlinked: Image; loose: Digest}> {
	const h = await openStores(t);
	const live = await image(h, nginx, 'latest', [bytes(100, 7)], {now: 1000});
	const unlinked = await image(h, redis, 'old', [bytes(200, 8)], {now: 1000, shared: [live.blobs[0]!]});
	t.true(await h.metadata.deleteRepoManifest(redis, unlinked.manifest));
	const loose = await storeBlob(h, pushedRepo, bytes(300, 9), {pushed: true, now: 1000});
	return {...h, live, unlinked, loose};
}

const sortBlobs = (blobs: Array<{digest: string; size: number}>) => [...blobs].sort((x, y) => x.digest.localeCompare(y.digest));

test('gc dry run reports what a run would collect and changes nothing', async t => {
	const h = await gcFixture(t);
	const report = await maintenance(h, undefined, undefined, 1000 + GC_GRACE_MS + 1).gc({dryRun: true});
	t.deepEqual(report.manifests.map(manifest => manifest.digest), [h.unlinked.manifest]);
	t.deepEqual(report.kept, {manifests: 0, blobs: 0});
	t.deepEqual(sortBlobs(report.blobs), sortBlobs([{digest: h.unlinked.blobs[0]!.value, size: 200}, {digest: h.loose.value, size: 300}]));
	t.is(report.freedBytes, 500);
	t.true(report.dryRun);

	t.truthy(await h.metadata.getManifest(h.unlinked.manifest));
	t.deepEqual(await present(h, h.unlinked.blobs[0]!), [true, true]);
	t.deepEqual(await present(h, h.loose), [true, true]);
});

test('gc applied deletes the rows and files it reports; live images and what they reference stay', async t => {
	const h = await gcFixture(t);
	const gc = maintenance(h, undefined, undefined, 1000 + GC_GRACE_MS + 1);
	const report = await gc.gc({dryRun: false});
	t.deepEqual(report.manifests.map(manifest => manifest.digest), [h.unlinked.manifest]);
	t.is(report.freedBytes, 500);
	t.false(report.dryRun);

	t.is(await h.metadata.getManifest(h.unlinked.manifest), undefined);
	t.deepEqual(await present(h, h.unlinked.blobs[0]!), [false, false]);
	t.deepEqual(await present(h, h.loose), [false, false]);
	t.truthy(await h.metadata.getManifest(h.live.manifest));
	t.deepEqual(await present(h, h.live.blobs[0]!), [true, true]);
	t.deepEqual(await gc.gc({dryRun: false}), {manifests: [], blobs: [], kept: {manifests: 0, blobs: 0}, freedBytes: 0, dryRun: false, graceMs: GC_GRACE_MS});
});

test('gc spares what was used within the grace period', async t => {
	const h = await gcFixture(t);
	t.deepEqual(await maintenance(h, undefined, undefined, 1000 + GC_GRACE_MS).gc({dryRun: false}), {
		manifests: [],
		blobs: [],
		kept: {manifests: 1, blobs: 2},
		freedBytes: 0,
		dryRun: false,
		graceMs: GC_GRACE_MS,
	});
	t.is((await maintenance(h, undefined, undefined, 1000 + 5001).gc({dryRun: true, graceMs: 5000})).freedBytes, 500);
	t.deepEqual(await present(h, h.loose), [true, true]);
});

/** A good blob, a corrupted file, a row whose file is missing, and a file without a row. */
async function verifyFixture(t: ExecutionContext): Promise<Stores & {good: Digest; corrupted: Digest; missing: Digest; orphan: Digest; actual: string}> {
	const h = await openStores(t);
	const good = await storeBlob(h, nginx, bytes(1000, 10));
	const corrupted = await storeBlob(h, nginx, bytes(1000, 11));
	await writeFile(h.blobs.pathOf(corrupted), bytes(1000, 12));
	const missing = digestOf(bytes(10, 13));
	await h.metadata.putBlob(nginx, {digest: missing.value, size: 10, pushed: false, now: 1000});
	const orphan = await writeBlobFile(h.blobs, bytes(500, 14));
	return {...h, good, corrupted, missing, orphan, actual: digestOf(bytes(1000, 12)).value};
}

test('verify reports a corrupted file, a missing file and an orphan file, and removes nothing', async t => {
	const h = await verifyFixture(t);
	const misnamed = path.join(h.blobs.blobsDir, 'sha256', 'zz');
	await mkdir(misnamed, {recursive: true});
	await writeFile(path.join(misnamed, 'not-a-digest'), 'x');
	const progress: string[] = [];

	const report = await maintenance(h, undefined).verify({remove: false, onProgress: digest => progress.push(digest)});
	t.is(report.checked, 3);
	t.deepEqual(
		[...report.bad].sort((x, y) => x.digest.localeCompare(y.digest)),
		[
			{digest: h.corrupted.value, actual: h.actual},
			{digest: 'sha256:not-a-digest', actual: 'not a digest name'},
		].sort((x, y) => x.digest.localeCompare(y.digest)),
	);
	t.deepEqual(report.missing, [h.missing.value]);
	t.deepEqual(report.orphans, [h.orphan.value]);
	t.false(report.removed);
	t.deepEqual(progress.sort(), [h.good.value, h.corrupted.value, h.orphan.value].sort());

	t.deepEqual(await present(h, h.corrupted), [true, true]);
	t.deepEqual(await present(h, h.orphan), [false, true]);
	t.deepEqual(await present(h, h.missing), [true, false]);
});

test('verify with remove deletes the corrupted blob, the row without a file and the file without a row', async t => {
	const h = await verifyFixture(t);
	const check = maintenance(h, undefined);
	const report = await check.verify({remove: true});
	t.deepEqual(report, {checked: 3, bad: [{digest: h.corrupted.value, actual: h.actual}], missing: [h.missing.value], orphans: [h.orphan.value], removed: true});

	t.deepEqual(await present(h, h.corrupted), [false, false]);
	t.deepEqual(await present(h, h.missing), [false, false]);
	t.deepEqual(await present(h, h.orphan), [false, false]);
	t.deepEqual(await present(h, h.good), [true, true]);
	t.deepEqual(await check.verify({remove: false}), {checked: 1, bad: [], missing: [], orphans: [], removed: false});
});
