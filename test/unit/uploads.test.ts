import {randomUUID} from 'node:crypto';
import {readFile, rm} from 'node:fs/promises';
import path from 'node:path';
import test, {type ExecutionContext} from 'ava';
import {UploadService, UPLOAD_IDLE_TTL_MS, rangeHeader} from '../../src/local/uploads.js';
import {LOCAL_REGISTRY, type RepoKey} from '../../src/store/metadata.js';
import {silentLogger} from '../../src/util/log.js';
import {type ErrorCode, RegistryError} from '../../src/v2/errors.js';
import {ManualBody, type Stores, bytes, digestOf, filesUnder, openStores} from './fakes.js';

const app: RepoKey = {registry: LOCAL_REGISTRY, name: 'private/app'};
const other: RepoKey = {registry: LOCAL_REGISTRY, name: 'private/other'};
const T0 = 1_700_000_000_000;

type Harness = Stores & {uploads: UploadService; clock: {now: number}};

async function harness(t: ExecutionContext): Promise<Harness> {
	t.timeout(60_000); // generous: a hang fails in a minute, a loaded machine does not
	const stores = await openStores(t);
	const clock = {now: T0};
	return {...stores, clock, uploads: new UploadService(stores.metadata, stores.blobs, silentLogger(), () => clock.now)};
}

async function* chunks(...parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
	yield* parts;
}

function expectError(t: ExecutionContext, error: unknown, code: ErrorCode, status: number): RegistryError {
	t.true(error instanceof RegistryError, String(error));
	const registryError = error as RegistryError;
	t.is(registryError.code, code);
	t.is(registryError.status, status);
	return registryError;
}

test('start, chunks in order, finish: the blob is committed as pushed and the session is gone', async t => {
	const h = await harness(t);
	const data = bytes(30_000, 1);
	const digest = digestOf(data);

	const session = await h.uploads.start(app);
	t.regex(session.id, /^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$/);
	t.deepEqual(session, {id: session.id, repo: app, size: 0, createdAt: T0, updatedAt: T0});
	t.is(await h.blobs.uploadSize(session.id), 0);

	h.clock.now = T0 + 10;
	t.is((await h.uploads.append(app, session.id, chunks(data.subarray(0, 10_000)), {start: 0, end: 9999})).size, 10_000);
	t.is((await h.uploads.append(app, session.id, chunks(data.subarray(10_000, 12_000), data.subarray(12_000, 20_000)))).size, 20_000);
	const status = await h.uploads.status(app, session.id);
	t.deepEqual(status, {id: session.id, repo: app, size: 20_000, createdAt: T0, updatedAt: T0 + 10});

	h.clock.now = T0 + 20;
	t.is(await h.uploads.finish(app, session.id, digest, chunks(data.subarray(20_000)), {start: 20_000, end: 29_999}), 30_000);
	t.deepEqual(await h.metadata.getBlob(digest.value), {digest: digest.value, size: 30_000, pushed: true, lastAccess: T0 + 20});
	t.true(await h.metadata.hasRepoBlob(app, digest.value));
	t.true((await readFile(h.blobs.pathOf(digest))).equals(data));
	t.is(await h.metadata.getUpload(session.id), undefined);
	t.deepEqual(await h.blobs.listUploads(), []);
	const gone = await h.uploads.status(app, session.id).catch((error: unknown) => error);
	expectError(t, gone, 'BLOB_UPLOAD_UNKNOWN', 404);
});

test('a chunk that does not start where the session ends: 416 BLOB_UPLOAD_INVALID with the Range the session holds', async t => {
	const h = await harness(t);
	const session = await h.uploads.start(app);
	await h.uploads.append(app, session.id, chunks(bytes(5, 2)), {start: 0, end: 4});

	for (const start of [0, 3, 6]) {
		const error = await h.uploads.append(app, session.id, chunks(bytes(5, 3)), {start, end: start + 4}).catch((error_: unknown) => error_);
		const registryError = expectError(t, error, 'BLOB_UPLOAD_INVALID', 416);
		t.deepEqual(registryError.headers, {Range: '0-4', 'Docker-Upload-UUID': session.id});
		t.is(registryError.message, `chunk starts at ${start} but the upload has 5 bytes`);
	}

	t.is((await h.uploads.status(app, session.id)).size, 5);
	t.is(await h.blobs.uploadSize(session.id), 5);
	t.is(rangeHeader(0), '0-0');
	t.is(rangeHeader(5), '0-4');
});

test('a chunk shorter than its Content-Range is BLOB_UPLOAD_INVALID 400; the bytes that arrived are kept', async t => {
	const h = await harness(t);
	const session = await h.uploads.start(app);
	const error = await h.uploads.append(app, session.id, chunks(bytes(6, 4)), {start: 0, end: 9}).catch((error_: unknown) => error_);
	const registryError = expectError(t, error, 'BLOB_UPLOAD_INVALID', 400);
	t.is(registryError.message, 'Content-Range announced 10 bytes but 6 arrived');
	t.is((await h.uploads.status(app, session.id)).size, 6);
});

test('finish with the wrong digest is DIGEST_INVALID 400; nothing is committed and the session stays', async t => {
	const h = await harness(t);
	const data = bytes(1000, 5);
	const wrong = digestOf(bytes(1000, 6));
	const session = await h.uploads.start(app);
	await h.uploads.append(app, session.id, chunks(data));

	const error = await h.uploads.finish(app, session.id, wrong, undefined).catch((error_: unknown) => error_);
	const registryError = expectError(t, error, 'DIGEST_INVALID', 400);
	t.deepEqual(registryError.detail, {expected: wrong.value, actual: digestOf(data).value});
	t.is(await h.metadata.getBlob(wrong.value), undefined);
	t.is(await h.blobs.size(wrong), undefined);
	t.is((await h.uploads.status(app, session.id)).size, 1000);

	// The right digest still finishes it.
	t.is(await h.uploads.finish(app, session.id, digestOf(data), undefined), 1000);
});

test('a session is only known under its repository, and only by a UUID', async t => {
	const h = await harness(t);
	const session = await h.uploads.start(app);
	for (const [repo, id] of [
		[other, session.id],
		[{registry: 'docker.io', name: 'private/app'}, session.id],
		[app, 'not-a-uuid'],
		[app, randomUUID()],
	] as const) {
		const error = await h.uploads.append(repo, id, chunks(bytes(1, 7))).catch((error_: unknown) => error_);
		expectError(t, error, 'BLOB_UPLOAD_UNKNOWN', 404);
	}

	t.is(await h.blobs.uploadSize(session.id), 0);
});

test('cancel removes the row and the file', async t => {
	const h = await harness(t);
	const session = await h.uploads.start(app);
	await h.uploads.append(app, session.id, chunks(bytes(100, 8)));
	await h.uploads.cancel(app, session.id);
	t.is(await h.metadata.getUpload(session.id), undefined);
	t.is(await h.blobs.uploadSize(session.id), undefined);
	expectError(t, await h.uploads.cancel(app, session.id).catch((error: unknown) => error), 'BLOB_UPLOAD_UNKNOWN', 404);
});

test('a session whose file is gone is unknown, and its row is dropped', async t => {
	const h = await harness(t);
	const session = await h.uploads.start(app);
	await rm(path.join(h.blobs.uploadsDir, session.id));
	const error = await h.uploads.status(app, session.id).catch((error_: unknown) => error_);
	const registryError = expectError(t, error, 'BLOB_UPLOAD_UNKNOWN', 404);
	t.deepEqual(registryError.detail, {uuid: session.id, reason: 'session data is gone'});
	t.is(await h.metadata.getUpload(session.id), undefined);
});

test('monolithic: the blob in one request; a wrong digest is DIGEST_INVALID and leaves no file behind', async t => {
	const h = await harness(t);
	const data = bytes(70_000, 9);
	const digest = digestOf(data);
	t.is(await h.uploads.monolithic(app, digest, chunks(data.subarray(0, 1), data.subarray(1))), 70_000);
	t.deepEqual(await h.metadata.getBlob(digest.value), {digest: digest.value, size: 70_000, pushed: true, lastAccess: T0});
	t.true((await readFile(h.blobs.pathOf(digest))).equals(data));

	const wrong = digestOf(bytes(10, 10));
	const error = await h.uploads.monolithic(app, wrong, chunks(bytes(10, 11))).catch((error_: unknown) => error_);
	const registryError = expectError(t, error, 'DIGEST_INVALID', 400);
	t.deepEqual(registryError.detail, {expected: wrong.value, actual: digestOf(bytes(10, 11)).value});
	t.is(await h.metadata.getBlob(wrong.value), undefined);
	t.is(await h.blobs.size(wrong), undefined);
	t.deepEqual(await filesUnder(h.blobs.tmpDir), []);
});

test('a finish after the hash state was lost still verifies, by rehashing the file', async t => {
	const h = await harness(t);
	const data = bytes(50_000, 12);
	const session = await h.uploads.start(app);
	await h.uploads.append(app, session.id, chunks(data.subarray(0, 20_000)));

	// Another process (no hash state of this session) takes the next chunk; then this one finishes.
	const elsewhere = new UploadService(h.metadata, h.blobs, silentLogger(), () => h.clock.now);
	await elsewhere.append(app, session.id, chunks(data.subarray(20_000, 40_000)), {start: 20_000, end: 39_999});
	const wrong = await h.uploads.finish(app, session.id, digestOf(data), undefined).catch((error: unknown) => error);
	t.deepEqual((expectError(t, wrong, 'DIGEST_INVALID', 400).detail as {actual: string}).actual, digestOf(data.subarray(0, 40_000)).value);
	t.is(await h.uploads.finish(app, session.id, digestOf(data), chunks(data.subarray(40_000))), 50_000);
	t.true((await readFile(h.blobs.pathOf(digestOf(data)))).equals(data));

	// A restarted process finishes a session it never saw, and with sha512.
	const second = bytes(3000, 13);
	const pending = await h.uploads.start(app);
	await h.uploads.append(app, pending.id, chunks(second));
	const restarted = new UploadService(h.metadata, h.blobs, silentLogger(), () => h.clock.now);
	t.is(await restarted.finish(app, pending.id, digestOf(second, 'sha512'), undefined), 3000);
	t.is((await h.metadata.getBlob(digestOf(second, 'sha512').value))?.size, 3000);
});

test('sweep removes sessions idle past the TTL and files without a row; recent sessions stay', async t => {
	const h = await harness(t);
	const idle = await h.uploads.start(app);
	h.clock.now = T0 + UPLOAD_IDLE_TTL_MS / 2;
	const recent = await h.uploads.start(other);
	const stray = randomUUID();
	await h.blobs.createUpload(stray); // a file whose row is gone (a crash between the two)

	h.clock.now = T0 + UPLOAD_IDLE_TTL_MS + 1;
	t.is(await h.uploads.sweep(), 2);
	t.is(await h.metadata.getUpload(idle.id), undefined);
	t.is(await h.blobs.uploadSize(idle.id), undefined);
	t.is(await h.blobs.uploadSize(stray), undefined);
	t.is((await h.uploads.status(other, recent.id)).size, 0);
	t.deepEqual(await h.blobs.listUploads(), [recent.id]);

	t.is(await h.uploads.sweep(), 0);
	t.is(await h.uploads.sweep(1), 1); // a shorter idle time takes the recent one too
	t.deepEqual(await h.blobs.listUploads(), []);
});

test('sweep leaves a session alone while a request for it runs, however long it has been idle', async t => {
	const h = await harness(t);
	const session = await h.uploads.start(app);
	const body = new ManualBody();
	const appending = h.uploads.append(app, session.id, body);
	appending.catch(() => undefined); // awaited below; a rejection there fails the test, not the process

	h.clock.now = T0 + UPLOAD_IDLE_TTL_MS + 1;
	t.is(await h.uploads.sweep(), 0);
	body.send(bytes(300, 14));
	t.is((await appending).size, 300);
	t.is((await h.uploads.status(app, session.id)).size, 300);
});
