/**
 * The filesystem driver's content half: committed blobs under blobs/, fills
 * in progress under tmp/ (see index.ts for the whole tree).
 */
import {createReadStream} from 'node:fs';
import {mkdir, open, readdir, rename, rm, stat, type FileHandle} from 'node:fs/promises';
import path from 'node:path';
import {randomBytes} from 'node:crypto';
import {type Readable, type Writable} from 'node:stream';
import {type Digest} from '../../v2/grammar.js';
import {type BlobContent, type ByteRange, type TempBlob, writeAll} from '../blob-store.js';
import {sendFile} from './send.js';

export const READ_CHUNK = 1024 * 1024;

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

/** A new temp file in `dir` for a fill of `digest` (the name says which blob it was for). */
export async function openTemp(dir: string, digest: Digest, finalPath: (digest: Digest) => string): Promise<FsTempBlob> {
	const file = path.join(dir, `${digest.hex}.tmp-${randomBytes(6).toString('hex')}`);
	const handle = await open(file, 'w+', 0o644);
	return new FsTempBlob(file, handle, finalPath);
}

/** Empties `dir` of leftovers (interrupted fills, chunks); returns how many entries it held. */
export async function emptyDir(dir: string): Promise<number> {
	const entries = await readdir(dir).catch(() => []);
	await Promise.all(entries.map(async entry => rm(path.join(dir, entry), {force: true, recursive: true})));
	return entries.length;
}

export class FsBlobContent implements BlobContent {
	readonly blobsDir: string;
	readonly tmpDir: string;

	constructor(readonly root: string) {
		this.blobsDir = path.join(root, 'blobs');
		this.tmpDir = path.join(root, 'tmp');
	}

	async init(): Promise<void> {
		await mkdir(this.blobsDir, {recursive: true});
		await mkdir(this.tmpDir, {recursive: true});
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

	async sendTo(digest: Digest, range: ByteRange, out: Writable): Promise<void> {
		await sendFile(this.pathOf(digest), range, out);
	}

	async createTemp(digest: Digest): Promise<TempBlob> {
		return openTemp(this.tmpDir, digest, target => this.pathOf(target));
	}

	async remove(digest: Digest): Promise<void> {
		await rm(this.pathOf(digest), {force: true});
	}

	async sweepTemp(): Promise<number> {
		return emptyDir(this.tmpDir);
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
