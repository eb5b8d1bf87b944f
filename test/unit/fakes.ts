/**
 * Small in-memory fakes and temp-dir stores shared by the unit tests of the
 * services (blob layers, proxy, uploads, maintenance). Not a test file: ava
 * only runs `*.test.ts`.
 */
import {createHash} from 'node:crypto';
import {mkdtemp, readdir, rm} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {type ExecutionContext} from 'ava';
import {type BlobOrigin, type FillSource} from '../../src/fill/source.js';
import {FsBlobStore} from '../../src/store/fs/index.js';
import {type RepoKey} from '../../src/store/metadata.js';
import {SqliteMetadataStore} from '../../src/store/sqlite/index.js';
import {RegistryError} from '../../src/v2/errors.js';
import {type Digest, type DigestAlgorithm, parseDigest} from '../../src/v2/grammar.js';

export type Stores = {dir: string; metadata: SqliteMetadataStore; blobs: FsBlobStore};

/** A temp dir removed when the test ends. */
export async function tempDir(t: ExecutionContext, prefix = 'mirror-unit-'): Promise<string> {
	const dir = await mkdtemp(path.join(tmpdir(), prefix));
	t.teardown(async () => rm(dir, {recursive: true, force: true}));
	return dir;
}

/** The embedded drivers on a temp dir: SQLite metadata and the filesystem blob store. */
export async function openStores(t: ExecutionContext): Promise<Stores> {
	const dir = await tempDir(t, 'mirror-stores-');
	const blobs = new FsBlobStore(path.join(dir, 'data'));
	await blobs.init();
	const metadata = new SqliteMetadataStore(path.join(dir, 'mirror.db'));
	// Registered after the dir's teardown, so it runs first (ava runs teardowns last-in first-out).
	t.teardown(async () => metadata.close());
	return {dir, metadata, blobs};
}

/** Deterministic bytes. */
export function bytes(length: number, seed = 1): Buffer {
	const buffer = Buffer.alloc(length);
	for (let index = 0; index < length; index++) {
		buffer[index] = (index * 31 + seed * 7 + (index >> 8)) & 0xff;
	}

	return buffer;
}

export function digestOf(data: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): Digest {
	return parseDigest(`${algorithm}:${createHash(algorithm).update(data).digest('hex')}`);
}

/** Everything a stream yields, as one buffer. */
export async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
	const chunks: Buffer[] = [];
	for await (const chunk of stream) {
		chunks.push(Buffer.from(chunk as Uint8Array));
	}

	return Buffer.concat(chunks);
}

/** Writes `data` as a committed blob file (no metadata row). */
export async function writeBlobFile(blobs: FsBlobStore, data: Uint8Array, digest = digestOf(data)): Promise<Digest> {
	const temp = await blobs.createTemp(digest);
	await temp.append(data);
	await temp.commit(digest);
	return digest;
}

/** A committed blob: its file, and its row linked to `repo`. */
export async function storeBlob(
	stores: Pick<Stores, 'metadata' | 'blobs'>,
	repo: RepoKey,
	data: Uint8Array,
	options: {pushed?: boolean; now?: number} = {},
): Promise<Digest> {
	const digest = await writeBlobFile(stores.blobs, data);
	await stores.metadata.putBlob(repo, {digest: digest.value, size: data.length, pushed: options.pushed ?? false, now: options.now ?? 1000});
	return digest;
}

/** Files left under a dir (temp files of fills, upload sessions). */
export async function filesUnder(dir: string): Promise<string[]> {
	const entries = await readdir(dir, {recursive: true, withFileTypes: true}).catch(() => []);
	return entries.filter(entry => entry.isFile()).map(entry => path.relative(dir, path.join(entry.parentPath, entry.name)));
}

/** Lets pending callbacks (file I/O, timers at 0) and microtasks run. */
export async function settle(): Promise<void> {
	for (let index = 0; index < 3; index++) {
		await new Promise(resolve => setImmediate(resolve));
	}
}

/** A promise with its resolve at hand. */
export function deferred<T = void>(): {promise: Promise<T>; resolve: (value: T) => void; reject: (error: Error) => void} {
	let resolve!: (value: T) => void;
	let reject!: (error: Error) => void;
	const promise = new Promise<T>((yes, no) => {
		resolve = yes;
		reject = no;
	});
	return {promise, resolve, reject};
}

/** An upstream body the test drives by hand: nothing arrives until pushed. */
export class ManualBody implements AsyncIterable<Uint8Array> {
	destroyed = false;
	iterations = 0;
	readonly #queue: Uint8Array[] = [];
	#ended = false;
	#error: Error | undefined;
	#wake: (() => void) | undefined;

	push(chunk: Uint8Array): void {
		this.#queue.push(chunk);
		this.#notify();
	}

	end(): void {
		this.#ended = true;
		this.#notify();
	}

	/** Pushes `data` in `parts` chunks and ends. */
	send(data: Uint8Array, parts = 3): void {
		const step = Math.ceil(data.length / parts);
		for (let offset = 0; offset < data.length; offset += step) {
			this.push(data.subarray(offset, offset + step));
		}

		this.end();
	}

	fail(error: Error): void {
		this.#error = error;
		this.#notify();
	}

	destroy(): void {
		this.destroyed = true;
		this.#ended = true;
		this.#notify();
	}

	async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
		this.iterations++;
		for (;;) {
			const chunk = this.#queue.shift();
			if (chunk) {
				yield chunk;
				continue;
			}

			if (this.#error) {
				throw this.#error;
			}

			if (this.#ended) {
				return;
			}

			await new Promise<void>(resolve => {
				this.#wake = resolve;
			});
		}
	}

	#notify(): void {
		const wake = this.#wake;
		this.#wake = undefined;
		wake?.();
	}
}

/**
 * An upstream as the blob layers see it. It has the blobs in `blobs`;
 * `head` and `open` calls are counted (`opens` by digest, `froms` by the
 * byte a fill asked from). `open` serves the bytes from `from` at once
 * unless `body` is set: then the first open gets that body, fed by hand.
 */
export class FakeOrigin implements BlobOrigin {
	readonly blobs = new Map<string, Uint8Array>();
	readonly heads: string[] = [];
	readonly opens: string[] = [];
	readonly froms: number[] = [];
	offline = false;
	/** Thrown by head() instead of answering. */
	headError: Error | undefined;
	/** Thrown by open() instead of answering. */
	openError: Error | undefined;
	/** The body the next open() hands out (fed by the test); by default one made from `blobs`. */
	body: ManualBody | undefined;
	/** The size open() announces; by default the stored bytes' length. */
	announcedSize: number | undefined | 'none';
	/** The body a resumed open (from > 0) hands out instead of the rest of the bytes. */
	resumeBody: (() => ManualBody) | undefined;
	/** Called when open() is asked, before it answers. */
	onOpen: (() => void) | undefined;

	constructor(
		readonly upstream: string,
		blobs: Uint8Array[] = [],
	) {
		for (const data of blobs) {
			this.add(data);
		}
	}

	add(data: Uint8Array, digest = digestOf(data)): Digest {
		this.blobs.set(digest.value, data);
		return digest;
	}

	async head(digest: Digest): Promise<number | undefined> {
		this.heads.push(digest.value);
		if (this.headError) {
			throw this.headError;
		}

		return this.blobs.get(digest.value)?.length;
	}

	async open(digest: Digest, from = 0): Promise<FillSource> {
		this.opens.push(digest.value);
		this.froms.push(from);
		this.onOpen?.();
		if (this.openError) {
			throw this.openError;
		}

		const data = this.blobs.get(digest.value);
		if (!data) {
			throw this.unknown(digest);
		}

		let body = this.body;
		this.body = undefined;
		if (!body && from > 0 && this.resumeBody) {
			body = this.resumeBody();
		}

		if (!body) {
			body = new ManualBody();
			body.send(data.subarray(from));
		}

		const size = this.announcedSize === 'none' ? undefined : (this.announcedSize ?? data.length);
		return {size, start: from, body};
	}

	unknown(digest: Digest): RegistryError {
		return new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value, upstream: this.upstream}});
	}
}

/** The access recorder's `touch`, remembered. */
export class FakeAccess {
	readonly touched: Array<[kind: 'blob' | 'manifest', digest: string]> = [];

	touch(kind: 'blob' | 'manifest', digest: string): void {
		this.touched.push([kind, digest]);
	}
}
