/**
 * The S3 driver's connection, shared by its content and upload halves: the
 * client with the store's settings, the bucket and key prefix, and the reads
 * and listings both halves make.
 */
import {PassThrough, type Readable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {GetObjectCommand, ListObjectsV2Command, S3Client} from '@aws-sdk/client-s3';
import {type S3Config} from '../../config/load.js';
import {type Digest} from '../../v2/grammar.js';
import {type ByteRange} from '../blob-store.js';

/** Parts of a fill's multipart upload; S3's minimum is 5 MiB. */
export const PART_SIZE = 8 * 1024 * 1024;
/** Parts in flight per upload: with 2, radosgw's PUT rate held a cold fill at 44 MB/s; with 4, 56 (bench/RESULTS.md). */
export const QUEUE_SIZE = 4;
/** Connections to the object store: kept alive, many at once (each client read and each fill part is one). */
export const REQUEST_HANDLER = {connectionTimeout: 5000, socketTimeout: 60_000, httpAgent: {keepAlive: true, maxSockets: 256}};

export class S3Bucket {
	readonly client: S3Client;
	/** The bucket's name. */
	readonly name: string;
	/** Where this store's keys start in the bucket. */
	readonly prefix: string;

	constructor(config: S3Config) {
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
		this.name = config.bucket;
		this.prefix = config.prefix;
	}

	blobKey(digest: Digest): string {
		return `${this.prefix}blobs/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}`;
	}

	readObject(key: string, range?: ByteRange): Readable {
		const output = new PassThrough({highWaterMark: 1024 * 1024});
		this.client
			.send(new GetObjectCommand({Bucket: this.name, Key: key, Range: range ? `bytes=${range.start}-${range.end}` : undefined}))
			.then(async response => pipeline(response.Body as Readable, output))
			.catch((error: unknown) => output.destroy(error instanceof Error ? error : new Error(String(error))));
		return output;
	}

	/** Every key under `prefix`, with its size and when it was written (ms). */
	async listKeys(prefix: string): Promise<Array<{key: string; size: number; modified: number}>> {
		const keys: Array<{key: string; size: number; modified: number}> = [];
		let token: string | undefined;
		do {
			const page = await this.client.send(new ListObjectsV2Command({Bucket: this.name, Prefix: prefix, ContinuationToken: token}));
			for (const object of page.Contents ?? []) {
				if (object.Key) {
					keys.push({key: object.Key, size: object.Size ?? 0, modified: object.LastModified?.getTime() ?? 0});
				}
			}

			token = page.IsTruncated ? page.NextContinuationToken : undefined;
		} while (token);
		return keys;
	}
}
