import {mkdtemp, rm} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import path from 'node:path';
import test, {type ExecutionContext} from 'ava';
import Database from 'better-sqlite3';
import {AccessRecorder} from '../../src/store/access.js';
import {LOCAL_REGISTRY, type RepoKey} from '../../src/store/metadata.js';
import {MIGRATIONS} from '../../src/store/migrations.js';
import {SqliteMetadataStore} from '../../src/store/sqlite/index.js';

const D1 = 'sha256:' + '1'.repeat(64);
const D2 = 'sha256:' + '2'.repeat(64);
const D3 = 'sha256:' + '3'.repeat(64);
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';

const hub: RepoKey = {registry: 'docker.io', name: 'library/nginx'};
const ghcr: RepoKey = {registry: 'ghcr.io', name: 'library/nginx'};
const local: RepoKey = {registry: LOCAL_REGISTRY, name: 'library/nginx'};

async function dbFile(t: ExecutionContext): Promise<string> {
	const dir = await mkdtemp(path.join(tmpdir(), 'mirror-metadata-'));
	t.teardown(async () => rm(dir, {recursive: true, force: true}));
	return path.join(dir, 'mirror.db');
}

async function openStore(t: ExecutionContext): Promise<{store: SqliteMetadataStore; file: string}> {
	const file = await dbFile(t);
	const store = new SqliteMetadataStore(file);
	let closed = false;
	t.teardown(async () => {
		if (!closed) {
			await store.close();
		}
	});
	const close = store.close.bind(store);
	store.close = async () => {
		closed = true;
		await close();
	};

	return {store, file};
}

function manifest(digest: string, text = `{"digest":"${digest}"}`) {
	return {digest, mediaType: MANIFEST_TYPE, content: Buffer.from(text)};
}

/** Reads last_access straight from the file (the interface only exposes it for blobs). */
function manifestLastAccess(file: string, digest: string): number | undefined {
	const db = new Database(file, {readonly: true});
	try {
		const row = db.prepare('SELECT last_access AS lastAccess FROM manifests WHERE digest = ?').get(digest) as {lastAccess: number} | undefined;
		return row?.lastAccess;
	} finally {
		db.close();
	}
}

test('migrations run once and reopening keeps data and version', async t => {
	const file = await dbFile(t);
	const first = new SqliteMetadataStore(file);
	t.true(MIGRATIONS.length > 0);
	t.is(first.schemaVersion, MIGRATIONS.length);
	await first.putBlob(hub, {digest: D1, size: 10, pushed: false, now: 1000});
	await first.putManifest({repo: hub, manifest: manifest(D2), tag: 'latest', pushed: false, now: 1000});
	await first.close();

	// Reopening must not re-run CREATE TABLE (it would throw) nor lose rows.
	const second = new SqliteMetadataStore(file);
	t.teardown(() => second.close());
	t.is(second.schemaVersion, MIGRATIONS.length);
	t.deepEqual(await second.getBlob(D1), {digest: D1, size: 10, pushed: false, lastAccess: 1000});
	t.is((await second.getTag(hub, 'latest'))?.digest, D2);
});

test('a database newer than the program is refused', async t => {
	const file = await dbFile(t);
	const db = new Database(file);
	db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
	db.close();
	const error = t.throws(() => new SqliteMetadataStore(file));
	t.is(
		error?.message,
		`metadata: database schema version ${MIGRATIONS.length + 1} is newer than this program (${MIGRATIONS.length})`,
	);
});

test('putManifest with a tag, then read it back', async t => {
	const {store} = await openStore(t);
	const content = Buffer.from('{"schemaVersion":2,"config":{}}');
	await store.putManifest({
		repo: hub,
		manifest: {digest: D1, mediaType: MANIFEST_TYPE, content},
		tag: 'latest',
		pushed: false,
		references: [D2, D3],
		now: 1234,
	});

	t.deepEqual(await store.getTag(hub, 'latest'), {digest: D1, fetchedAt: 1234, checkedAt: 1234});
	const record = await store.getManifest(D1);
	t.is(record?.digest, D1);
	t.is(record?.mediaType, MANIFEST_TYPE);
	t.true(Buffer.isBuffer(record?.content));
	t.true(record?.content.equals(content));
	t.true(await store.hasRepoManifest(hub, D1));
	t.false(await store.hasRepoManifest(hub, D2));
	t.deepEqual(await store.listTags(hub), ['latest']);

	t.is(await store.getTag(hub, 'other'), undefined);
	t.is(await store.getManifest(D2), undefined);
	t.deepEqual(await store.listTags({registry: 'docker.io', name: 'library/redis'}), []);
});

test('putManifest without a tag links it by digest only', async t => {
	const {store} = await openStore(t);
	await store.putManifest({repo: hub, manifest: manifest(D1), pushed: false, now: 1});
	t.true(await store.hasRepoManifest(hub, D1));
	t.deepEqual(await store.listTags(hub), []);
});

test('listTags is sorted', async t => {
	const {store} = await openStore(t);
	for (const tag of ['v2', 'latest', 'v10', 'alpine']) {
		await store.putManifest({repo: hub, manifest: manifest(D1), tag, pushed: false, now: 1});
	}

	t.deepEqual(await store.listTags(hub), ['alpine', 'latest', 'v10', 'v2']);
});

test('the same repository name under two registries never mixes', async t => {
	const {store} = await openStore(t);
	await store.putManifest({repo: hub, manifest: manifest(D1), tag: 'latest', pushed: false, now: 100});
	await store.putManifest({repo: ghcr, manifest: manifest(D2), tag: 'latest', pushed: false, now: 200});
	await store.putManifest({repo: ghcr, manifest: manifest(D3), tag: 'edge', pushed: false, now: 200});
	await store.putBlob(hub, {digest: D3, size: 3, pushed: false, now: 100});

	t.deepEqual(await store.getTag(hub, 'latest'), {digest: D1, fetchedAt: 100, checkedAt: 100});
	t.deepEqual(await store.getTag(ghcr, 'latest'), {digest: D2, fetchedAt: 200, checkedAt: 200});
	t.is(await store.getTag(hub, 'edge'), undefined);
	t.is(await store.getTag(local, 'latest'), undefined);
	t.deepEqual(await store.listTags(hub), ['latest']);
	t.deepEqual(await store.listTags(ghcr), ['edge', 'latest']);
	t.deepEqual(await store.listTags(local), []);

	t.true(await store.hasRepoManifest(hub, D1));
	t.false(await store.hasRepoManifest(hub, D2));
	t.true(await store.hasRepoManifest(ghcr, D2));
	t.false(await store.hasRepoManifest(ghcr, D1));
	t.false(await store.hasRepoManifest(local, D1));

	t.true(await store.hasRepoBlob(hub, D3));
	t.false(await store.hasRepoBlob(ghcr, D3));
	t.false(await store.hasRepoBlob(local, D3));
	t.true(await store.registryHasBlob('docker.io', D3));
	t.false(await store.registryHasBlob('ghcr.io', D3));
	t.false(await store.registryHasBlob(LOCAL_REGISTRY, D3));

	await store.markTagChecked(ghcr, 'latest', 999);
	t.is((await store.getTag(ghcr, 'latest'))?.checkedAt, 999);
	t.is((await store.getTag(hub, 'latest'))?.checkedAt, 100);
});

test('markTagChecked updates checkedAt only', async t => {
	const {store} = await openStore(t);
	await store.putManifest({repo: hub, manifest: manifest(D1), tag: 'latest', pushed: false, now: 100});
	await store.markTagChecked(hub, 'latest', 500);
	t.deepEqual(await store.getTag(hub, 'latest'), {digest: D1, fetchedAt: 100, checkedAt: 500});
	// an unknown tag is a no-op, not an insert
	await store.markTagChecked(hub, 'nope', 600);
	t.is(await store.getTag(hub, 'nope'), undefined);
	t.deepEqual(await store.listTags(hub), ['latest']);
});

test('re-tagging moves the tag and keeps the old manifest', async t => {
	const {store} = await openStore(t);
	await store.putManifest({repo: hub, manifest: manifest(D1), tag: 'latest', pushed: false, now: 100});
	await store.markTagChecked(hub, 'latest', 150);
	await store.putManifest({repo: hub, manifest: manifest(D2), tag: 'latest', pushed: false, now: 200});
	t.deepEqual(await store.getTag(hub, 'latest'), {digest: D2, fetchedAt: 200, checkedAt: 200});
	t.deepEqual(await store.listTags(hub), ['latest']);
	t.true(await store.hasRepoManifest(hub, D1));
	t.true(await store.hasRepoManifest(hub, D2));
	t.is((await store.getManifest(D1))?.content.toString(), `{"digest":"${D1}"}`);
});

test('putManifest twice with the same digest keeps the first content', async t => {
	const {store} = await openStore(t);
	await store.putManifest({repo: hub, manifest: manifest(D1, 'first'), pushed: false, now: 100});
	await store.putManifest({repo: ghcr, manifest: manifest(D1, 'second'), pushed: true, now: 200});
	t.is((await store.getManifest(D1))?.content.toString(), 'first');
	t.true(await store.hasRepoManifest(hub, D1));
	t.true(await store.hasRepoManifest(ghcr, D1));
});

test('putBlob, hasRepoBlob, registryHasBlob, linkBlob, getBlob', async t => {
	const {store} = await openStore(t);
	t.is(await store.getBlob(D1), undefined);
	await store.putBlob(hub, {digest: D1, size: 42, pushed: false, now: 1000});
	t.deepEqual(await store.getBlob(D1), {digest: D1, size: 42, pushed: false, lastAccess: 1000});
	t.true(await store.hasRepoBlob(hub, D1));
	t.true(await store.registryHasBlob('docker.io', D1));

	const other: RepoKey = {registry: 'docker.io', name: 'library/redis'};
	t.false(await store.hasRepoBlob(other, D1));
	t.true(await store.registryHasBlob('docker.io', D1));
	await store.linkBlob(other, D1);
	t.true(await store.hasRepoBlob(other, D1));
	await store.linkBlob(other, D1); // idempotent
	t.true(await store.hasRepoBlob(other, D1));

	// linking a blob the store does not know is a no-op
	await t.notThrowsAsync(async () => store.linkBlob(other, D2));
	t.false(await store.hasRepoBlob(other, D2));
});

test('the pushed flag sticks once true', async t => {
	const {store} = await openStore(t);
	await store.putBlob(hub, {digest: D1, size: 1, pushed: false, now: 1});
	t.false((await store.getBlob(D1))?.pushed);
	await store.putBlob(local, {digest: D1, size: 1, pushed: true, now: 2});
	t.true((await store.getBlob(D1))?.pushed);
	await store.putBlob(ghcr, {digest: D1, size: 1, pushed: false, now: 3});
	t.deepEqual(await store.getBlob(D1), {digest: D1, size: 1, pushed: true, lastAccess: 3});
	t.true(await store.hasRepoBlob(hub, D1));
	t.true(await store.hasRepoBlob(local, D1));
	t.true(await store.hasRepoBlob(ghcr, D1));
});

test('touch updates last_access in one batch and never moves it backwards', async t => {
	const {store, file} = await openStore(t);
	await store.putBlob(hub, {digest: D1, size: 1, pushed: false, now: 1000});
	await store.putBlob(hub, {digest: D2, size: 1, pushed: false, now: 1000});
	await store.putManifest({repo: hub, manifest: manifest(D3), pushed: false, now: 1000});

	await store.touch([
		{kind: 'blob', digest: D1, at: 5000},
		{kind: 'blob', digest: D2, at: 500},
		{kind: 'manifest', digest: D3, at: 7000},
		{kind: 'blob', digest: 'sha256:' + 'f'.repeat(64), at: 9000},
	]);
	t.is((await store.getBlob(D1))?.lastAccess, 5000);
	t.is((await store.getBlob(D2))?.lastAccess, 1000);
	t.is(manifestLastAccess(file, D3), 7000);
	t.is(await store.getBlob('sha256:' + 'f'.repeat(64)), undefined);

	await store.touch([{kind: 'blob', digest: D1, at: 4000}]);
	t.is((await store.getBlob(D1))?.lastAccess, 5000);
	// a manifest touch does not touch a blob of the same digest and vice versa
	await store.touch([{kind: 'manifest', digest: D2, at: 8000}]);
	t.is((await store.getBlob(D2))?.lastAccess, 1000);
	await store.touch([]);
	t.is((await store.getBlob(D1))?.lastAccess, 5000);
});

test('deleteBlobRecord removes the blob and its links', async t => {
	const {store} = await openStore(t);
	await store.putBlob(hub, {digest: D1, size: 1, pushed: false, now: 1});
	await store.putBlob(ghcr, {digest: D1, size: 1, pushed: false, now: 1});
	await store.putBlob(hub, {digest: D2, size: 2, pushed: false, now: 1});
	await store.deleteBlobRecord(D1);
	t.is(await store.getBlob(D1), undefined);
	t.false(await store.hasRepoBlob(hub, D1));
	t.false(await store.hasRepoBlob(ghcr, D1));
	t.false(await store.registryHasBlob('docker.io', D1));
	t.true(await store.hasRepoBlob(hub, D2));
	await store.deleteBlobRecord(D3); // unknown: no-op
	t.deepEqual(await store.allBlobDigests(), [D2]);
});

test('allBlobDigests lists every blob once', async t => {
	const {store} = await openStore(t);
	t.deepEqual(await store.allBlobDigests(), []);
	await store.putBlob(hub, {digest: D2, size: 1, pushed: false, now: 1});
	await store.putBlob(ghcr, {digest: D2, size: 1, pushed: false, now: 1});
	await store.putBlob(local, {digest: D1, size: 1, pushed: true, now: 1});
	await store.putManifest({repo: hub, manifest: manifest(D3), pushed: false, now: 1});
	t.deepEqual((await store.allBlobDigests()).sort(), [D1, D2]);
});

/** Records touch() calls; every other method is unused by AccessRecorder. */
class RecordingStore {
	readonly calls: Array<ReadonlyArray<{kind: 'blob' | 'manifest'; digest: string; at: number}>> = [];
	async touch(entries: ReadonlyArray<{kind: 'blob' | 'manifest'; digest: string; at: number}>): Promise<void> {
		this.calls.push(entries.map(entry => ({...entry})));
	}
}

function recorder(t: ExecutionContext): {access: AccessRecorder; calls: RecordingStore['calls']} {
	const store = new RecordingStore();
	const access = new AccessRecorder(store, 60_000);
	t.teardown(() => access.close());
	return {access, calls: store.calls};
}

test('AccessRecorder holds touches until flush, then writes them in one call', async t => {
	const {access, calls} = recorder(t);
	access.touch('blob', D1, 10);
	access.touch('manifest', D2, 20);
	access.touch('blob', D1, 30); // same key: the latest call wins
	access.touch('manifest', D1, 40); // different kind, separate entry
	t.is(calls.length, 0);
	await access.flush();
	t.is(calls.length, 1);
	t.deepEqual(calls[0], [
		{kind: 'blob', digest: D1, at: 30},
		{kind: 'manifest', digest: D2, at: 20},
		{kind: 'manifest', digest: D1, at: 40},
	]);
	await access.flush(); // nothing pending: no call
	t.is(calls.length, 1);
});

test('AccessRecorder.close flushes what is pending', async t => {
	const {access, calls} = recorder(t);
	access.touch('blob', D3, 5);
	t.is(calls.length, 0);
	await access.close();
	t.deepEqual(calls, [[{kind: 'blob', digest: D3, at: 5}]]);
	await access.close();
	t.is(calls.length, 1);
});

test('AccessRecorder defaults the time to now', async t => {
	const {access, calls} = recorder(t);
	const before = Date.now();
	access.touch('blob', D1);
	await access.flush();
	const at = calls[0]?.[0]?.at ?? 0;
	t.true(at >= before && at <= Date.now());
});

test('AccessRecorder with a real store updates last_access on flush only', async t => {
	const {store} = await openStore(t);
	await store.putBlob(hub, {digest: D1, size: 1, pushed: false, now: 1000});
	const access = new AccessRecorder(store, 60_000);
	t.teardown(() => access.close());
	access.touch('blob', D1, 2000);
	t.is((await store.getBlob(D1))?.lastAccess, 1000);
	await access.flush();
	t.is((await store.getBlob(D1))?.lastAccess, 2000);
});

test('AccessRecorder flushes on its timer', async t => {
	const store = new RecordingStore();
	const access = new AccessRecorder(store, 5);
	t.teardown(() => access.close());
	access.touch('blob', D1, 1);
	await new Promise(resolve => setTimeout(resolve, 30));
	t.deepEqual(store.calls, [[{kind: 'blob', digest: D1, at: 1}]]);
});
