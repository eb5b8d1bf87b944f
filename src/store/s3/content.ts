/** The S3 driver's content half: committed blobs in the bucket, fills through S3TempBlob. */
import {mkdir} from 'node:fs/promises';
import path from 'node:path';
import {type Readable} from 'node:stream';
import {
	AbortMultipartUploadCommand,
	CreateBucketCommand,
	DeleteObjectCommand,
	GetObjectCommand,
	HeadBucketCommand,
	HeadObjectCommand,
	ListMultipartUploadsCommand,
	type S3Client,
	S3ServiceException,
} from '@aws-sdk/client-s3';
import {LRUCache} from 'lru-cache';
import {getSignedUrl} from '@aws-sdk/s3-request-presigner';
import {type S3Config} from '../../config/load.js';
import {type Digest} from '../../v2/grammar.js';
import {type BlobContent, type ByteRange, type TempBlob} from '../blob-store.js';
import {emptyDir, openTemp} from '../fs/content.js';
import {S3Bucket} from './bucket.js';
import {recoverStaging, stagingKey} from './staging.js';
import {S3TempBlob} from './temp.js';

/** Multipart uploads no replica completed or aborted (it died) are aborted after this. */
const STALE_MULTIPART_MS = 24 * 60 * 60 * 1000;
const PRESIGN_SECONDS = 300;
/**
 * How long a HEAD that found a blob is trusted. Blobs never change, and one
 * only goes away by eviction, gc or verify --delete: a replica that removes it
 * forgets it at once, the others within this time. It saves a HEAD per hit.
 */
const PRESENT_TTL_MS = 30_000;

function isNotFound(error: unknown): boolean {
	if (error instanceof S3ServiceException) {
		return error.$metadata.httpStatusCode === 404 || error.name === 'NotFound' || error.name === 'NoSuchKey' || error.name === 'NoSuchBucket';
	}

	return false;
}

export class S3BlobContent implements BlobContent {
	readonly bucket: S3Bucket;
	readonly client: S3Client;
	readonly tmpDir: string;
	/** A replica that takes over a dead one's fill finds its parts (see staging.ts). */
	readonly keepsPartialFills = true;
	readonly #present = new LRUCache<string, number>({max: 10_000, ttl: PRESENT_TTL_MS});

	constructor(
		readonly config: S3Config,
		/** This replica's own temp files (fills in progress, chunks on their way to S3). */
		dir: string,
	) {
		this.bucket = new S3Bucket(config);
		this.client = this.bucket.client;
		this.tmpDir = path.join(dir, 'tmp');
	}

	async init(): Promise<void> {
		await mkdir(this.tmpDir, {recursive: true});
		try {
			await this.client.send(new HeadBucketCommand({Bucket: this.bucket.name}));
		} catch (error) {
			if (!isNotFound(error)) {
				throw new Error(`s3: cannot reach bucket ${this.bucket.name} at ${this.config.endpoint}: ${describe(error)}`);
			}

			try {
				await this.client.send(new CreateBucketCommand({Bucket: this.bucket.name}));
			} catch (createError) {
				// Another replica starting at the same moment created it first.
				const name = (createError as {name?: string}).name;
				if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') {
					throw new Error(`s3: cannot create bucket ${this.bucket.name}: ${describe(createError)}`);
				}
			}
		}
	}

	/** Rejects when the bucket cannot be reached (readiness). */
	async ping(): Promise<void> {
		await this.client.send(new HeadBucketCommand({Bucket: this.bucket.name}));
	}

	async size(digest: Digest): Promise<number | undefined> {
		const known = this.#present.get(digest.value);
		if (known !== undefined) {
			return known;
		}

		try {
			const head = await this.client.send(new HeadObjectCommand({Bucket: this.bucket.name, Key: this.bucket.blobKey(digest)}));
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
		return this.bucket.readObject(this.bucket.blobKey(digest), range);
	}

	async redirectUrl(digest: Digest): Promise<string> {
		return getSignedUrl(this.client, new GetObjectCommand({Bucket: this.bucket.name, Key: this.bucket.blobKey(digest)}), {expiresIn: PRESIGN_SECONDS});
	}

	async createTemp(digest: Digest): Promise<TempBlob> {
		const local = await openTemp(this.tmpDir, digest, () => {
			throw new Error('s3: a fill commits to the bucket, not to a local path');
		});
		const staging = stagingKey(this.bucket, digest);
		const partSize = this.config.partSize;
		try {
			const recovered = await recoverStaging(this.bucket, staging, partSize);
			return new S3TempBlob(local, this.bucket, {staging, blob: this.bucket.blobKey(digest)}, partSize, recovered, size => this.#present.set(digest.value, size));
		} catch (error) {
			await local.discard();
			throw error;
		}
	}

	async remove(digest: Digest): Promise<void> {
		this.#present.delete(digest.value);
		await this.client.send(new DeleteObjectCommand({Bucket: this.bucket.name, Key: this.bucket.blobKey(digest)}));
	}

	async sweepTemp(): Promise<number> {
		const swept = await emptyDir(this.tmpDir);
		// Fills of replicas that died and were never taken over: their parts and staging objects cost space.
		let aborted = 0;
		const cutoff = Date.now() - STALE_MULTIPART_MS;
		const fills = `${this.bucket.prefix}fills/`;
		for (const {key, modified} of await this.bucket.listKeys(fills)) {
			if (modified < cutoff) {
				await this.client.send(new DeleteObjectCommand({Bucket: this.bucket.name, Key: key}));
				aborted++;
			}
		}

		const listing = await this.client.send(new ListMultipartUploadsCommand({Bucket: this.bucket.name, Prefix: fills}));
		for (const upload of listing.Uploads ?? []) {
			if (upload.Key && upload.UploadId && upload.Initiated && upload.Initiated.getTime() < cutoff) {
				await this.client.send(new AbortMultipartUploadCommand({Bucket: this.bucket.name, Key: upload.Key, UploadId: upload.UploadId}));
				aborted++;
			}
		}

		return swept + aborted;
	}

	async list(): Promise<string[]> {
		const base = `${this.bucket.prefix}blobs/`;
		return (await this.bucket.listKeys(base)).flatMap(({key}) => {
			const match = /^([a-z0-9]+)\/[a-f0-9]{2}\/([a-f0-9]+)$/.exec(key.slice(base.length));
			return match ? [`${match[1]}:${match[2]}`] : [];
		});
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
