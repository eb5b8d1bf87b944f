import {type UploadIndex} from '../metadata.js';
import {SQL, toUpload, type UploadRow, uploadParams} from '../queries.js';
import {type PostgresDb} from './db.js';

/** Upload sessions of pushes, on PostgreSQL. */
export function uploadIndex(db: PostgresDb): UploadIndex {
	return {
		async createUpload(upload) {
			await db.run(SQL.createUpload, uploadParams(upload));
		},

		async getUpload(id) {
			const row = await db.row<UploadRow>(SQL.upload, [id]);
			return row && toUpload(row);
		},

		async setUploadSize(id, size, now) {
			await db.run(SQL.setUploadSize, [size, now, id]);
		},

		async deleteUpload(id) {
			await db.run(SQL.deleteUpload, [id]);
		},

		async uploadsIdleSince(before) {
			return (await db.rows<UploadRow>(SQL.uploadsIdleSince, [before])).map(row => toUpload(row));
		},
	};
}
