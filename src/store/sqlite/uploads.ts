import {type UploadIndex} from '../metadata.js';
import {SQL, toUpload, type UploadRow, uploadParams} from '../queries.js';
import {type SqliteDb} from './db.js';

/** Upload sessions of pushes, on SQLite. */
export function uploadIndex(db: SqliteDb): UploadIndex {
	return {
		async createUpload(upload) {
			db.statement(SQL.createUpload).run(...uploadParams(upload));
		},

		async getUpload(id) {
			const row = db.statement(SQL.upload).get(id) as UploadRow | undefined;
			return row && toUpload(row);
		},

		async setUploadSize(id, size, now) {
			db.statement(SQL.setUploadSize).run(size, now, id);
		},

		async deleteUpload(id) {
			db.statement(SQL.deleteUpload).run(id);
		},

		async uploadsIdleSince(before) {
			return (db.statement(SQL.uploadsIdleSince).all(before) as UploadRow[]).map(row => toUpload(row));
		},
	};
}
