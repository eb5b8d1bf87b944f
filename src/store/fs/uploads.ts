/** The filesystem driver's upload sessions: one file per session under uploads/. */
import {createReadStream} from 'node:fs';
import {mkdir, open, readdir, rename, rm, stat} from 'node:fs/promises';
import path from 'node:path';
import {type Digest} from '../../v2/grammar.js';
import {checkUploadId, UPLOAD_ID, type UploadStore, writeSource} from '../blob-store.js';
import {READ_CHUNK} from './content.js';

/** Sessions in `uploadsDir`; a committed session moves to `pathOf(digest)`. */
export function uploadStore(uploadsDir: string, pathOf: (digest: Digest) => string): UploadStore {
	const uploadPath = (id: string): string => path.join(uploadsDir, checkUploadId(id));

	return {
		async createUpload(id) {
			await (await open(uploadPath(id), 'wx', 0o644)).close();
		},

		async uploadSize(id) {
			try {
				return (await stat(uploadPath(id))).size;
			} catch {
				return undefined;
			}
		},

		async appendUpload(id, offset, source, onChunk) {
			const handle = await open(uploadPath(id), 'r+');
			let end = offset;
			try {
				const result = await writeSource(handle, offset, source, onChunk);
				end = result.end;
				return {size: result.end, ...(result.error ? {error: result.error} : {})};
			} finally {
				// Anything past `end` (a partial chunk) is not part of the session.
				await handle.truncate(end).catch(() => undefined);
				await handle.close();
			}
		},

		readUpload(id) {
			return createReadStream(uploadPath(id), {highWaterMark: READ_CHUNK});
		},

		async commitUpload(id, digest) {
			const target = pathOf(digest);
			await mkdir(path.dirname(target), {recursive: true});
			await rename(uploadPath(id), target);
		},

		async deleteUpload(id) {
			await rm(uploadPath(id), {force: true});
		},

		async listUploads() {
			return (await readdir(uploadsDir).catch(() => [])).filter(entry => UPLOAD_ID.test(entry));
		},
	};
}
