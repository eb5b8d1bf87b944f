/**
 * The filesystem blob store, the embedded default: content.ts holds the
 * committed blobs and the fills' temp files, uploads.ts the push sessions.
 *
 * On-disk tree under storage.dir:
 *
 *   mirror.db, mirror.db-wal, mirror.db-shm   metadata (SQLite, WAL)
 *   blobs/sha256/<first 2 hex>/<64 hex>       committed blobs; written once by rename, never modified
 *   tmp/<64 hex>.tmp-<random>                 fills in progress; anything here at start-up is a leftover
 *   uploads/                                  push sessions (local namespaces)
 *
 * A file under blobs/ is always complete and verified: writers fill a temp
 * file, hash it while writing, and rename it into place only after the digest
 * checks.
 */
import {mkdir} from 'node:fs/promises';
import path from 'node:path';
import {type BlobStore, type UploadStore} from '../blob-store.js';
import {FsBlobContent} from './content.js';
import {uploadStore} from './uploads.js';

/** The upload methods: the upload store's own, assigned in the constructor. */
// The mixin pattern: the interface names the methods the constructor assigns (TypeScript's documented way to type mixins).
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging, @typescript-eslint/no-empty-object-type
export interface FsBlobStore extends UploadStore {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class FsBlobStore extends FsBlobContent implements BlobStore {
	readonly uploadsDir: string;

	constructor(root: string) {
		super(root);
		this.uploadsDir = path.join(root, 'uploads');
		Object.assign(this, uploadStore(this.uploadsDir, digest => this.pathOf(digest)));
	}

	override async init(): Promise<void> {
		await super.init();
		await mkdir(this.uploadsDir, {recursive: true});
	}
}
