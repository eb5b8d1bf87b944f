import {type ManifestRecord, type ReadIndex, type RepoKey, type TagRecord} from '../metadata.js';
import {SQL, toReferrer, toTagged, type ReferrerRow, type TaggedRow} from '../queries.js';
import {type PostgresDb} from './db.js';

/** The pull read path on PostgreSQL. */
export function readIndex(db: PostgresDb): ReadIndex {
	return {
		async getTag(repo, tag) {
			return db.row<TagRecord>(
				SQL.tag,
				[repo.registry, repo.name, tag],
			);
		},

		async getTaggedManifest(repo, tag) {
			const row = await db.row<TaggedRow>(SQL.taggedManifest, [repo.registry, repo.name, tag]);
			return row && toTagged(row);
		},

		async listTags(repo) {
			const rows = await db.rows<{tag: string}>(
				`SELECT t.tag FROM tags t JOIN repositories r ON r.id = t.repository_id
				 WHERE r.registry = ? AND r.name = ? ORDER BY t.tag COLLATE "C"`,
				[repo.registry, repo.name],
			);
			return rows.map(row => row.tag);
		},

		async getManifest(digest) {
			return db.row<ManifestRecord>(SQL.manifest, [digest]);
		},

		async hasRepoManifest(repo, digest) {
			return (
				(await db.row(
					SQL.hasRepoManifest,
					[repo.registry, repo.name, digest],
				)) !== undefined
			);
		},

		async getRepoManifest(repo, digest) {
			return db.row<ManifestRecord>(
				SQL.repoManifest,
				[repo.registry, repo.name, digest],
			);
		},

		async getBlob(digest) {
			const row = await db.row<{digest: string; size: number; pushed: number; lastAccess: number}>(
				SQL.blob,
				[digest],
			);
			return row && {...row, pushed: row.pushed === 1};
		},

		async getBlobFor(repo, digest) {
			const row = await db.row<{digest: string; size: number; pushed: number; lastAccess: number; linked: boolean}>(
				SQL.blobFor,
				[repo.registry, repo.name, digest],
			);
			return row && {...row, pushed: row.pushed === 1};
		},

		async hasRepoBlob(repo, digest) {
			return (
				(await db.row(
					SQL.hasRepoBlob,
					[repo.registry, repo.name, digest],
				)) !== undefined
			);
		},

		async registryHasBlob(registry, digest) {
			return (
				(await db.row(
					SQL.registryHasBlob,
					[registry, digest],
				)) !== undefined
			);
		},

		async repositoryExists(repo) {
			const repoId = await db.repoId(repo);
			return (
				repoId !== undefined &&
				(await db.row(
					`SELECT 1 WHERE EXISTS (SELECT 1 FROM repository_manifests WHERE repository_id = ?)
					 OR EXISTS (SELECT 1 FROM repository_blobs WHERE repository_id = ?)`,
					[repoId, repoId],
				)) !== undefined
			);
		},

		async listRepositories() {
			return db.rows<RepoKey>(
				`SELECT registry, name FROM repositories r
				 WHERE EXISTS (SELECT 1 FROM repository_manifests m WHERE m.repository_id = r.id)
				 ORDER BY registry COLLATE "C", name COLLATE "C"`,
			);
		},

		async cacheGeneration() {
			return (await db.row<{n: number}>(SQL.cacheGeneration))!.n;
		},

		generationChanged() {
			// Read from the database on every call: nothing to forget.
		},

		async listReferrers(repo, subject) {
			const repoId = await db.repoId(repo);
			if (repoId === undefined) {
				return [];
			}

			const rows = await db.rows<ReferrerRow>(
				`SELECT digest, media_type AS "mediaType", artifact_type AS "artifactType", size, annotations
				 FROM referrers WHERE repository_id = ? AND subject = ? ORDER BY digest COLLATE "C"`,
				[repoId, subject],
			);
			return rows.map(row => toReferrer(row));
		},
	};
}
