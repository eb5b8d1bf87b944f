import {type GarbageManifest, type Housekeeping, type RepoKey} from '../metadata.js';
import {SQL} from '../queries.js';
import {type SqliteDb} from './db.js';

/** Quota, eviction, GC, verification, listings and access times, on SQLite. */
export function housekeeping(db: SqliteDb): Housekeeping {
	return {
		async touch(entries) {
			if (entries.length === 0) {
				return;
			}

			const blob = db.statement('UPDATE blobs SET last_access = MAX(last_access, ?) WHERE digest = ?');
			const manifest = db.statement('UPDATE manifests SET last_access = MAX(last_access, ?) WHERE digest = ?');
			db.transaction(() => {
				for (const entry of entries) {
					(entry.kind === 'blob' ? blob : manifest).run(entry.at, entry.digest);
				}
			})();
		},

		async allBlobDigests() {
			return (db.statement(SQL.allBlobDigests).all() as Array<{digest: string}>).map(row => row.digest);
		},

		async cachedBytes() {
			const blobs = db.statement('SELECT COALESCE(SUM(size), 0) AS total FROM blobs WHERE pushed = 0').get() as {total: number};
			const manifests = db.statement('SELECT COALESCE(SUM(size), 0) AS total FROM manifests WHERE pushed = 0').get() as {total: number};
			return blobs.total + manifests.total;
		},

		async pushedBytes() {
			const blobs = db.statement('SELECT COALESCE(SUM(size), 0) AS total FROM blobs WHERE pushed = 1').get() as {total: number};
			const manifests = db.statement('SELECT COALESCE(SUM(size), 0) AS total FROM manifests WHERE pushed = 1').get() as {total: number};
			return blobs.total + manifests.total;
		},

		async leastRecentlyUsedCachedManifest() {
			return db.statement(`${SQL.leastRecentlyUsedCachedManifest} digest LIMIT 1`).get() as {digest: string; lastAccess: number} | undefined;
		},

		async evictManifest(digest) {
			return db.transaction(() => {
				const referenced = db.statement(SQL.references).all(
					digest,
				) as Array<{digest: string}>;
				db.statement(SQL.deleteTagsOf).run(digest);
				db.statement(SQL.deleteReferrer).run(digest);
				db.statement(SQL.deleteCachedManifest).run(digest); // cascades links and references
				const removed: Array<{digest: string; size: number}> = [];
				for (const {digest: blob} of referenced) {
					const row = db.statement(
						`SELECT size FROM blobs b WHERE b.digest = ? AND b.pushed = 0
						 AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.reference_digest = b.digest)`,
					).get(blob) as {size: number} | undefined;
					if (row) {
						db.statement(SQL.deleteBlob).run(blob);
						removed.push({digest: blob, size: row.size});
					}
				}

				return removed;
			}).immediate();
		},

		async unreferencedCachedBlobs(before) {
			return db.statement(SQL.unreferencedCachedBlobs).all(before) as Array<{digest: string; size: number}>;
		},

		async collectGarbage(before, apply) {
			const run = () => {
				// Mark: manifests some repository links are live, and so is everything they reference.
				const manifests = db.statement(SQL.unlinkedManifests).all(before) as GarbageManifest[];
				const kept = db.statement(SQL.graceKept).get(before, before) as {manifests: number; blobs: number};
				if (apply) {
					for (const {digest} of manifests) {
						db.statement('DELETE FROM manifests WHERE digest = ?').run(digest);
					}
				}

				const blobs = db.statement(SQL.unreachableBlobs).all(before) as Array<{digest: string; size: number}>;
				if (apply) {
					for (const blob of blobs) {
						db.statement(SQL.deleteBlob).run(blob.digest);
					}
				}

				return {manifests, blobs, kept};
			};

			return apply ? db.transaction(run).immediate() : run();
		},

		async deleteBlobRecords(digests) {
			db.transaction(() => {
				for (const digest of digests) {
					db.statement(SQL.deleteBlob).run(digest);
				}
			}).immediate();
		},

		async describeRepositories() {
			const repos = db.statement(
				`SELECT r.id, r.registry, r.name,
					COALESCE((SELECT SUM(b.size) FROM repository_blobs l JOIN blobs b ON b.digest = l.digest WHERE l.repository_id = r.id), 0) AS bytes,
					COALESCE((SELECT MAX(m.last_access) FROM repository_manifests l JOIN manifests m ON m.digest = l.digest WHERE l.repository_id = r.id), 0) AS lastAccess
				 FROM repositories r
				 WHERE EXISTS (SELECT 1 FROM repository_manifests m WHERE m.repository_id = r.id)
				 ORDER BY r.registry, r.name`,
			).all() as Array<RepoKey & {id: number; bytes: number; lastAccess: number}>;
			return repos.map(({id, ...repo}) => ({
				...repo,
				tags: db.statement('SELECT tag, digest, fetched_at AS fetchedAt FROM tags WHERE repository_id = ? ORDER BY tag').all(id) as Array<{
					tag: string;
					digest: string;
					fetchedAt: number;
				}>,
			}));
		},
	};
}
