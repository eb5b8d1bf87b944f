/**
 * Where a fill's bytes wait in the bucket: a staging object per digest
 * (`fills/<algorithm>/<hex>`), written by a multipart upload while the fill
 * runs and copied to the blob key only after the digest checks (so nothing
 * partial is ever under `blobs/`). When the replica filling it dies, the
 * parts it uploaded stay with its unfinished upload; the replica that takes
 * the fill over completes the leading whole parts into the staging object,
 * reads them back (hashing them) and asks the upstream only for the rest.
 */
import {
	AbortMultipartUploadCommand,
	CompleteMultipartUploadCommand,
	CopyObjectCommand,
	CreateMultipartUploadCommand,
	DeleteObjectCommand,
	ListMultipartUploadsCommand,
	ListPartsCommand,
	type Part,
	UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import {type Digest} from '../../v2/grammar.js';
import {type S3Bucket} from './bucket.js';

/** S3's limit for a single CopyObject; larger objects are copied part by part. */
const MAX_COPY_BYTES = 5 * 1024 * 1024 * 1024;
const COPY_PART_BYTES = 1024 * 1024 * 1024;

export function stagingKey(bucket: S3Bucket, digest: Digest): string {
	return `${bucket.prefix}fills/${digest.algorithm}/${digest.hex}`;
}

/**
 * Unfinished uploads of `key` (their owners died): completes the longest run
 * of whole parts from part 1 of one of them into the staging object and
 * aborts the rest. Returns the bytes now in the staging object (0: nothing
 * usable, and no staging object is left).
 */
export async function recoverStaging(bucket: S3Bucket, key: string, partSize: number): Promise<number> {
	const {client, name} = bucket;
	const listing = await client.send(new ListMultipartUploadsCommand({Bucket: name, Prefix: key}));
	const uploads = (listing.Uploads ?? []).filter(upload => upload.Key === key && upload.UploadId);
	let best: {uploadId: string; parts: Part[]} | undefined;
	for (const upload of uploads) {
		const listed = await client.send(new ListPartsCommand({Bucket: name, Key: key, UploadId: upload.UploadId}));
		const parts = (listed.Parts ?? []).toSorted((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
		const leading: Part[] = [];
		for (const part of parts) {
			if (part.PartNumber !== leading.length + 1 || part.Size !== partSize) {
				break;
			}

			leading.push(part);
		}

		if (leading.length > (best?.parts.length ?? 0)) {
			best = {uploadId: upload.UploadId!, parts: leading};
		}
	}

	for (const upload of uploads) {
		if (upload.UploadId !== best?.uploadId) {
			await client.send(new AbortMultipartUploadCommand({Bucket: name, Key: key, UploadId: upload.UploadId})).catch(() => undefined);
		}
	}

	if (!best) {
		return 0;
	}

	await client.send(
		new CompleteMultipartUploadCommand({
			Bucket: name,
			Key: key,
			UploadId: best.uploadId,
			MultipartUpload: {Parts: best.parts.map(part => ({PartNumber: part.PartNumber, ETag: part.ETag}))},
		}),
	);
	return best.parts.length * partSize;
}

/** Copies the verified staging object to the blob key inside the store, then removes the staging object. */
export async function promote(bucket: S3Bucket, from: string, to: string, size: number): Promise<void> {
	const {client, name} = bucket;
	const source = `${name}/${from}`;
	if (size <= MAX_COPY_BYTES) {
		await client.send(new CopyObjectCommand({Bucket: name, Key: to, CopySource: source, ContentType: 'application/octet-stream'}));
	} else {
		const {UploadId} = await client.send(new CreateMultipartUploadCommand({Bucket: name, Key: to, ContentType: 'application/octet-stream'}));
		try {
			const parts: Part[] = [];
			for (let start = 0, number = 1; start < size; start += COPY_PART_BYTES, number++) {
				const end = Math.min(size, start + COPY_PART_BYTES) - 1;
				const copied = await client.send(
					new UploadPartCopyCommand({Bucket: name, Key: to, UploadId, PartNumber: number, CopySource: source, CopySourceRange: `bytes=${start}-${end}`}),
				);
				parts.push({PartNumber: number, ETag: copied.CopyPartResult?.ETag});
			}

			await client.send(new CompleteMultipartUploadCommand({Bucket: name, Key: to, UploadId, MultipartUpload: {Parts: parts}}));
		} catch (error) {
			await client.send(new AbortMultipartUploadCommand({Bucket: name, Key: to, UploadId})).catch(() => undefined);
			throw error;
		}
	}

	await client.send(new DeleteObjectCommand({Bucket: name, Key: from}));
}
