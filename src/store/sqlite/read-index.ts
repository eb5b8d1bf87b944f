import {type ManifestRecord, type ReadIndex, type RepoKey, type TagRecord} from '../metadata.js';
import {SQL, toReferrer, toTagged, type ReferrerRow, type TaggedRow} from '../queries.js';
import {type SqliteDb} from './db.js';

/** The pull read path on SQLite. */
export function readIndex(db: SqliteDb): ReadIndex {
	return {
		async getTag(repo, tag) {
			const row = db.statement(SQL.tag).get(repo.registry, repo.name, tag) as TagRecord | undefined;
			return row;
		},

		async getTaggedManifest(repo, tag) {
			const row = db.statement(SQL.taggedManifest).get(repo.registry, repo.name, tag) as TaggedRow | undefined;
			return row && toTagged(row);
		},

		async listTags(repo) {
			const rows = db.statement(
				`SELECT t.tag FROM tags t JOIN repositories r ON r.id = t.repository_id
				 WHERE r.registry = ? AND r.name = ? ORDER BY t.tag`,
			).all(repo.registry, repo.name) as Array<{tag: string}>;
			return rows.map(row => row.tag);
		},

		async getManifest(digest) {
			const row = db.statement(SQL.manifest).get(digest) as
				| ManifestRecord
				| undefined;
			return row;
		},

		async hasRepoManifest(repo, digest) {
			return (
				db.statement(SQL.hasRepoManifest).get(repo.registry, repo.name, digest) !== undefined
			);
		},

		async getRepoManifest(repo, digest) {
			return db.statement(SQL.repoManifest).get(repo.registry, repo.name, digest) as ManifestRecord | undefined;
		},

		async getBlob(digest) {
			const row = db.statement(SQL.blob).get(digest) as
				| {digest: string; size: number; pushed: number; lastAccess: number}
				| undefined;
			return row && {...row, pushed: row.pushed === 1};
		},

		async getBlobFor(repo, digest) {
			const row = db.statement(SQL.blobFor).get(repo.registry, repo.name, digest) as {digest: string; size: number; pushed: number; lastAccess: number; linked: number} | undefined;
			return row && {...row, pushed: row.pushed === 1, linked: row.linked === 1};
		},

		async hasRepoBlob(repo, digest) {
			return (
				db.statement(SQL.hasRepoBlob).get(repo.registry, repo.name, digest) !== undefined
			);
		},

		async registryHasBlob(registry, digest) {
			return (
				db.statement(SQL.registryHasBlob).get(registry, digest) !== undefined
			);
		},

		async repositoryExists(repo) {
			const repoId = db.repoId(repo);
			return (
				repoId !== undefined &&
				(db.statement('SELECT 1 FROM repository_manifests WHERE repository_id = ? LIMIT 1').get(repoId) !== undefined ||
					db.statement('SELECT 1 FROM repository_blobs WHERE repository_id = ? LIMIT 1').get(repoId) !== undefined)
			);
		},

		async listRepositories() {
			return db.statement(
				`SELECT registry, name FROM repositories r
				 WHERE EXISTS (SELECT 1 FROM repository_manifests m WHERE m.repository_id = r.id)
				 ORDER BY registry, name`,
			).all() as RepoKey[];
		},

		cacheGeneration() {
			return db.cacheGeneration(() => (db.statement(SQL.cacheGeneration).get() as {n: number}).n);
		},

		generationChanged() {
			db.generationChanged();
		},

		async listReferrers(repo, subject) {
			const repoId = db.repoId(repo);
			if (repoId === undefined) {
				return [];
			}

			const rows = db.statement(
				`SELECT digest, media_type AS mediaType, artifact_type AS artifactType, size, annotations
				 FROM referrers WHERE repository_id = ? AND subject = ? ORDER BY digest`,
			).all(repoId, subject) as ReferrerRow[];
			return rows.map(row => toReferrer(row));
		},
	};
}
