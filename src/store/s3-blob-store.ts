/**
 * The S3 blob store driver, for several replicas sharing one bucket (Ceph's
 * radosgw in tests; any S3-compatible store).
 *
 * Keys under `prefix` in the bucket:
 *
 *   blobs/sha256/<first 2 hex>/<64 hex>       committed blobs, each complete and verified
 *   uploads/<uuid>/session                    an upload session exists (empty object)
 *   uploads/<uuid>/chunk-<16-digit offset>    the bytes of one PATCH, at that offset
 *
 * A fill streams to a multipart upload aimed straight at the blob's key while
 * clients read the replica's local temp file; the upload is completed only
 * after the digest checks, and S3 shows an object only once it is complete,
 * so nothing partial is ever visible in the bucket. A failed fill aborts it.
 * Upload sessions are objects, not files, because behind a round-robin
 * balancer one push's PATCHes land on different replicas.
 */
import {once} from 'node:events';
import {createReadStream} from 'node:fs';
import {mkdir, open, readdir, rm} from 'node:fs/promises';
import path from 'node:path';
import {randomBytes} from 'node:crypto';
import {PassThrough, Readable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {
	AbortMultipartUploadCommand,
	CopyObjectCommand,
	CreateBucketCommand,
	DeleteObjectCommand,
	GetObjectCommand,
	HeadBucketCommand,
	HeadObjectCommand,
	ListMultipartUploadsCommand,
	ListObjectsV2Command,
	PutObjectCommand,
	S3Client,
	S3ServiceException,
} from '@aws-sdk/client-s3';
import {Upload} from '@aws-sdk/lib-storage';
import {LRUCache} from 'lru-cache';
import {getSignedUrl} from '@aws-sdk/s3-request-presigner';
import {type S3Config} from '../config/load.js';
import {type Digest} from '../v2/grammar.js';
import {type BlobStore, type ByteRange, FsTempBlob, type TempBlob, writeSource} from './blob-store.js';

/** Parts of a fill's multipart upload; S3's minimum is 5 MiB. */
export const PART_SIZE = 8 * 1024 * 1024;
/** Parts in flight per upload: with 2, radosgw's PUT rate held a cold fill at 44 MB/s; with 4, 56 (bench/RESULTS.md). */
export const QUEUE_SIZE = 4;
/** Multipart uploads no replica completed or aborted (it died) are aborted after this. */
const STALE_MULTIPART_MS = 24 * 60 * 60 * 1000;
const PRESIGN_SECONDS = 300;
/**
 * How long a HEAD that found a blob is trusted. Blobs never change, and one
 * only goes away by eviction, gc or verify --delete: a replica that removed it
 * forgets it at once, the others within this time. It saves a HEAD per hit.
 */
const PRESENT_TTL_MS = 30_000;
const UPLOAD_ID = /^[a-f0-9-]{36}$/;
/** Connections to the object store: kept alive, many at once (each client read and each fill part is one). */
export const REQUEST_HANDLER = {connectionTimeout: 5000, socketTimeout: 60_000, httpAgent: {keepAlive: true, maxSockets: 256}};

function isNotFound(error: unknown): boolean {
	if (error instanceof S3ServiceException) {
		return error.$metadata.httpStatusCode === 404 || error.name === 'NotFound' || error.name === 'NoSuchKey' || error.name === 'NoSuchBucket';
	}

	return false;
}

/** A fill: the local temp file (for this replica's readers) and the multipart upload fed alongside it. */
class S3TempBlob implements TempBlob {
	/** lib-storage buffers a part itself; this only smooths the hand-over. */
	readonly #body = new PassThrough({highWaterMark: 1024 * 1024});
	readonly #upload: Upload;
	readonly #uploaded: Promise<void>;
	#failure: Error | undefined;

	constructor(
		readonly local: FsTempBlob,
		client: S3Client,
		bucket: string,
		key: string,
		private readonly onCommitted: (size: number) => void,
	) {
		this.#upload = new Upload({
			client,
			params: {Bucket: bucket, Key: key, Body: this.#body, ContentType: 'application/octet-stream'},
			partSize: PART_SIZE,
			queueSize: QUEUE_SIZE,
			leavePartsOnError: false,
		});
		this.#uploaded = this.#upload.done().then(
			() => undefined,
			(error: unknown) => {
				this.#failure = error instanceof Error ? error : new Error(String(error));
				this.#body.destroy();
				throw this.#failure;
			},
		);
		this.#uploaded.catch(() => undefined);
	}

	get written(): number {
		return this.local.written;
	}

	async append(chunk: Uint8Array): Promise<void> {
		if (this.#failure) {
			throw this.#failure;
		}

		await this.local.append(chunk);
		if (!this.#body.write(chunk)) {
			// S3 sets the pace: wait until the upload took what is buffered, or failed.
			await Promise.race([once(this.#body, 'drain'), this.#uploaded]);
		}
	}

	async read(buffer: Uint8Array, length: number, position: number): Promise<number> {
		return this.local.read(buffer, length, position);
	}

	async commit(_digest: Digest): Promise<void> {
		this.#body.end();
		await this.#uploaded;
		this.onCommitted(this.local.written);
		await this.local.discard();
	}

	async discard(): Promise<void> {
		if (!this.#body.writableEnded || this.#failure) {
			this.#body.destroy();
			await this.#upload.abort().catch(() => undefined);
		}

		await this.local.discard();
	}

	retain(): void {
		this.local.retain();
	}

	release(): void {
		this.local.release();
	}
}

export class S3BlobStore implements BlobStore {
	readonly client: S3Client;
	readonly #bucket: string;
	readonly #prefix: string;
	readonly #tmpDir: string;
	readonly #present = new LRUCache<string, number>({max: 10_000, ttl: PRESENT_TTL_MS});

	constructor(
		readonly config: S3Config,
		/** This replica's own temp files (fills in progress, chunks on their way to S3). */
		dir: string,
	) {
		this.client = new S3Client({
			endpoint: config.endpoint,
			region: config.region,
			credentials: {accessKeyId: config.accessKey, secretAccessKey: config.secretKey},
			forcePathStyle: config.forcePathStyle,
			// Streamed uploads with the SDK's default checksums need chunked encoding, which Ceph answers with 411.
			requestChecksumCalculation: 'WHEN_REQUIRED',
			responseChecksumValidation: 'WHEN_REQUIRED',
			requestHandler: REQUEST_HANDLER,
			maxAttempts: 3,
		});
		this.#bucket = config.bucket;
		this.#prefix = config.prefix;
		this.#tmpDir = path.join(dir, 'tmp');
	}

	#blobKey(digest: Digest): string {
		return `${this.#prefix}blobs/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}`;
	}

	#uploadPrefix(id: string): string {
		if (!UPLOAD_ID.test(id)) {
			throw new Error(`invalid upload id: ${id}`);
		}

		return `${this.#prefix}uploads/${id}/`;
	}

	async init(): Promise<void> {
		await mkdir(this.#tmpDir, {recursive: true});
		try {
			await this.client.send(new HeadBucketCommand({Bucket: this.#bucket}));
		} catch (error) {
			if (!isNotFound(error)) {
				throw new Error(`s3: cannot reach bucket ${this.#bucket} at ${this.config.endpoint}: ${describe(error)}`);
			}

			try {
				await this.client.send(new CreateBucketCommand({Bucket: this.#bucket}));
			} catch (createError) {
				// Another replica starting at the same moment created it first.
				const name = (createError as {name?: string}).name;
				if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') {
					throw new Error(`s3: cannot create bucket ${this.#bucket}: ${describe(createError)}`);
				}
			}
		}
	}

	/** Rejects when the bucket cannot be reached (readiness). */
	async ping(): Promise<void> {
		await this.client.send(new HeadBucketCommand({Bucket: this.#bucket}));
	}

	async size(digest: Digest): Promise<number | undefined> {
		const known = this.#present.get(digest.value);
		if (known !== undefined) {
			return known;
		}

		try {
			const head = await this.client.send(new HeadObjectCommand({Bucket: this.#bucket, Key: this.#blobKey(digest)}));
			if (head.ContentLength !== undefined) {
				this.#present.set(digest.value, head.ContentLength);
			}

			return head.ContentLength;
		} catch (error) {
			if (isNotFound(error)) {
				return undefined;
			}

			throw error;
		}
	}

	createReadStream(digest: Digest, range?: ByteRange, _size?: number): Readable {
		return this.#readObject(this.#blobKey(digest), range);
	}

	#readObject(key: string, range?: ByteRange): Readable {
		const output = new PassThrough({highWaterMark: 1024 * 1024});
		this.client
			.send(new GetObjectCommand({Bucket: this.#bucket, Key: key, Range: range ? `bytes=${range.start}-${range.end}` : undefined}))
			.then(async response => pipeline(response.Body as Readable, output))
			.catch((error: unknown) => output.destroy(error instanceof Error ? error : new Error(String(error))));
		return output;
	}

	async redirectUrl(digest: Digest): Promise<string> {
		return getSignedUrl(this.client, new GetObjectCommand({Bucket: this.#bucket, Key: this.#blobKey(digest)}), {expiresIn: PRESIGN_SECONDS});
	}

	async createTemp(digest: Digest): Promise<TempBlob> {
		const file = path.join(this.#tmpDir, `${digest.hex}.tmp-${randomBytes(6).toString('hex')}`);
		const handle = await open(file, 'w+', 0o644);
		const local = new FsTempBlob(file, handle, () => {
			throw new Error('s3: a fill commits to the bucket, not to a local path');
		});
		return new S3TempBlob(local, this.client, this.#bucket, this.#blobKey(digest), size => this.#present.set(digest.value, size));
	}

	async remove(digest: Digest): Promise<void> {
		this.#present.delete(digest.value);
		await this.client.send(new DeleteObjectCommand({Bucket: this.#bucket, Key: this.#blobKey(digest)}));
	}

	async sweepTemp(): Promise<number> {
		const entries = await readdir(this.#tmpDir).catch(() => []);
		await Promise.all(entries.map(async entry => rm(path.join(this.#tmpDir, entry), {force: true, recursive: true})));
		// Multipart uploads of replicas that died mid-fill: their parts cost space until aborted.
		let aborted = 0;
		const cutoff = Date.now() - STALE_MULTIPART_MS;
		const listing = await this.client.send(new ListMultipartUploadsCommand({Bucket: this.#bucket, Prefix: `${this.#prefix}blobs/`}));
		for (const upload of listing.Uploads ?? []) {
			if (upload.Key && upload.UploadId && upload.Initiated && upload.Initiated.getTime() < cutoff) {
				await this.client.send(new AbortMultipartUploadCommand({Bucket: this.#bucket, Key: upload.Key, UploadId: upload.UploadId}));
				aborted++;
			}
		}

		return entries.length + aborted;
	}

	async #listKeys(prefix: string): Promise<Array<{key: string; size: number}>> {
		const keys: Array<{key: string; size: number}> = [];
		let token: string | undefined;
		do {
			const page = await this.client.send(new ListObjectsV2Command({Bucket: this.#bucket, Prefix: prefix, ContinuationToken: token}));
			for (const object of page.Contents ?? []) {
				if (object.Key) {
					keys.push({key: object.Key, size: object.Size ?? 0});
				}
			}

			token = page.IsTruncated ? page.NextContinuationToken : undefined;
		} while (token);
		return keys;
	}

	async list(): Promise<string[]> {
		const base = `${this.#prefix}blobs/`;
		return (await this.#listKeys(base)).flatMap(({key}) => {
			const match = /^([a-z0-9]+)\/[a-f0-9]{2}\/([a-f0-9]+)$/.exec(key.slice(base.length));
			return match ? [`${match[1]}:${match[2]}`] : [];
		});
	}

	// Upload sessions.

	async createUpload(id: string): Promise<void> {
		await this.client.send(new PutObjectCommand({Bucket: this.#bucket, Key: `${this.#uploadPrefix(id)}session`, Body: '', ContentLength: 0}));
	}

	/** The session's chunks in offset order, or undefined when there is no session. */
	async #chunks(id: string): Promise<Array<{key: string; offset: number; size: number}> | undefined> {
		const base = this.#uploadPrefix(id);
		const keys = await this.#listKeys(base);
		if (!keys.some(({key}) => key === `${base}session`)) {
			return undefined;
		}

		return keys
			.flatMap(({key, size}) => {
				const match = /^chunk-(\d{16})$/.exec(key.slice(base.length));
				return match ? [{key, offset: Number(match[1]), size}] : [];
			})
			.sort((a, b) => a.offset - b.offset);
	}

	async uploadSize(id: string): Promise<number | undefined> {
		const chunks = await this.#chunks(id);
		return chunks?.reduce((total, chunk) => Math.max(total, chunk.offset + chunk.size), 0);
	}

	async appendUpload(
		id: string,
		offset: number,
		source: AsyncIterable<Uint8Array>,
		onChunk?: (chunk: Uint8Array) => void,
	): Promise<{size: number; error?: Error}> {
		const key = `${this.#uploadPrefix(id)}chunk-${String(offset).padStart(16, '0')}`;
		// The chunk lands in a local file first: S3 wants its length before the first byte.
		const file = path.join(this.#tmpDir, `upload-${id}-${randomBytes(6).toString('hex')}`);
		const handle = await open(file, 'w+', 0o600);
		try {
			const {end: length, error: failure} = await writeSource(handle, 0, source, onChunk);
			await handle.close();
			if (length > 0) {
				// What arrived before a failure is kept: the client resumes after it.
				await this.client.send(
					new PutObjectCommand({Bucket: this.#bucket, Key: key, Body: createReadStream(file), ContentLength: length}),
				);
			}

			return {size: offset + length, ...(failure ? {error: failure} : {})};
		} finally {
			await handle.close().catch(() => undefined);
			await rm(file, {force: true});
		}
	}

	readUpload(id: string): Readable {
		const store = this;
		return Readable.from(
			(async function* () {
				for (const chunk of (await store.#chunks(id)) ?? []) {
					yield* store.#readObject(chunk.key);
				}
			})(),
			{objectMode: false},
		);
	}

	async commitUpload(id: string, digest: Digest): Promise<void> {
		const chunks = (await this.#chunks(id)) ?? [];
		const key = this.#blobKey(digest);
		if (chunks.length === 1) {
			// One PATCH (what docker push sends): a copy inside the store, no bytes through this process.
			await this.client.send(
				new CopyObjectCommand({Bucket: this.#bucket, Key: key, CopySource: encodeURI(`${this.#bucket}/${chunks[0]!.key}`)}),
			);
		} else {
			const upload = new Upload({
				client: this.client,
				params: {Bucket: this.#bucket, Key: key, Body: this.readUpload(id)},
				partSize: PART_SIZE,
				queueSize: QUEUE_SIZE,
				leavePartsOnError: false,
			});
			await upload.done();
		}

		await this.deleteUpload(id);
	}

	async deleteUpload(id: string): Promise<void> {
		// One DELETE per object: DeleteObjects needs a body checksum that not every S3 implementation takes from this SDK.
		const keys = await this.#listKeys(this.#uploadPrefix(id));
		await Promise.all(keys.map(async ({key}) => this.client.send(new DeleteObjectCommand({Bucket: this.#bucket, Key: key}))));
	}

	async listUploads(): Promise<string[]> {
		const base = `${this.#prefix}uploads/`;
		const ids = new Set<string>();
		for (const {key} of await this.#listKeys(base)) {
			const id = key.slice(base.length).split('/')[0]!;
			if (UPLOAD_ID.test(id)) {
				ids.add(id);
			}
		}

		return [...ids];
	}

	close(): void {
		this.client.destroy();
	}
}

function describe(error: unknown): string {
	if (error instanceof S3ServiceException) {
		return `${error.name} (HTTP ${error.$metadata.httpStatusCode ?? '?'})`;
	}

	return error instanceof Error ? error.message : String(error);
}
