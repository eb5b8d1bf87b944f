import {type GarbageManifest, type Housekeeping, type RepoKey} from '../metadata.js';
import {SQL} from '../queries.js';
import {type PostgresDb, type Queryable} from './db.js';

/** Quota, eviction, GC, verification, listings and access times, on PostgreSQL: batches go as arrays, one statement each. */
export function housekeeping(db: PostgresDb): Housekeeping {
	const bytes = async (pushed: 0 | 1): Promise<number> => {
		const row = await db.row<{total: number}>(
			`SELECT (COALESCE((SELECT SUM(size) FROM blobs WHERE pushed = ?), 0)
				+ COALESCE((SELECT SUM(size) FROM manifests WHERE pushed = ?), 0))::bigint AS total`,
			[pushed, pushed],
		);
		return row?.total ?? 0;
	};

	return {
		async touch(entries) {
			for (const kind of ['blob', 'manifest'] as const) {
				const batch = entries.filter(entry => entry.kind === kind);
				if (batch.length === 0) {
					continue;
				}

				const table = kind === 'blob' ? 'blobs' : 'manifests';
				await db.run(
					`UPDATE ${table} t SET last_access = GREATEST(t.last_access, u.at)
					 FROM (SELECT unnest(?::text[]) AS digest, unnest(?::bigint[]) AS at) u WHERE t.digest = u.digest`,
					[batch.map(entry => entry.digest), batch.map(entry => entry.at)],
				);
			}
		},

		async allBlobDigests() {
			return (await db.rows<{digest: string}>(SQL.allBlobDigests)).map(row => row.digest);
		},

		async cachedBytes() {
			return bytes(0);
		},

		async pushedBytes() {
			return bytes(1);
		},

		async leastRecentlyUsedCachedManifest() {
			return db.row(`${SQL.leastRecentlyUsedCachedManifest} digest COLLATE "C" LIMIT 1`);
		},

		async evictManifest(digest) {
			return db.transaction(async client => {
				const referenced = await db.rows<{digest: string}>(
					SQL.references,
					[digest],
					client,
				);
				await db.run(SQL.deleteTagsOf, [digest], client);
				await db.run(SQL.deleteReferrer, [digest], client);
				await db.run(SQL.deleteCachedManifest, [digest], client); // cascades links and references
				if (referenced.length === 0) {
					return [];
				}

				return db.rows<{digest: string; size: number}>(
					`DELETE FROM blobs b WHERE b.digest = ANY(?::text[]) AND b.pushed = 0
					 AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.reference_digest = b.digest)
					 RETURNING b.digest, b.size`,
					[referenced.map(row => row.digest)],
					client,
				);
			});
		},

		async unreferencedCachedBlobs(before) {
			return db.rows(
				SQL.unreferencedCachedBlobs,
				[before],
			);
		},

		async collectGarbage(before, apply) {
			const run = async (client: Queryable) => {
				const manifests = await db.rows<GarbageManifest>(SQL.unlinkedManifests, [before], client);
				const [kept] = await db.rows<{manifests: number; blobs: number}>(SQL.graceKept, [before, before], client);
				if (apply && manifests.length > 0) {
					await db.run('DELETE FROM manifests WHERE digest = ANY(?::text[])', [manifests.map(manifest => manifest.digest)], client);
				}

				const blobs = await db.rows<{digest: string; size: number}>(
					SQL.unreachableBlobs,
					[before],
					client,
				);
				if (apply && blobs.length > 0) {
					await db.run('DELETE FROM blobs WHERE digest = ANY(?::text[])', [blobs.map(blob => blob.digest)], client);
				}

				return {manifests, blobs, kept: {manifests: kept?.manifests ?? 0, blobs: kept?.blobs ?? 0}};
			};

			return apply ? db.transaction(run) : run(db.pool);
		},

		async deleteBlobRecords(digests) {
			if (digests.length > 0) {
				await db.run('DELETE FROM blobs WHERE digest = ANY(?::text[])', [digests]);
			}
		},

		async describeRepositories() {
			const repos = await db.rows<RepoKey & {id: number; bytes: number; lastAccess: number}>(
				`SELECT r.id, r.registry, r.name,
					COALESCE((SELECT SUM(b.size) FROM repository_blobs l JOIN blobs b ON b.digest = l.digest WHERE l.repository_id = r.id), 0)::bigint AS bytes,
					COALESCE((SELECT MAX(m.last_access) FROM repository_manifests l JOIN manifests m ON m.digest = l.digest WHERE l.repository_id = r.id), 0)::bigint AS "lastAccess"
				 FROM repositories r
				 WHERE EXISTS (SELECT 1 FROM repository_manifests m WHERE m.repository_id = r.id)
				 ORDER BY r.registry COLLATE "C", r.name COLLATE "C"`,
			);
			const tags = await db.rows<{repositoryId: number; tag: string; digest: string; fetchedAt: number}>(
				`SELECT repository_id AS "repositoryId", tag, digest, fetched_at AS "fetchedAt" FROM tags
				 WHERE repository_id = ANY(?::bigint[]) ORDER BY tag COLLATE "C"`,
				[repos.map(repo => repo.id)],
			);
			return repos.map(({id, ...repo}) => ({
				...repo,
				tags: tags.filter(tag => tag.repositoryId === id).map(({tag, digest, fetchedAt}) => ({tag, digest, fetchedAt})),
			}));
		},
	};
}
