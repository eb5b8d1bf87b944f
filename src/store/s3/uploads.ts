/** The S3 driver's upload sessions (see index.ts for why they are objects). */
import {createReadStream} from 'node:fs';
import {open, rm} from 'node:fs/promises';
import path from 'node:path';
import {randomBytes} from 'node:crypto';
import {Readable} from 'node:stream';
import {CopyObjectCommand, DeleteObjectCommand, PutObjectCommand} from '@aws-sdk/client-s3';
import {Upload} from '@aws-sdk/lib-storage';
import {checkUploadId, UPLOAD_ID, type UploadStore, writeSource} from '../blob-store.js';
import {PART_SIZE, QUEUE_SIZE, type S3Bucket} from './bucket.js';

/** Sessions under `uploads/` in the bucket; `tmpDir` holds each chunk on its way there. */
export function uploadStore(bucket: S3Bucket, tmpDir: string): UploadStore {
	const {client} = bucket;

	const uploadPrefix = (id: string): string => `${bucket.prefix}uploads/${checkUploadId(id)}/`;

	/** The session's chunks in offset order, or undefined when there is no session. */
	const chunks = async (id: string): Promise<Array<{key: string; offset: number; size: number}> | undefined> => {
		const base = uploadPrefix(id);
		const keys = await bucket.listKeys(base);
		if (!keys.some(({key}) => key === `${base}session`)) {
			return undefined;
		}

		return keys
			.flatMap(({key, size}) => {
				const match = /^chunk-(\d{16})$/.exec(key.slice(base.length));
				return match ? [{key, offset: Number(match[1]), size}] : [];
			})
			.sort((a, b) => a.offset - b.offset);
	};

	const readUpload = (id: string): Readable =>
		Readable.from(
			(async function* () {
				for (const chunk of (await chunks(id)) ?? []) {
					yield* bucket.readObject(chunk.key);
				}
			})(),
			{objectMode: false},
		);

	const deleteUpload = async (id: string): Promise<void> => {
		// One DELETE per object: DeleteObjects needs a body checksum that not every S3 implementation takes from this SDK.
		const keys = await bucket.listKeys(uploadPrefix(id));
		await Promise.all(keys.map(async ({key}) => client.send(new DeleteObjectCommand({Bucket: bucket.name, Key: key}))));
	};

	return {
		readUpload,
		deleteUpload,

		async createUpload(id) {
			await client.send(new PutObjectCommand({Bucket: bucket.name, Key: `${uploadPrefix(id)}session`, Body: '', ContentLength: 0}));
		},

		async uploadSize(id) {
			return (await chunks(id))?.reduce((total, chunk) => Math.max(total, chunk.offset + chunk.size), 0);
		},

		async appendUpload(id, offset, source, onChunk) {
			const key = `${uploadPrefix(id)}chunk-${String(offset).padStart(16, '0')}`;
			// The chunk lands in a local file first: S3 wants its length before the first byte.
			const file = path.join(tmpDir, `upload-${id}-${randomBytes(6).toString('hex')}`);
			const handle = await open(file, 'w+', 0o600);
			try {
				const {end: length, error: failure} = await writeSource(handle, 0, source, onChunk);
				await handle.close();
				if (length > 0) {
					// What arrived before a failure is kept: the client resumes after it.
					await client.send(
						new PutObjectCommand({Bucket: bucket.name, Key: key, Body: createReadStream(file), ContentLength: length}),
					);
				}

				return {size: offset + length, ...(failure ? {error: failure} : {})};
			} finally {
				await handle.close().catch(() => undefined);
				await rm(file, {force: true});
			}
		},

		async commitUpload(id, digest) {
			const parts = (await chunks(id)) ?? [];
			const key = bucket.blobKey(digest);
			if (parts.length === 1) {
				// One PATCH (what docker push sends): a copy inside the store, no bytes through this process.
				await client.send(
					new CopyObjectCommand({Bucket: bucket.name, Key: key, CopySource: encodeURI(`${bucket.name}/${parts[0]!.key}`)}),
				);
			} else {
				const upload = new Upload({
					client,
					params: {Bucket: bucket.name, Key: key, Body: readUpload(id)},
					partSize: PART_SIZE,
					queueSize: QUEUE_SIZE,
					leavePartsOnError: false,
				});
				await upload.done();
			}

			await deleteUpload(id);
		},

		async listUploads() {
			const base = `${bucket.prefix}uploads/`;
			const ids = new Set<string>();
			for (const {key} of await bucket.listKeys(base)) {
				const id = key.slice(base.length).split('/')[0]!;
				if (UPLOAD_ID.test(id)) {
					ids.add(id);
				}
			}

			return [...ids];
		},
	};
}
