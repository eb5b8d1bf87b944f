import {once} from 'node:events';
import {PassThrough} from 'node:stream';
import {Upload} from '@aws-sdk/lib-storage';
import {type Digest} from '../../v2/grammar.js';
import {type TempBlob} from '../blob-store.js';
import {type FsTempBlob} from '../fs/content.js';
import {QUEUE_SIZE, type S3Bucket} from './bucket.js';
import {promote} from './staging.js';

/** A fill: the local temp file (for this replica's readers) and the multipart upload fed alongside it. */
export class S3TempBlob implements TempBlob {
	/** lib-storage buffers a part itself; this only smooths the hand-over. */
	readonly #body = new PassThrough({highWaterMark: 1024 * 1024});
	readonly #upload: Upload;
	readonly #uploaded: Promise<void>;
	#failure: Error | undefined;

	readonly recovered: TempBlob['recovered'];

	constructor(
		readonly local: FsTempBlob,
		private readonly bucket: S3Bucket,
		private readonly keys: {staging: string; blob: string},
		partSize: number,
		recovered: number,
		private readonly onCommitted: (size: number) => void,
	) {
		this.recovered = recovered > 0 ? {bytes: recovered, read: () => bucket.readObject(keys.staging, {start: 0, end: recovered - 1})} : undefined;
		this.#upload = new Upload({
			client: bucket.client,
			params: {Bucket: bucket.name, Key: keys.staging, Body: this.#body, ContentType: 'application/octet-stream'},
			partSize,
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
		await promote(this.bucket, this.keys.staging, this.keys.blob, this.local.written);
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
