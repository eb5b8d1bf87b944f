import {createHash} from 'node:crypto';
import {once} from 'node:events';
import {setTimeout as sleep} from 'node:timers/promises';
import {mkdir, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {type Readable} from 'node:stream';
import test, {type ExecutionContext} from 'ava';
import {type Fill} from '../../src/fill/fill.js';
import {FillRegistry} from '../../src/fill/registry.js';
import {type FillSource} from '../../src/fill/source.js';
import {ManualBody} from './fakes.js';
import {FsBlobStore} from '../../src/store/fs/index.js';
import {RegistryError} from '../../src/v2/errors.js';
import {type Digest, parseDigest} from '../../src/v2/grammar.js';


type Harness = {
	store: FsBlobStore;
	fills: FillRegistry;
	body: ManualBody;
	opens: number;
	commits: number[];
	open: (from: number) => Promise<FillSource>;
	commit: (size: number) => Promise<void>;
};

async function harness(t: ExecutionContext, size: number | undefined): Promise<Harness> {
	t.timeout(5000);
	const dir = await mkdtemp(path.join(tmpdir(), 'mirror-fill-'));
	t.teardown(async () => rm(dir, {recursive: true, force: true}));
	const store = new FsBlobStore(dir);
	await store.init();
	const body = new ManualBody();
	const h: Harness = {
		store,
		fills: new FillRegistry(),
		body,
		opens: 0,
		commits: [],
		async open() {
			h.opens++;
			return {size, start: 0, body};
		},
		async commit(committed) {
			h.commits.push(committed);
		},
	};
	return h;
}

function bytes(length: number, seed = 1): Buffer {
	const buffer = Buffer.alloc(length);
	for (let index = 0; index < length; index++) {
		buffer[index] = (index * 31 + seed) & 0xff;
	}

	return buffer;
}

function digestOf(data: Uint8Array): Digest {
	return parseDigest('sha256:' + createHash('sha256').update(data).digest('hex'));
}

/** A consumer of a reader that counts what arrived and can wait for a byte count. */
class Collector {
	readonly chunks: Buffer[] = [];
	received = 0;
	error: Error | undefined;
	readonly finished: Promise<Buffer>;
	readonly #waiters: Array<{count: number; resolve: () => void}> = [];

	constructor(stream: Readable) {
		this.finished = new Promise((resolve, reject) => {
			stream.on('data', (chunk: Buffer) => {
				this.chunks.push(chunk);
				this.received += chunk.length;
				for (const waiter of this.#waiters.filter(entry => this.received >= entry.count)) {
					this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
					waiter.resolve();
				}
			});
			stream.on('end', () => resolve(Buffer.concat(this.chunks)));
			stream.on('error', error => {
				this.error = error;
				reject(error);
			});
		});
		this.finished.catch(() => undefined);
	}

	async waitFor(count: number): Promise<void> {
		if (this.received >= count) {
			return;
		}

		return new Promise(resolve => {
			this.#waiters.push({count, resolve});
		});
	}
}

/** Pushes a chunk and waits until the fill has written it. */
/** Pushes a chunk and waits until it has landed in the temp file (the first 'progress' says it is in flight). */
async function feed(fill: Fill, body: ManualBody, chunk: Uint8Array): Promise<void> {
	const landed = new Promise<void>(resolve => {
		const onProgress = () => {
			if (fill.inFlight === undefined) {
				fill.off('progress', onProgress);
				resolve();
			}
		};

		fill.on('progress', onProgress);
	});
	body.push(chunk);
	await landed;
}

/** Lets pending I/O callbacks and microtasks run. */
async function settle(): Promise<void> {
	for (let index = 0; index < 3; index++) {
		await new Promise(resolve => setImmediate(resolve));
	}

	await new Promise(resolve => setTimeout(resolve, 5));
}

async function listTree(dir: string): Promise<string[]> {
	const entries = await readdir(dir, {recursive: true, withFileTypes: true});
	return entries.filter(entry => entry.isFile()).map(entry => path.relative(dir, path.join(entry.parentPath, entry.name)));
}

test('two readers joining one fill get the same bytes; the source is opened once', async t => {
	const data = bytes(300_000);
	const digest = digestOf(data);
	const h = await harness(t, data.length);

	const first = h.fills.join(digest, h.store, h.open, h.commit);
	t.true(first.started);
	await first.fill.ready;
	const readerA = new Collector(first.fill.createReader());
	await feed(first.fill, h.body, data.subarray(0, 100_000));

	const second = h.fills.join(digest, h.store, h.open, h.commit);
	t.false(second.started);
	t.is(second.fill, first.fill);
	t.is(h.fills.get(digest), first.fill);
	t.is(h.fills.size, 1);
	await second.fill.ready;
	const readerB = new Collector(second.fill.createReader());

	await feed(first.fill, h.body, data.subarray(100_000, 250_000));
	await feed(first.fill, h.body, data.subarray(250_000));
	h.body.end();

	const [a, b] = await Promise.all([readerA.finished, readerB.finished]);
	await first.fill.done;
	t.true(a.equals(data));
	t.true(b.equals(data));
	t.is(h.opens, 1);
	t.is(h.body.iterations, 1);
	t.deepEqual(h.commits, [data.length]);
	t.is(first.fill.state, 'done');
	t.is(first.fill.size, data.length);

	await settle();
	t.is(h.fills.size, 0);
	t.is(h.fills.get(digest), undefined);
	// once committed the registry forgets it: a new join starts afresh
	const again = h.fills.join(digest, h.store, async () => {
		throw new Error('not reached in this test');
	}, async () => undefined);
	t.true(again.started);
	await t.throwsAsync(again.fill.done, {message: 'not reached in this test'});
});

test('a reader never gets the last byte before the digest checks', async t => {
	const data = bytes(10_000);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	await fill.ready;
	t.is(fill.state, 'running');
	t.is(fill.size, data.length);
	const reader = new Collector(fill.createReader());

	// A chunk is readable from memory while it is on its way to the file.
	const inFlight = once(fill, 'progress');
	h.body.push(data.subarray(0, 6000));
	await inFlight;
	t.deepEqual(fill.inFlight && {position: fill.inFlight.position, length: fill.inFlight.chunk.length}, {position: 0, length: 6000});
	t.is(fill.temp?.written, 0);
	t.is(fill.readable, 6000);
	await reader.waitFor(6000);

	// all but a final one-byte chunk: the reader may have everything written so far
	await settle();
	await feed(fill, h.body, data.subarray(6000, data.length - 1));
	await reader.waitFor(data.length - 1);
	t.is(reader.received, data.length - 1);

	// the final byte is written, but the body has not ended: still held back
	await feed(fill, h.body, data.subarray(data.length - 1));
	t.is(fill.temp?.written, data.length);
	t.is(fill.readable, data.length - 1);
	await settle();
	t.is(reader.received, data.length - 1);
	t.is(fill.state, 'running');
	t.deepEqual(h.commits, []);

	h.body.end();
	t.true((await reader.finished).equals(data));
	await fill.done;
	t.deepEqual(h.commits, [data.length]);
});

test('with the size unknown the last 64 KiB are held back', async t => {
	const data = bytes(100 * 1024);
	const digest = digestOf(data);
	const h = await harness(t, undefined);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	await fill.ready;
	t.is(fill.size, undefined);
	const reader = new Collector(fill.createReader());
	await feed(fill, h.body, data);
	await reader.waitFor(data.length - 64 * 1024);
	await settle();
	t.is(reader.received, data.length - 64 * 1024);
	h.body.end();
	t.true((await reader.finished).equals(data));
	await fill.done;
	t.is(fill.size, data.length);
	t.deepEqual(h.commits, [data.length]);
});

test('digest mismatch: readers error, nothing is kept, done rejects', async t => {
	const data = bytes(5000);
	const wrong = digestOf(bytes(5000, 2));
	const h = await harness(t, data.length);
	const {fill} = h.fills.join(wrong, h.store, h.open, h.commit);
	await fill.ready;
	const readers = [new Collector(fill.createReader()), new Collector(fill.createReader({start: 4000, end: 4999}))];
	await feed(fill, h.body, data.subarray(0, 2500));
	await feed(fill, h.body, data.subarray(2500));
	t.is((await readdir(h.store.tmpDir)).length, 1);
	h.body.end();

	const error = await t.throwsAsync(fill.done, {instanceOf: RegistryError});
	t.is(error?.code, 'DIGEST_INVALID');
	t.is(error?.status, 502);
	t.is(error?.message, 'upstream content does not match its digest');
	t.deepEqual(error?.detail, {expected: wrong.value, actual: digestOf(data).value});
	for (const reader of readers) {
		const readerError = await t.throwsAsync(reader.finished);
		t.is(readerError, error);
	}

	t.true(readers[0]!.received <= data.length - 1);
	t.true(readers[1]!.received <= 999);
	t.is(fill.state, 'failed');
	t.is(fill.error, error);
	t.true(h.body.destroyed);
	t.deepEqual(h.commits, []);
	t.deepEqual(await readdir(h.store.tmpDir), []);
	t.deepEqual(await listTree(h.store.blobsDir), []);
	t.deepEqual(await h.store.list(), []);
	t.is(await h.store.size(wrong), undefined);
	// a failed fill still resolves `ready` (the upstream did answer)
	await t.notThrowsAsync(fill.ready);
});

test('a short body fails the same way', async t => {
	const data = bytes(4096);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	await fill.ready;
	const reader = new Collector(fill.createReader());
	await feed(fill, h.body, data.subarray(0, 1000));
	h.body.end();

	const error = await t.throwsAsync(fill.done, {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.is(error?.status, 502);
	t.is(error?.message, 'upstream sent 1000 of 4096 bytes');
	t.is(await t.throwsAsync(reader.finished), error);
	t.true(reader.received <= 1000);
	t.deepEqual(h.commits, []);
	t.deepEqual(await readdir(h.store.tmpDir), []);
	t.deepEqual(await listTree(h.store.blobsDir), []);
});

test('a body longer than announced fails', async t => {
	const data = bytes(2000);
	const digest = digestOf(data.subarray(0, 1000));
	const h = await harness(t, 1000);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	await fill.ready;
	const reader = new Collector(fill.createReader());
	h.body.push(data);

	const error = await t.throwsAsync(fill.done, {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.is(error?.status, 502);
	t.is(error?.message, 'upstream sent more bytes than it announced');
	await t.throwsAsync(reader.finished);
	t.true(h.body.destroyed);
	t.deepEqual(h.commits, []);
	t.deepEqual(await readdir(h.store.tmpDir), []);
	t.deepEqual(await listTree(h.store.blobsDir), []);
});

test('an upstream body that errors fails the fill', async t => {
	const data = bytes(3000);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	await fill.ready;
	const reader = new Collector(fill.createReader());
	await feed(fill, h.body, data.subarray(0, 1500));
	const failure = new Error('socket hang up');
	h.body.fail(failure);
	t.is(await t.throwsAsync(fill.done), failure);
	t.is(await t.throwsAsync(reader.finished), failure);
	t.deepEqual(await readdir(h.store.tmpDir), []);
	t.deepEqual(h.commits, []);
});

test('the open function throwing rejects ready and done', async t => {
	const h = await harness(t, 10);
	const digest = digestOf(bytes(10));
	const failure = new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value}});
	let commits = 0;
	const {fill, started} = h.fills.join(
		digest,
		h.store,
		async () => {
			throw failure;
		},
		async () => {
			commits++;
		},
	);
	t.true(started);
	t.is(await t.throwsAsync(fill.ready), failure);
	t.is(await t.throwsAsync(fill.done), failure);
	t.is(fill.state, 'failed');
	t.is(fill.error, failure);
	t.is(commits, 0);
	t.deepEqual(await readdir(h.store.tmpDir), [], 'the temp file (made before the upstream is asked) is gone');
	await settle();
	t.is(h.fills.size, 0);
});

test('a non-Error thrown by open is wrapped', async t => {
	const h = await harness(t, 10);
	const {fill} = h.fills.join(
		digestOf(bytes(10)),
		h.store,
		async () => Promise.reject('nope'), // eslint-disable-line @typescript-eslint/prefer-promise-reject-errors
		async () => undefined,
	);
	const error = await t.throwsAsync(fill.ready, {instanceOf: Error});
	t.is(error?.message, 'nope');
});

test('commit is called once with the size, then the file is in place', async t => {
	const data = bytes(70_000);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	let inPlaceAtCommit: Buffer | undefined;
	const commits: number[] = [];
	const {fill} = h.fills.join(digest, h.store, h.open, async size => {
		commits.push(size);
		t.is(fill.state, 'running'); // recorded before readers are told it is done
		void readFile(h.store.pathOf(digest)).then(buffer => {
			inPlaceAtCommit = buffer;
		});
	});
	await fill.ready;
	await feed(fill, h.body, data.subarray(0, 30_000));
	h.body.push(data.subarray(30_000));
	h.body.end();
	await fill.done;

	t.deepEqual(commits, [data.length]);
	t.is(fill.state, 'done');
	t.is(fill.readable, data.length);
	t.is(h.store.pathOf(digest), path.join(h.store.blobsDir, 'sha256', digest.hex.slice(0, 2), digest.hex));
	t.true((await readFile(h.store.pathOf(digest))).equals(data));
	await settle();
	t.true(inPlaceAtCommit?.equals(data));
	t.is(await h.store.size(digest), data.length);
	t.deepEqual(await h.store.list(), [digest.value]);
	t.deepEqual(await readdir(h.store.tmpDir), []);
	const stored: Buffer[] = [];
	for await (const chunk of h.store.createReadStream(digest, {start: 10, end: 19})) {
		stored.push(chunk as Buffer);
	}

	t.true(Buffer.concat(stored).equals(data.subarray(10, 20)));
});

test('a slow commit holds the last byte and done until the row is written', async t => {
	const data = bytes(20_000);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	let release!: () => void;
	const written = new Promise<void>(resolve => {
		release = resolve;
	});
	let committing = false;
	const {fill} = h.fills.join(digest, h.store, h.open, async () => {
		committing = true;
		await written;
	});
	await fill.ready;
	const reader = new Collector(fill.createReader());
	await feed(fill, h.body, data);
	h.body.end();
	while (!committing) {
		await settle();
	}

	let finished = false;
	void fill.done.then(() => {
		finished = true;
	});
	await settle();
	t.is(fill.state, 'running');
	t.is(fill.readable, data.length - 1);
	t.is(reader.received, data.length - 1);
	t.false(finished);

	release();
	await fill.done;
	t.is(fill.state, 'done');
	t.true((await reader.finished).equals(data));
	t.is(await h.store.size(digest), data.length);
});

test('a commit that fails removes the file and fails the fill', async t => {
	const data = bytes(20_000);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	const failure = new Error('the database is gone');
	const {fill} = h.fills.join(digest, h.store, h.open, async () => {
		throw failure;
	});
	await fill.ready;
	const reader = new Collector(fill.createReader());
	await feed(fill, h.body, data);
	h.body.end();
	t.is(await t.throwsAsync(fill.done), failure);
	t.is(await t.throwsAsync(reader.finished), failure);
	t.true(reader.received <= data.length - 1);
	t.is(fill.state, 'failed');
	t.is(await h.store.size(digest), undefined);
	t.deepEqual(await listTree(h.store.blobsDir), []);
	t.deepEqual(await readdir(h.store.tmpDir), []);
	await settle();
	t.is(h.fills.size, 0);
});

test('an empty blob', async t => {
	const data = Buffer.alloc(0);
	const digest = digestOf(data);
	t.is(digest.hex, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
	const h = await harness(t, 0);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	await fill.ready;
	const reader = new Collector(fill.createReader());
	await settle();
	t.is(reader.received, 0);
	h.body.end();
	t.is((await reader.finished).length, 0);
	await fill.done;
	t.deepEqual(h.commits, [0]);
	t.is(await h.store.size(digest), 0);
});

test('a reader with a range gets exactly those bytes', async t => {
	const data = bytes(50_000);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	await fill.ready;

	const head = new Collector(fill.createReader({start: 0, end: 9}));
	const middle = new Collector(fill.createReader({start: 12_345, end: 23_456}));
	const tail = new Collector(fill.createReader({start: 49_990, end: 49_999}));
	const last = new Collector(fill.createReader({start: 49_999, end: 49_999}));

	await feed(fill, h.body, data.subarray(0, 30_000));
	// ranges that do not include the last byte complete while the fill runs
	t.true((await head.finished).equals(data.subarray(0, 10)));
	t.true((await middle.finished).equals(data.subarray(12_345, 23_457)));
	t.is(fill.state, 'running');

	await feed(fill, h.body, data.subarray(30_000));
	await tail.waitFor(9);
	await settle();
	t.is(tail.received, 9);
	t.is(last.received, 0);

	h.body.end();
	t.true((await tail.finished).equals(data.subarray(49_990)));
	t.true((await last.finished).equals(data.subarray(49_999)));
	await fill.done;
});

test('a reader that leaves does not stop the fill', async t => {
	const data = bytes(20_000);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	await fill.ready;
	const stream = fill.createReader();
	const leaving = new Collector(stream);
	const staying = new Collector(fill.createReader());
	await feed(fill, h.body, data.subarray(0, 5000));
	await leaving.waitFor(5000);
	stream.destroy();
	await feed(fill, h.body, data.subarray(5000));
	h.body.end();
	t.true((await staying.finished).equals(data));
	await fill.done;
	t.false(h.body.destroyed);
	t.deepEqual(h.commits, [data.length]);
	t.true((await readFile(h.store.pathOf(digest))).equals(data));
});

test('a slow reader still gets every byte after the fill is done', async t => {
	const data = bytes(3 * 1024 * 1024 + 17);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	await fill.ready;
	const stream = fill.createReader();
	h.body.push(data);
	h.body.end();
	await fill.done;
	// nothing consumed until now: the reader must still hold the temp file open
	const collector = new Collector(stream);
	t.true((await collector.finished).equals(data));
});

test('drain waits for fills in flight', async t => {
	const data = bytes(100);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	await fill.ready;
	let drained = false;
	const draining = h.fills.drain().then(() => {
		drained = true;
	});
	await settle();
	t.false(drained);
	h.body.push(data);
	h.body.end();
	await draining;
	t.is(fill.state, 'done');
});

test('sweepTemp removes leftovers', async t => {
	const h = await harness(t, 10);
	const digest = digestOf(bytes(10));
	const temp = await h.store.createTemp(digest);
	await temp.append(bytes(5));
	t.is(temp.written, 5);
	await writeFile(path.join(h.store.tmpDir, `${'0'.repeat(64)}.tmp-abcdef`), 'x');
	await mkdir(path.join(h.store.tmpDir, 'stray-dir'));
	await writeFile(path.join(h.store.tmpDir, 'stray-dir', 'file'), 'y');
	t.is((await readdir(h.store.tmpDir)).length, 3);

	t.is(await h.store.sweepTemp(), 3);
	t.deepEqual(await readdir(h.store.tmpDir), []);
	t.is(await h.store.sweepTemp(), 0);
	await temp.discard();
	await temp.discard(); // safe twice
});

// A reader created before the upstream answered takes its hold on the temp
// file once the file exists, and releases only a hold it took.
test('a reader created before ready still gets every byte', async t => {
	const data = bytes(3 * 1024 * 1024 + 5);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	const stream = fill.createReader(); // the temp file does not exist yet
	await fill.ready;
	h.body.push(data);
	h.body.end();
	await fill.done;
	await settle();
	const collector = new Collector(stream);
	t.true((await collector.finished).equals(data));
});

test('a reader that is not consumed does not buffer ahead of its client while the fill runs on', async t => {
	const data = bytes(16 * 1024 * 1024 + 3);
	const digest = digestOf(data);
	const h = await harness(t, data.length);
	const {fill} = h.fills.join(digest, h.store, h.open, h.commit);
	await fill.ready;
	const stalled = fill.createReader();
	stalled.pause();
	stalled.read(0); // ask once, as a client that then stops reading would
	for (let offset = 0; offset < data.length; offset += 256 * 1024) {
		h.body.push(data.subarray(offset, Math.min(offset + 256 * 1024, data.length)));
		await sleep(1);
	}

	h.body.end();
	await fill.done;
	await sleep(20);
	t.true(stalled.readableLength <= 2 * 1024 * 1024, `the stalled reader holds ${stalled.readableLength} bytes`);
	const collector = new Collector(stalled);
	stalled.resume();
	t.true((await collector.finished).equals(data), 'and still gets every byte once it reads');
});
