import {randomBytes} from 'node:crypto';
import Database from 'better-sqlite3';
import {MIGRATIONS} from './migrations.js';
import {
	type BlobRecord,
	type ManifestRecord,
	type MetadataStore,
	type PutManifest,
	type ReferrerRecord,
	type RepoKey,
	type TagRecord,
	type UploadRecord,
} from './metadata.js';
import {SQL, toReferrer, toTagged, toUpload, type ReferrerRow, type TaggedRow, type UploadRow} from './queries.js';

type Statement = Database.Statement<unknown[], unknown>;

/** The embedded metadata driver: one SQLite file in WAL mode. */
export class SqliteMetadataStore implements MetadataStore {
	readonly #db: Database.Database;
	readonly #statements = new Map<string, Statement>();

	constructor(file: string) {
		this.#db = new Database(file);
		this.#db.pragma('journal_mode = WAL');
		this.#db.pragma('synchronous = NORMAL');
		this.#db.pragma('foreign_keys = ON');
		this.#db.pragma('busy_timeout = 5000');
		this.#migrate();
	}

	get schemaVersion(): number {
		return this.#db.pragma('user_version', {simple: true}) as number;
	}

	#migrate(): void {
		const current = this.schemaVersion;
		if (current > MIGRATIONS.length) {
			throw new Error(`metadata: database schema version ${current} is newer than this program (${MIGRATIONS.length})`);
		}

		for (let version = current; version < MIGRATIONS.length; version++) {
			this.#db.transaction(() => {
				this.#db.exec(MIGRATIONS[version]!);
				this.#db.pragma(`user_version = ${version + 1}`);
			}).immediate();
		}
	}

	#statement(sql: string): Statement {
		let statement = this.#statements.get(sql);
		if (!statement) {
			statement = this.#db.prepare(sql);
			this.#statements.set(sql, statement);
		}

		return statement;
	}

	#repoId(repo: RepoKey): number | undefined {
		const row = this.#statement(SQL.repoId).get(repo.registry, repo.name) as
			| {id: number}
			| undefined;
		return row?.id;
	}

	#ensureRepo(repo: RepoKey, now: number): number {
		this.#statement('INSERT INTO repositories (registry, name, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING').run(
			repo.registry,
			repo.name,
			now,
		);
		return this.#repoId(repo)!;
	}

	async getTag(repo: RepoKey, tag: string): Promise<TagRecord | undefined> {
		const row = this.#statement(SQL.tag).get(repo.registry, repo.name, tag) as TagRecord | undefined;
		return row;
	}

	async getTaggedManifest(repo: RepoKey, tag: string): Promise<(TagRecord & {manifest: ManifestRecord}) | undefined> {
		const row = this.#statement(SQL.taggedManifest).get(repo.registry, repo.name, tag) as TaggedRow | undefined;
		return row && toTagged(row);
	}

	async markTagChecked(repo: RepoKey, tag: string, now: number): Promise<void> {
		this.#statement(SQL.markTagChecked).run(now, tag, repo.registry, repo.name);
	}

	async listTags(repo: RepoKey): Promise<string[]> {
		const rows = this.#statement(
			`SELECT t.tag FROM tags t JOIN repositories r ON r.id = t.repository_id
			 WHERE r.registry = ? AND r.name = ? ORDER BY t.tag`,
		).all(repo.registry, repo.name) as Array<{tag: string}>;
		return rows.map(row => row.tag);
	}

	async putManifest(input: PutManifest): Promise<void> {
		const {repo, manifest, tag, pushed, now} = input;
		this.#db.transaction(() => {
			const repoId = this.#ensureRepo(repo, now);
			this.#statement(
				`INSERT INTO manifests (digest, media_type, size, content, pushed, created_at, last_access)
				 VALUES (?, ?, ?, ?, ?, ?, ?)
				 ON CONFLICT (digest) DO UPDATE SET pushed = MAX(pushed, excluded.pushed), last_access = MAX(last_access, excluded.last_access)`,
			).run(manifest.digest, manifest.mediaType, manifest.content.length, manifest.content, pushed ? 1 : 0, now, now);
			this.#statement(SQL.linkManifest).run(
				repoId,
				manifest.digest,
			);
			for (const reference of input.references ?? []) {
				this.#statement(
					'INSERT INTO manifest_references (manifest_digest, reference_digest) VALUES (?, ?) ON CONFLICT DO NOTHING',
				).run(manifest.digest, reference);
			}

			if (tag !== undefined) {
				this.#statement(SQL.setTag).run(repoId, tag, manifest.digest, now, now);
			}
		}).immediate();
	}

	async getManifest(digest: string): Promise<ManifestRecord | undefined> {
		const row = this.#statement(SQL.manifest).get(digest) as
			| ManifestRecord
			| undefined;
		return row;
	}

	async hasRepoManifest(repo: RepoKey, digest: string): Promise<boolean> {
		return (
			this.#statement(SQL.hasRepoManifest).get(repo.registry, repo.name, digest) !== undefined
		);
	}

	async getRepoManifest(repo: RepoKey, digest: string): Promise<ManifestRecord | undefined> {
		return this.#statement(SQL.repoManifest).get(repo.registry, repo.name, digest) as ManifestRecord | undefined;
	}

	async getBlob(digest: string): Promise<BlobRecord | undefined> {
		return this.#getBlob(digest);
	}

	#getBlob(digest: string): BlobRecord | undefined {
		const row = this.#statement(SQL.blob).get(digest) as
			| {digest: string; size: number; pushed: number; lastAccess: number}
			| undefined;
		return row && {...row, pushed: row.pushed === 1};
	}

	async getBlobFor(repo: RepoKey, digest: string): Promise<(BlobRecord & {linked: boolean}) | undefined> {
		const row = this.#statement(SQL.blobFor).get(repo.registry, repo.name, digest) as {digest: string; size: number; pushed: number; lastAccess: number; linked: number} | undefined;
		return row && {...row, pushed: row.pushed === 1, linked: row.linked === 1};
	}

	async hasRepoBlob(repo: RepoKey, digest: string): Promise<boolean> {
		return (
			this.#statement(SQL.hasRepoBlob).get(repo.registry, repo.name, digest) !== undefined
		);
	}

	async registryHasBlob(registry: string, digest: string): Promise<boolean> {
		return (
			this.#statement(SQL.registryHasBlob).get(registry, digest) !== undefined
		);
	}

	async putBlob(repo: RepoKey, blob: {digest: string; size: number; pushed: boolean; now: number}): Promise<void> {
		this.#db.transaction(() => {
			const repoId = this.#ensureRepo(repo, blob.now);
			this.#statement(
				`INSERT INTO blobs (digest, size, pushed, created_at, last_access) VALUES (?, ?, ?, ?, ?)
				 ON CONFLICT (digest) DO UPDATE SET pushed = MAX(pushed, excluded.pushed), last_access = MAX(last_access, excluded.last_access)`,
			).run(blob.digest, blob.size, blob.pushed ? 1 : 0, blob.now, blob.now);
			this.#statement('INSERT INTO repository_blobs (repository_id, digest) VALUES (?, ?) ON CONFLICT DO NOTHING').run(
				repoId,
				blob.digest,
			);
		}).immediate();
	}

	async linkBlob(repo: RepoKey, digest: string): Promise<void> {
		if (!this.#getBlob(digest)) {
			return; // nothing to link: the blob is not in the store
		}

		this.#db.transaction(() => {
			const repoId = this.#ensureRepo(repo, Date.now());
			this.#statement('INSERT INTO repository_blobs (repository_id, digest) VALUES (?, ?) ON CONFLICT DO NOTHING').run(repoId, digest);
		}).immediate();
	}

	async touch(entries: ReadonlyArray<{kind: 'blob' | 'manifest'; digest: string; at: number}>): Promise<void> {
		if (entries.length === 0) {
			return;
		}

		const blob = this.#statement('UPDATE blobs SET last_access = MAX(last_access, ?) WHERE digest = ?');
		const manifest = this.#statement('UPDATE manifests SET last_access = MAX(last_access, ?) WHERE digest = ?');
		this.#db.transaction(() => {
			for (const entry of entries) {
				(entry.kind === 'blob' ? blob : manifest).run(entry.at, entry.digest);
			}
		})();
	}

	async allBlobDigests(): Promise<string[]> {
		return (this.#statement(SQL.allBlobDigests).all() as Array<{digest: string}>).map(row => row.digest);
	}

	async deleteBlobRecord(digest: string): Promise<void> {
		this.#statement(SQL.deleteBlob).run(digest);
	}

	async deleteTag(repo: RepoKey, tag: string): Promise<boolean> {
		const repoId = this.#repoId(repo);
		return repoId !== undefined && this.#statement(SQL.deleteTag).run(repoId, tag).changes > 0;
	}

	async deleteRepoManifest(repo: RepoKey, digest: string): Promise<boolean> {
		const repoId = this.#repoId(repo);
		if (repoId === undefined) {
			return false;
		}

		return this.#db.transaction(() => {
			const removed = this.#statement(SQL.unlinkManifest).run(repoId, digest).changes;
			this.#statement(SQL.deleteRepoTagsOf).run(repoId, digest);
			this.#statement(SQL.deleteRepoReferrer).run(repoId, digest);
			return removed > 0;
		}).immediate();
	}

	async unlinkBlob(repo: RepoKey, digest: string): Promise<boolean> {
		const repoId = this.#repoId(repo);
		return (
			repoId !== undefined &&
			this.#statement(SQL.unlinkBlob).run(repoId, digest).changes > 0
		);
	}

	async listRepositories(): Promise<RepoKey[]> {
		return this.#statement(
			`SELECT registry, name FROM repositories r
			 WHERE EXISTS (SELECT 1 FROM repository_manifests m WHERE m.repository_id = r.id)
			 ORDER BY registry, name`,
		).all() as RepoKey[];
	}

	async repositoryExists(repo: RepoKey): Promise<boolean> {
		const repoId = this.#repoId(repo);
		return (
			repoId !== undefined &&
			(this.#statement('SELECT 1 FROM repository_manifests WHERE repository_id = ? LIMIT 1').get(repoId) !== undefined ||
				this.#statement('SELECT 1 FROM repository_blobs WHERE repository_id = ? LIMIT 1').get(repoId) !== undefined)
		);
	}

	async createUpload(upload: {id: string; repo: RepoKey; now: number}): Promise<void> {
		this.#statement(SQL.createUpload).run(
			upload.id,
			upload.repo.registry,
			upload.repo.name,
			upload.now,
			upload.now,
		);
	}

	async getUpload(id: string): Promise<UploadRecord | undefined> {
		const row = this.#statement(SQL.upload).get(id) as UploadRow | undefined;
		return row && toUpload(row);
	}

	async setUploadSize(id: string, size: number, now: number): Promise<void> {
		this.#statement(SQL.setUploadSize).run(size, now, id);
	}

	async deleteUpload(id: string): Promise<void> {
		this.#statement(SQL.deleteUpload).run(id);
	}

	async uploadsIdleSince(before: number): Promise<UploadRecord[]> {
		return (this.#statement(SQL.uploadsIdleSince).all(before) as UploadRow[]).map(row => toUpload(row));
	}

	async putReferrer(repo: RepoKey, subject: string, referrer: ReferrerRecord): Promise<void> {
		const repoId = this.#ensureRepo(repo, Date.now());
		this.#statement(SQL.putReferrer).run(
			repoId,
			subject,
			referrer.digest,
			referrer.mediaType,
			referrer.artifactType ?? null,
			referrer.size,
			referrer.annotations ? JSON.stringify(referrer.annotations) : null,
		);
	}

	async listReferrers(repo: RepoKey, subject: string): Promise<ReferrerRecord[]> {
		const repoId = this.#repoId(repo);
		if (repoId === undefined) {
			return [];
		}

		const rows = this.#statement(
			`SELECT digest, media_type AS mediaType, artifact_type AS artifactType, size, annotations
			 FROM referrers WHERE repository_id = ? AND subject = ? ORDER BY digest`,
		).all(repoId, subject) as ReferrerRow[];
		return rows.map(row => toReferrer(row));
	}

	async cachedBytes(): Promise<number> {
		const blobs = this.#statement('SELECT COALESCE(SUM(size), 0) AS total FROM blobs WHERE pushed = 0').get() as {total: number};
		const manifests = this.#statement('SELECT COALESCE(SUM(size), 0) AS total FROM manifests WHERE pushed = 0').get() as {total: number};
		return blobs.total + manifests.total;
	}

	async pushedBytes(): Promise<number> {
		const blobs = this.#statement('SELECT COALESCE(SUM(size), 0) AS total FROM blobs WHERE pushed = 1').get() as {total: number};
		const manifests = this.#statement('SELECT COALESCE(SUM(size), 0) AS total FROM manifests WHERE pushed = 1').get() as {total: number};
		return blobs.total + manifests.total;
	}

	async leastRecentlyUsedCachedManifest(): Promise<{digest: string; lastAccess: number} | undefined> {
		return this.#statement(
			'SELECT digest, last_access AS lastAccess FROM manifests WHERE pushed = 0 ORDER BY last_access, digest LIMIT 1',
		).get() as {digest: string; lastAccess: number} | undefined;
	}

	async evictManifest(digest: string): Promise<Array<{digest: string; size: number}>> {
		return this.#db.transaction(() => {
			const referenced = this.#statement(SQL.references).all(
				digest,
			) as Array<{digest: string}>;
			this.#statement(SQL.deleteTagsOf).run(digest);
			this.#statement(SQL.deleteReferrer).run(digest);
			this.#statement(SQL.deleteCachedManifest).run(digest); // cascades links and references
			const removed: Array<{digest: string; size: number}> = [];
			for (const {digest: blob} of referenced) {
				const row = this.#statement(
					`SELECT size FROM blobs b WHERE b.digest = ? AND b.pushed = 0
					 AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.reference_digest = b.digest)`,
				).get(blob) as {size: number} | undefined;
				if (row) {
					this.#statement(SQL.deleteBlob).run(blob);
					removed.push({digest: blob, size: row.size});
				}
			}

			return removed;
		}).immediate();
	}

	async unreferencedCachedBlobs(before: number): Promise<Array<{digest: string; size: number}>> {
		return this.#statement(SQL.unreferencedCachedBlobs).all(before) as Array<{digest: string; size: number}>;
	}

	async collectGarbage(before: number, apply: boolean): Promise<{manifests: string[]; blobs: Array<{digest: string; size: number}>}> {
		const run = () => {
			// Mark: manifests some repository links are live, and so is everything they reference.
			const manifests = (
				this.#statement(SQL.unlinkedManifests).all(before) as Array<{digest: string}>
			).map(row => row.digest);
			if (apply) {
				for (const digest of manifests) {
					this.#statement('DELETE FROM manifests WHERE digest = ?').run(digest);
				}
			}

			const blobs = this.#statement(SQL.unreachableBlobs).all(before) as Array<{digest: string; size: number}>;
			if (apply) {
				for (const blob of blobs) {
					this.#statement(SQL.deleteBlob).run(blob.digest);
				}
			}

			return {manifests, blobs};
		};

		return apply ? this.#db.transaction(run).immediate() : run();
	}

	async deleteBlobRecords(digests: readonly string[]): Promise<void> {
		this.#db.transaction(() => {
			for (const digest of digests) {
				this.#statement(SQL.deleteBlob).run(digest);
			}
		}).immediate();
	}

	async describeRepositories(): Promise<Array<RepoKey & {tags: Array<{tag: string; digest: string; fetchedAt: number}>; bytes: number; lastAccess: number}>> {
		const repos = this.#statement(
			`SELECT r.id, r.registry, r.name,
				COALESCE((SELECT SUM(b.size) FROM repository_blobs l JOIN blobs b ON b.digest = l.digest WHERE l.repository_id = r.id), 0) AS bytes,
				COALESCE((SELECT MAX(m.last_access) FROM repository_manifests l JOIN manifests m ON m.digest = l.digest WHERE l.repository_id = r.id), 0) AS lastAccess
			 FROM repositories r
			 WHERE EXISTS (SELECT 1 FROM repository_manifests m WHERE m.repository_id = r.id)
			 ORDER BY r.registry, r.name`,
		).all() as Array<RepoKey & {id: number; bytes: number; lastAccess: number}>;
		return repos.map(({id, ...repo}) => ({
			...repo,
			tags: this.#statement('SELECT tag, digest, fetched_at AS fetchedAt FROM tags WHERE repository_id = ? ORDER BY tag').all(id) as Array<{
				tag: string;
				digest: string;
				fetchedAt: number;
			}>,
		}));
	}

	async sharedSecret(name: string): Promise<string> {
		this.#statement('INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING').run(name, randomBytes(32).toString('hex'));
		return (this.#statement('SELECT value FROM settings WHERE name = ?').get(name) as {value: string}).value;
	}

	async close(): Promise<void> {
		this.#db.close();
	}
}
