/**
 * The blob store holds bytes by digest. Two roles: BlobContent (committed
 * blobs and the temp files of fills) and UploadStore (push sessions);
 * BlobStore is both. The filesystem driver (fs/) is the embedded default, the
 * S3 driver (s3/) the shared one.
 */
import {type FileHandle} from 'node:fs/promises';
import {type Readable, type Writable} from 'node:stream';
import {type Digest} from '../v2/grammar.js';

export type ByteRange = {start: number; end: number};

/** A temp file being filled; readers may read what has been written so far. */
export interface TempBlob {
	readonly written: number;
	/** The local file, when there is one: other processes of this machine may follow it (cluster/followed-fill.ts). */
	readonly path?: string;
	append(chunk: Uint8Array): Promise<void>;
	read(buffer: Uint8Array, length: number, position: number): Promise<number>;
	/** Moves the file into place under `digest`. The caller has verified it. */
	commit(digest: Digest): Promise<void>;
	/** Deletes the temp file. Safe to call more than once and after commit. */
	discard(): Promise<void>;
	/** Readers hold the file open; it closes once finished and unreferenced. */
	retain(): void;
	release(): void;
	/**
	 * The first bytes of this blob that an earlier fill (a replica that died)
	 * left in the store: the fill appends and hashes them first, then asks the
	 * upstream only for the rest. Absent when there are none.
	 */
	readonly recovered?: {bytes: number; read(): AsyncIterable<Uint8Array>};
}

/**
 * The content-addressed store: committed blobs by digest, and the temp files
 * fills write before a blob is committed.
 */
export interface BlobContent {
	init(): Promise<void>;
	/** Size of a committed blob, or undefined when absent. */
	size(digest: Digest): Promise<number | undefined>;
	/** `size` (when known) sizes the read buffers: a 4 KiB blob does not need a 1 MiB one. */
	createReadStream(digest: Digest, range?: ByteRange, size?: number): Readable;
	/**
	 * Writes bytes `range` of a committed blob to `out` and ends it, with
	 * fewer allocations than a stream (drivers that can: the filesystem).
	 */
	sendTo?(digest: Digest, range: ByteRange, out: Writable): Promise<void>;
	createTemp(digest: Digest): Promise<TempBlob>;
	/**
	 * Set when createTemp may hand back bytes an earlier fill left (`recovered`):
	 * a fill then makes its temp file before it asks the upstream, instead of
	 * doing both at once.
	 */
	readonly keepsPartialFills?: boolean;
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
}

/** Upload sessions of pushes: one file per session id (a UUID, checked by the caller). */
export interface UploadStore {
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

/** Upload session ids: UUIDs (the drivers check them before they become a path or a key). */
export const UPLOAD_ID = /^[a-f0-9-]{36}$/;

export function checkUploadId(id: string): string {
	if (!UPLOAD_ID.test(id)) {
		throw new Error(`invalid upload id: ${id}`);
	}

	return id;
}

/** Both roles: what a driver (fs/, s3/) implements. */
export interface BlobStore extends BlobContent, UploadStore {}

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
