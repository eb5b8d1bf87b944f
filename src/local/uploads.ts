/**
 * Blob uploads into local namespaces (the V2 upload protocol). Sessions live
 * in the stores (a row in the metadata store, a file in the blob store), so a
 * push survives a restart and any process can continue it. The sha256 is
 * computed while bytes arrive and kept in memory per session; when that state
 * is missing (another process took the previous chunk, or a restart), the
 * file is hashed once at the end instead.
 */
import {createHash, randomUUID, type Hash} from 'node:crypto';
import {type Logger} from '../util/log.js';
import {type BlobContent, type UploadStore} from '../store/blob-store.js';
import {HashingWriter, hashOf} from '../store/hashing.js';
import {KeyedQueue} from '../util/single-flight.js';
import {type RepoKey, type UploadIndex, type UploadRecord, type WriteIndex} from '../store/metadata.js';
import {ChunkRangeError, RegistryError} from '../v2/errors.js';
import {type Digest} from '../v2/grammar.js';

export const UPLOAD_IDLE_TTL_MS = 24 * 60 * 60 * 1000;
const UUID = /^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$/;

export type ChunkRange = {start: number; end: number};

type HashState = {hash: Hash; offset: number};

export class UploadService {
	readonly #hashes = new Map<string, HashState>();
	/** One request at a time per session: chunks must land in order. */
	readonly #sessions = new KeyedQueue<string>();
	readonly #now: () => number;

	constructor(
		private readonly metadata: UploadIndex & Pick<WriteIndex, 'putBlob'>,
		private readonly blobs: UploadStore & Pick<BlobContent, 'createTemp'>,
		private readonly log: Logger,
		now: () => number = Date.now,
	) {
		this.#now = now;
	}

	async start(repo: RepoKey): Promise<UploadRecord> {
		const id = randomUUID();
		const now = this.#now();
		// The row first: a sweep (on any replica) removes session data that has no row.
		await this.metadata.createUpload({id, repo, now});
		try {
			await this.blobs.createUpload(id);
		} catch (error) {
			await this.metadata.deleteUpload(id);
			throw error;
		}

		this.#hashes.set(id, {hash: createHash('sha256'), offset: 0});
		return {id, repo, size: 0, createdAt: now, updatedAt: now};
	}

	async status(repo: RepoKey, id: string): Promise<UploadRecord> {
		const upload = UUID.test(id) ? await this.metadata.getUpload(id) : undefined;
		if (!upload || upload.repo.registry !== repo.registry || upload.repo.name !== repo.name) {
			throw new RegistryError('BLOB_UPLOAD_UNKNOWN', {detail: {uuid: id.slice(0, 100)}});
		}

		const size = await this.blobs.uploadSize(id);
		if (size === undefined) {
			await this.metadata.deleteUpload(id);
			throw new RegistryError('BLOB_UPLOAD_UNKNOWN', {detail: {uuid: id, reason: 'session data is gone'}});
		}

		return {...upload, size};
	}

	/** Appends a chunk (PATCH). With a range, it must start where the session ends. */
	async append(repo: RepoKey, id: string, body: AsyncIterable<Uint8Array>, range?: ChunkRange): Promise<UploadRecord> {
		return this.#sessions.run(id, async () => this.#append(repo, id, body, range));
	}

	async #append(repo: RepoKey, id: string, body: AsyncIterable<Uint8Array>, range?: ChunkRange): Promise<UploadRecord> {
		const upload = await this.status(repo, id);
		if (range && range.start !== upload.size) {
			throw new ChunkRangeError({
				message: `chunk starts at ${range.start} but the upload has ${upload.size} bytes`,
				headers: {Range: rangeHeader(upload.size), 'Docker-Upload-UUID': id},
			});
		}

		let state = this.#hashes.get(id);
		if (state && state.offset !== upload.size) {
			this.#hashes.delete(id);
			state = undefined;
		}

		const result = await this.blobs.appendUpload(id, upload.size, body, chunk => state?.hash.update(chunk));
		if (state) {
			state.offset = result.size;
		}

		await this.metadata.setUploadSize(id, result.size, this.#now());
		if (result.error) {
			throw result.error; // the client went away mid-chunk; what arrived is kept for a resume
		}

		if (range && result.size - upload.size !== range.end - range.start + 1) {
			throw new RegistryError('BLOB_UPLOAD_INVALID', {
				message: `Content-Range announced ${range.end - range.start + 1} bytes but ${result.size - upload.size} arrived`,
			});
		}

		return {...upload, size: result.size};
	}

	/** Completes the upload (PUT ?digest=), with an optional last chunk. */
	async finish(repo: RepoKey, id: string, digest: Digest, body: AsyncIterable<Uint8Array> | undefined, range?: ChunkRange): Promise<number> {
		return this.#sessions.run(id, async () => {
			let upload = await this.status(repo, id);
			if (body) {
				upload = await this.#append(repo, id, body, range);
			}

			const actual = await this.#digestOf(id, upload.size, digest.algorithm);
			if (actual !== digest.value) {
				throw new RegistryError('DIGEST_INVALID', {detail: {expected: digest.value, actual}});
			}

			await this.blobs.commitUpload(id, digest);
			await this.metadata.putBlob(repo, {digest: digest.value, size: upload.size, pushed: true, now: this.#now()});
			await this.metadata.deleteUpload(id);
			this.#hashes.delete(id);
			return upload.size;
		});
	}

	async cancel(repo: RepoKey, id: string): Promise<void> {
		await this.#sessions.run(id, async () => {
			await this.status(repo, id);
			await this.#remove(id);
		});
	}

	/** A whole blob in one request (POST ?digest= or a single PUT). */
	async monolithic(repo: RepoKey, digest: Digest, body: AsyncIterable<Uint8Array>): Promise<number> {
		const writer = new HashingWriter(await this.blobs.createTemp(digest), digest);
		try {
			for await (const chunk of body) {
				await writer.write(chunk);
			}

			const actual = writer.actual();
			if (actual !== digest.value) {
				throw new RegistryError('DIGEST_INVALID', {detail: {expected: digest.value, actual}});
			}

			await writer.temp.commit(digest);
			await this.metadata.putBlob(repo, {digest: digest.value, size: writer.written, pushed: true, now: this.#now()});
			return writer.written;
		} finally {
			await writer.temp.discard();
		}
	}

	/** Removes sessions idle for longer than `maxIdleMs`, and files without a session. */
	async sweep(maxIdleMs = UPLOAD_IDLE_TTL_MS): Promise<number> {
		let removed = 0;
		for (const upload of await this.metadata.uploadsIdleSince(this.#now() - maxIdleMs)) {
			if (!this.#sessions.busy(upload.id)) {
				await this.#remove(upload.id);
				removed++;
			}
		}

		for (const id of await this.blobs.listUploads()) {
			if (!(await this.metadata.getUpload(id)) && !this.#sessions.busy(id)) {
				await this.blobs.deleteUpload(id);
				removed++;
			}
		}

		if (removed > 0) {
			this.log.info({removed}, 'removed expired upload sessions');
		}

		return removed;
	}

	async #remove(id: string): Promise<void> {
		this.#hashes.delete(id);
		await this.metadata.deleteUpload(id);
		await this.blobs.deleteUpload(id);
	}

	async #digestOf(id: string, size: number, algorithm: Digest['algorithm']): Promise<string> {
		const state = this.#hashes.get(id);
		if (algorithm === 'sha256' && state?.offset === size) {
			return `sha256:${state.hash.copy().digest('hex')}`;
		}

		return hashOf(this.blobs.readUpload(id), algorithm);
	}
}

/** The `Range` header of an upload session: the bytes it holds, inclusive. */
export function rangeHeader(size: number): string {
	return `0-${Math.max(0, size - 1)}`;
}
