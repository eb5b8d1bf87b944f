/**
 * The blob store holds bytes by digest. One interface; the filesystem driver
 * below is the embedded default.
 *
 * On-disk tree under storage.dir:
 *
 *   mirror.db, mirror.db-wal, mirror.db-shm   metadata (SQLite, WAL)
 *   blobs/sha256/<first 2 hex>/<64 hex>       committed blobs; written once by rename, never modified
 *   tmp/<64 hex>.tmp-<random>                 fills in progress; anything here at start-up is a leftover
 *   uploads/                                  push sessions (local namespaces)
 *
 * A file under blobs/ is always complete and verified: writers fill a temp
 * file, hash it while writing, and rename it into place only after the digest
 * checks.
 */
import {createReadStream} from 'node:fs';
import {mkdir, open, readdir, rename, rm, stat, type FileHandle} from 'node:fs/promises';
import path from 'node:path';
import {randomBytes} from 'node:crypto';
import {type Readable} from 'node:stream';
import {type Digest} from '../v2/grammar.js';

export type ByteRange = {start: number; end: number};

/** A temp file being filled; readers may read what has been written so far. */
export interface TempBlob {
	readonly written: number;
	append(chunk: Uint8Array): Promise<void>;
	read(buffer: Uint8Array, length: number, position: number): Promise<number>;
	/** Moves the file into place under `digest`. The caller has verified it. */
	commit(digest: Digest): Promise<void>;
	/** Deletes the temp file. Safe to call more than once and after commit. */
	discard(): Promise<void>;
	/** Readers hold the file open; it closes once finished and unreferenced. */
	retain(): void;
	release(): void;
}

export interface BlobStore {
	init(): Promise<void>;
	/** Size of a committed blob, or undefined when absent. */
	size(digest: Digest): Promise<number | undefined>;
	/** `size` (when known) sizes the read buffers: a 4 KiB blob does not need a 1 MiB one. */
	createReadStream(digest: Digest, range?: ByteRange, size?: number): Readable;
	createTemp(digest: Digest): Promise<TempBlob>;
	remove(digest: Digest): Promise<void>;
	/** Removes leftovers of interrupted fills; returns how many. */
	sweepTemp(): Promise<number>;
	/** Every committed digest on disk (for consistency checks). */
	list(): Promise<string[]>;
	/** A short-lived URL a client may fetch a committed blob from directly (object stores only). */
	redirectUrl?(digest: Digest): Promise<string>;
	/** Rejects when the store cannot be reached (readiness; remote stores only). */
	ping?(): Promise<void>;
	close?(): void;

	// Upload sessions of pushes: one file per session id (a UUID, checked by the caller).
	createUpload(id: string): Promise<void>;
	uploadSize(id: string): Promise<number | undefined>;
	/**
	 * Writes `source` into the session from `offset`. Bytes that arrived before
	 * a failure stay written (a client resumes after them): the result says how
	 * far the file got, and the error if the source failed.
	 */
	appendUpload(id: string, offset: number, source: AsyncIterable<Uint8Array>, onChunk?: (chunk: Uint8Array) => void): Promise<{size: number; error?: Error}>;
	readUpload(id: string): Readable;
	/** Moves the session's file into place under `digest`. The caller has verified it. */
	commitUpload(id: string, digest: Digest): Promise<void>;
	deleteUpload(id: string): Promise<void>;
	listUploads(): Promise<string[]>;
}

const READ_CHUNK = 1024 * 1024;

/** Writes all of `chunk` at `position` (a write may take only part of it). */
export async function writeAll(handle: FileHandle, chunk: Uint8Array, position: number): Promise<void> {
	let offset = 0;
	while (offset < chunk.length) {
		offset += (await handle.write(chunk, offset, chunk.length - offset, position + offset)).bytesWritten;
	}
}

/**
 * Writes `source` into `handle` from `position` on, until it ends or fails.
 * The bytes written before a failure stay: the result says how far the file
 * got (`end`), and the error if there was one.
 */
export async function writeSource(
	handle: FileHandle,
	position: number,
	source: AsyncIterable<Uint8Array>,
	onChunk?: (chunk: Uint8Array) => void,
): Promise<{end: number; error?: Error}> {
	let end = position;
	try {
		for await (const chunk of source) {
			await writeAll(handle, chunk, end);
			end += chunk.length;
			onChunk?.(chunk);
		}

		return {end};
	} catch (error) {
		return {end, error: error instanceof Error ? error : new Error(String(error))};
	}
}

export class FsTempBlob implements TempBlob {
	#written = 0;
	#refs = 1;
	#finished = false;
	#closing: Promise<void> | undefined;

	constructor(
		readonly path: string,
		readonly handle: FileHandle,
		readonly finalPath: (digest: Digest) => string,
	) {}

	get written(): number {
		return this.#written;
	}

	async append(chunk: Uint8Array): Promise<void> {
		await writeAll(this.handle, chunk, this.#written);
		this.#written += chunk.length;
	}

	async read(buffer: Uint8Array, length: number, position: number): Promise<number> {
		const {bytesRead} = await this.handle.read(buffer, 0, length, position);
		return bytesRead;
	}

	async commit(digest: Digest): Promise<void> {
		const target = this.finalPath(digest);
		await mkdir(path.dirname(target), {recursive: true});
		await rename(this.path, target);
		this.#finish();
	}

	async discard(): Promise<void> {
		this.#finish();
		await rm(this.path, {force: true});
	}

	retain(): void {
		this.#refs++;
	}

	release(): void {
		this.#refs--;
		this.#maybeClose();
	}

	#finish(): void {
		if (!this.#finished) {
			this.#finished = true;
			this.#refs--;
			this.#maybeClose();
		}
	}

	#maybeClose(): void {
		if (this.#refs <= 0 && !this.#closing) {
			this.#closing = this.handle.close().catch(() => undefined);
		}
	}
}

export class FsBlobStore implements BlobStore {
	readonly blobsDir: string;
	readonly tmpDir: string;
	readonly uploadsDir: string;

	constructor(readonly root: string) {
		this.blobsDir = path.join(root, 'blobs');
		this.tmpDir = path.join(root, 'tmp');
		this.uploadsDir = path.join(root, 'uploads');
	}

	async init(): Promise<void> {
		await mkdir(this.blobsDir, {recursive: true});
		await mkdir(this.tmpDir, {recursive: true});
		await mkdir(this.uploadsDir, {recursive: true});
	}

	#uploadPath(id: string): string {
		if (!/^[a-f0-9-]{36}$/.test(id)) {
			throw new Error(`invalid upload id: ${id}`);
		}

		return path.join(this.uploadsDir, id);
	}

	async createUpload(id: string): Promise<void> {
		await (await open(this.#uploadPath(id), 'wx', 0o644)).close();
	}

	async uploadSize(id: string): Promise<number | undefined> {
		try {
			return (await stat(this.#uploadPath(id))).size;
		} catch {
			return undefined;
		}
	}

	async appendUpload(
		id: string,
		offset: number,
		source: AsyncIterable<Uint8Array>,
		onChunk?: (chunk: Uint8Array) => void,
	): Promise<{size: number; error?: Error}> {
		const handle = await open(this.#uploadPath(id), 'r+');
		let end = offset;
		try {
			const result = await writeSource(handle, offset, source, onChunk);
			end = result.end;
			return {size: result.end, ...(result.error ? {error: result.error} : {})};
		} finally {
			// Anything past `end` (a partial chunk) is not part of the session.
			await handle.truncate(end).catch(() => undefined);
			await handle.close();
		}
	}

	readUpload(id: string): Readable {
		return createReadStream(this.#uploadPath(id), {highWaterMark: READ_CHUNK});
	}

	async commitUpload(id: string, digest: Digest): Promise<void> {
		const target = this.pathOf(digest);
		await mkdir(path.dirname(target), {recursive: true});
		await rename(this.#uploadPath(id), target);
	}

	async deleteUpload(id: string): Promise<void> {
		await rm(this.#uploadPath(id), {force: true});
	}

	async listUploads(): Promise<string[]> {
		return (await readdir(this.uploadsDir).catch(() => [])).filter(entry => /^[a-f0-9-]{36}$/.test(entry));
	}

	pathOf(digest: Digest): string {
		return path.join(this.blobsDir, digest.algorithm, digest.hex.slice(0, 2), digest.hex);
	}

	async size(digest: Digest): Promise<number | undefined> {
		try {
			const info = await stat(this.pathOf(digest));
			return info.isFile() ? info.size : undefined;
		} catch {
			return undefined;
		}
	}

	createReadStream(digest: Digest, range?: ByteRange, size?: number): Readable {
		const length = range ? range.end - range.start + 1 : size;
		const highWaterMark = length === undefined ? READ_CHUNK : Math.min(READ_CHUNK, Math.max(16 * 1024, length));
		return createReadStream(this.pathOf(digest), {highWaterMark, start: range?.start, end: range?.end});
	}

	async createTemp(digest: Digest): Promise<TempBlob> {
		const file = path.join(this.tmpDir, `${digest.hex}.tmp-${randomBytes(6).toString('hex')}`);
		const handle = await open(file, 'w+', 0o644);
		return new FsTempBlob(file, handle, target => this.pathOf(target));
	}

	async remove(digest: Digest): Promise<void> {
		await rm(this.pathOf(digest), {force: true});
	}

	async sweepTemp(): Promise<number> {
		const entries = await readdir(this.tmpDir).catch(() => []);
		await Promise.all(entries.map(async entry => rm(path.join(this.tmpDir, entry), {force: true, recursive: true})));
		return entries.length;
	}

	async list(): Promise<string[]> {
		const digests: string[] = [];
		for (const algorithm of await readdir(this.blobsDir).catch(() => [])) {
			for (const shard of await readdir(path.join(this.blobsDir, algorithm)).catch(() => [])) {
				for (const hex of await readdir(path.join(this.blobsDir, algorithm, shard)).catch(() => [])) {
					digests.push(`${algorithm}:${hex}`);
				}
			}
		}

		return digests;
	}
}
