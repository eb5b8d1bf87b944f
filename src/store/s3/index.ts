/**
 * The S3 blob store driver, for several replicas sharing one bucket (Ceph's
 * radosgw in tests; any S3-compatible store). bucket.ts holds the client and
 * keys, content.ts and temp.ts the committed blobs and fills, uploads.ts the
 * push sessions.
 *
 * Keys under `prefix` in the bucket:
 *
 *   blobs/sha256/<first 2 hex>/<64 hex>       committed blobs, each complete and verified
 *   fills/sha256/<64 hex>                     a fill's staging object (see staging.ts)
 *   uploads/<uuid>/session                    an upload session exists (empty object)
 *   uploads/<uuid>/chunk-<16-digit offset>    the bytes of one PATCH, at that offset
 *
 * A fill streams to a multipart upload aimed at its staging key while clients
 * read the replica's local temp file; the upload is completed only after the
 * digest checks and then copied to the blob's key inside the store, so nothing
 * partial is ever visible under blobs/. A failed fill aborts its upload; the
 * parts of a replica that died are what the replica taking its fill over
 * carries on from.
 * Upload sessions are objects, not files, because behind a round-robin
 * balancer one push's PATCHes land on different replicas.
 */
import {type S3Config} from '../../config/load.js';
import {type BlobStore, type UploadStore} from '../blob-store.js';
import {S3BlobContent} from './content.js';
import {uploadStore} from './uploads.js';

export {PART_SIZE, QUEUE_SIZE, REQUEST_HANDLER} from './bucket.js';

/** The upload methods: the upload store's own, assigned in the constructor. */
// The mixin pattern: the interface names the methods the constructor assigns (TypeScript's documented way to type mixins).
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging, @typescript-eslint/no-empty-object-type
export interface S3BlobStore extends UploadStore {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class S3BlobStore extends S3BlobContent implements BlobStore {
	constructor(config: S3Config, dir: string) {
		super(config, dir);
		Object.assign(this, uploadStore(this.bucket, this.tmpDir));
	}
}
