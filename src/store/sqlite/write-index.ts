import {type WriteIndex} from '../metadata.js';
import {SQL, referrerParams} from '../queries.js';
import {type SqliteDb} from './db.js';

/** What fills and pushes record, on SQLite: each write that touches several rows is one IMMEDIATE transaction. */
export function writeIndex(db: SqliteDb): WriteIndex {
	return {
		async putManifest(input) {
			const {repo, manifest, tag, pushed, now} = input;
			db.transaction(() => {
				const repoId = db.ensureRepo(repo, now);
				db.statement(
					`INSERT INTO manifests (digest, media_type, size, content, pushed, created_at, last_access)
					 VALUES (?, ?, ?, ?, ?, ?, ?)
					 ON CONFLICT (digest) DO UPDATE SET pushed = MAX(pushed, excluded.pushed), last_access = MAX(last_access, excluded.last_access)`,
				).run(manifest.digest, manifest.mediaType, manifest.content.length, manifest.content, pushed ? 1 : 0, now, now);
				db.statement(SQL.linkManifest).run(
					repoId,
					manifest.digest,
				);
				for (const reference of input.references ?? []) {
					db.statement(
						'INSERT INTO manifest_references (manifest_digest, reference_digest) VALUES (?, ?) ON CONFLICT DO NOTHING',
					).run(manifest.digest, reference);
				}

				if (tag !== undefined) {
					db.statement(SQL.setTag).run(repoId, tag, manifest.digest, now, now);
				}
			}).immediate();
		},

		async markTagChecked(repo, tag, now) {
			db.statement(SQL.markTagChecked).run(now, tag, repo.registry, repo.name);
		},

		async putBlob(repo, blob) {
			db.transaction(() => {
				const repoId = db.ensureRepo(repo, blob.now);
				db.statement(
					`INSERT INTO blobs (digest, size, pushed, created_at, last_access) VALUES (?, ?, ?, ?, ?)
					 ON CONFLICT (digest) DO UPDATE SET pushed = MAX(pushed, excluded.pushed), last_access = MAX(last_access, excluded.last_access)`,
				).run(blob.digest, blob.size, blob.pushed ? 1 : 0, blob.now, blob.now);
				db.statement('INSERT INTO repository_blobs (repository_id, digest) VALUES (?, ?) ON CONFLICT DO NOTHING').run(
					repoId,
					blob.digest,
				);
			}).immediate();
		},

		async linkBlob(repo, digest) {
			if (db.statement(SQL.blob).get(digest) === undefined) {
				return; // nothing to link: the blob is not in the store
			}

			db.transaction(() => {
				const repoId = db.ensureRepo(repo, Date.now());
				db.statement('INSERT INTO repository_blobs (repository_id, digest) VALUES (?, ?) ON CONFLICT DO NOTHING').run(repoId, digest);
			}).immediate();
		},

		async deleteBlobRecord(digest) {
			db.statement(SQL.deleteBlob).run(digest);
		},

		async putReferrer(repo, subject, referrer) {
			const repoId = db.ensureRepo(repo, Date.now());
			db.statement(SQL.putReferrer).run(...referrerParams(repoId, subject, referrer));
		},

		async deleteTag(repo, tag) {
			const repoId = db.repoId(repo);
			return repoId !== undefined && db.statement(SQL.deleteTag).run(repoId, tag).changes > 0;
		},

		async deleteRepoManifest(repo, digest) {
			const repoId = db.repoId(repo);
			if (repoId === undefined) {
				return false;
			}

			return db.transaction(() => {
				const removed = db.statement(SQL.unlinkManifest).run(repoId, digest).changes;
				db.statement(SQL.deleteRepoTagsOf).run(repoId, digest);
				db.statement(SQL.deleteRepoReferrer).run(repoId, digest);
				return removed > 0;
			}).immediate();
		},

		async unlinkBlob(repo, digest) {
			const repoId = db.repoId(repo);
			return (
				repoId !== undefined &&
				db.statement(SQL.unlinkBlob).run(repoId, digest).changes > 0
			);
		},
	};
}
