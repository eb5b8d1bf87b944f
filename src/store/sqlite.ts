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
		const row = this.#statement('SELECT id FROM repositories WHERE registry = ? AND name = ?').get(repo.registry, repo.name) as
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
		const row = this.#statement(
			`SELECT t.digest, t.fetched_at AS fetchedAt, t.checked_at AS checkedAt
			 FROM tags t JOIN repositories r ON r.id = t.repository_id
			 WHERE r.registry = ? AND r.name = ? AND t.tag = ?`,
		).get(repo.registry, repo.name, tag) as TagRecord | undefined;
		return row;
	}

	async getTaggedManifest(repo: RepoKey, tag: string): Promise<(TagRecord & {manifest: ManifestRecord}) | undefined> {
		const row = this.#statement(
			`SELECT t.digest, t.fetched_at AS fetchedAt, t.checked_at AS checkedAt, m.media_type AS mediaType, m.content
			 FROM tags t JOIN repositories r ON r.id = t.repository_id JOIN manifests m ON m.digest = t.digest
			 WHERE r.registry = ? AND r.name = ? AND t.tag = ?`,
		).get(repo.registry, repo.name, tag) as (TagRecord & {mediaType: string; content: Buffer}) | undefined;
		return (
			row && {
				digest: row.digest,
				fetchedAt: row.fetchedAt,
				checkedAt: row.checkedAt,
				manifest: {digest: row.digest, mediaType: row.mediaType, content: row.content},
			}
		);
	}

	async markTagChecked(repo: RepoKey, tag: string, now: number): Promise<void> {
		this.#statement(
			`UPDATE tags SET checked_at = ?
			 WHERE tag = ? AND repository_id = (SELECT id FROM repositories WHERE registry = ? AND name = ?)`,
		).run(now, tag, repo.registry, repo.name);
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
			this.#statement('INSERT INTO repository_manifests (repository_id, digest) VALUES (?, ?) ON CONFLICT DO NOTHING').run(
				repoId,
				manifest.digest,
			);
			for (const reference of input.references ?? []) {
				this.#statement(
					'INSERT INTO manifest_references (manifest_digest, reference_digest) VALUES (?, ?) ON CONFLICT DO NOTHING',
				).run(manifest.digest, reference);
			}

			if (tag !== undefined) {
				this.#statement(
					`INSERT INTO tags (repository_id, tag, digest, fetched_at, checked_at) VALUES (?, ?, ?, ?, ?)
					 ON CONFLICT (repository_id, tag) DO UPDATE
					 SET digest = excluded.digest, fetched_at = excluded.fetched_at, checked_at = excluded.checked_at`,
				).run(repoId, tag, manifest.digest, now, now);
			}
		}).immediate();
	}

	async getManifest(digest: string): Promise<ManifestRecord | undefined> {
		const row = this.#statement('SELECT digest, media_type AS mediaType, content FROM manifests WHERE digest = ?').get(digest) as
			| ManifestRecord
			| undefined;
		return row;
	}

	async hasRepoManifest(repo: RepoKey, digest: string): Promise<boolean> {
		return (
			this.#statement(
				`SELECT 1 FROM repository_manifests m JOIN repositories r ON r.id = m.repository_id
				 WHERE r.registry = ? AND r.name = ? AND m.digest = ?`,
			).get(repo.registry, repo.name, digest) !== undefined
		);
	}

	async getRepoManifest(repo: RepoKey, digest: string): Promise<ManifestRecord | undefined> {
		return this.#statement(
			`SELECT m.digest, m.media_type AS mediaType, m.content
			 FROM repository_manifests l JOIN repositories r ON r.id = l.repository_id JOIN manifests m ON m.digest = l.digest
			 WHERE r.registry = ? AND r.name = ? AND l.digest = ?`,
		).get(repo.registry, repo.name, digest) as ManifestRecord | undefined;
	}

	async getBlob(digest: string): Promise<BlobRecord | undefined> {
		return this.#getBlob(digest);
	}

	#getBlob(digest: string): BlobRecord | undefined {
		const row = this.#statement('SELECT digest, size, pushed, last_access AS lastAccess FROM blobs WHERE digest = ?').get(digest) as
			| {digest: string; size: number; pushed: number; lastAccess: number}
			| undefined;
		return row && {...row, pushed: row.pushed === 1};
	}

	async getBlobFor(repo: RepoKey, digest: string): Promise<(BlobRecord & {linked: boolean}) | undefined> {
		const row = this.#statement(
			`SELECT b.digest, b.size, b.pushed, b.last_access AS lastAccess,
				EXISTS (SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id
					WHERE r.registry = ? AND r.name = ? AND l.digest = b.digest) AS linked
			 FROM blobs b WHERE b.digest = ?`,
		).get(repo.registry, repo.name, digest) as {digest: string; size: number; pushed: number; lastAccess: number; linked: number} | undefined;
		return row && {...row, pushed: row.pushed === 1, linked: row.linked === 1};
	}

	async hasRepoBlob(repo: RepoKey, digest: string): Promise<boolean> {
		return (
			this.#statement(
				`SELECT 1 FROM repository_blobs b JOIN repositories r ON r.id = b.repository_id
				 WHERE r.registry = ? AND r.name = ? AND b.digest = ?`,
			).get(repo.registry, repo.name, digest) !== undefined
		);
	}

	async registryHasBlob(registry: string, digest: string): Promise<boolean> {
		return (
			this.#statement(
				`SELECT 1 FROM repository_blobs b JOIN repositories r ON r.id = b.repository_id
				 WHERE r.registry = ? AND b.digest = ? LIMIT 1`,
			).get(registry, digest) !== undefined
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
		return (this.#statement('SELECT digest FROM blobs').all() as Array<{digest: string}>).map(row => row.digest);
	}

	async deleteBlobRecord(digest: string): Promise<void> {
		this.#statement('DELETE FROM blobs WHERE digest = ?').run(digest);
	}

	async deleteTag(repo: RepoKey, tag: string): Promise<boolean> {
		const repoId = this.#repoId(repo);
		return repoId !== undefined && this.#statement('DELETE FROM tags WHERE repository_id = ? AND tag = ?').run(repoId, tag).changes > 0;
	}

	async deleteRepoManifest(repo: RepoKey, digest: string): Promise<boolean> {
		const repoId = this.#repoId(repo);
		if (repoId === undefined) {
			return false;
		}

		return this.#db.transaction(() => {
			const removed = this.#statement('DELETE FROM repository_manifests WHERE repository_id = ? AND digest = ?').run(repoId, digest).changes;
			this.#statement('DELETE FROM tags WHERE repository_id = ? AND digest = ?').run(repoId, digest);
			this.#statement('DELETE FROM referrers WHERE repository_id = ? AND digest = ?').run(repoId, digest);
			return removed > 0;
		}).immediate();
	}

	async unlinkBlob(repo: RepoKey, digest: string): Promise<boolean> {
		const repoId = this.#repoId(repo);
		return (
			repoId !== undefined &&
			this.#statement('DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?').run(repoId, digest).changes > 0
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
		this.#statement('INSERT INTO uploads (id, registry, name, size, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)').run(
			upload.id,
			upload.repo.registry,
			upload.repo.name,
			upload.now,
			upload.now,
		);
	}

	async getUpload(id: string): Promise<UploadRecord | undefined> {
		return this.#getUpload(id);
	}

	#getUpload(id: string): UploadRecord | undefined {
		const row = this.#statement(
			'SELECT id, registry, name, size, created_at AS createdAt, updated_at AS updatedAt FROM uploads WHERE id = ?',
		).get(id) as {id: string; registry: string; name: string; size: number; createdAt: number; updatedAt: number} | undefined;
		return row && {id: row.id, repo: {registry: row.registry, name: row.name}, size: row.size, createdAt: row.createdAt, updatedAt: row.updatedAt};
	}

	async setUploadSize(id: string, size: number, now: number): Promise<void> {
		this.#statement('UPDATE uploads SET size = ?, updated_at = ? WHERE id = ?').run(size, now, id);
	}

	async deleteUpload(id: string): Promise<void> {
		this.#statement('DELETE FROM uploads WHERE id = ?').run(id);
	}

	async uploadsIdleSince(before: number): Promise<UploadRecord[]> {
		const rows = this.#statement('SELECT id FROM uploads WHERE updated_at < ?').all(before) as Array<{id: string}>;
		return rows.map(row => this.#getUpload(row.id)).filter((upload): upload is UploadRecord => upload !== undefined);
	}

	async putReferrer(repo: RepoKey, subject: string, referrer: ReferrerRecord): Promise<void> {
		const repoId = this.#ensureRepo(repo, Date.now());
		this.#statement(
			`INSERT INTO referrers (repository_id, subject, digest, media_type, artifact_type, size, annotations)
			 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		).run(
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
		).all(repoId, subject) as Array<{digest: string; mediaType: string; artifactType: string | null; size: number; annotations: string | null}>;
		return rows.map(row => ({
			digest: row.digest,
			mediaType: row.mediaType,
			size: row.size,
			...(row.artifactType === null ? {} : {artifactType: row.artifactType}),
			...(row.annotations === null ? {} : {annotations: JSON.parse(row.annotations) as Record<string, string>}),
		}));
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
			const referenced = this.#statement('SELECT reference_digest AS digest FROM manifest_references WHERE manifest_digest = ?').all(
				digest,
			) as Array<{digest: string}>;
			this.#statement('DELETE FROM tags WHERE digest = ?').run(digest);
			this.#statement('DELETE FROM referrers WHERE digest = ?').run(digest);
			this.#statement('DELETE FROM manifests WHERE digest = ? AND pushed = 0').run(digest); // cascades links and references
			const removed: Array<{digest: string; size: number}> = [];
			for (const {digest: blob} of referenced) {
				const row = this.#statement(
					`SELECT size FROM blobs b WHERE b.digest = ? AND b.pushed = 0
					 AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.reference_digest = b.digest)`,
				).get(blob) as {size: number} | undefined;
				if (row) {
					this.#statement('DELETE FROM blobs WHERE digest = ?').run(blob);
					removed.push({digest: blob, size: row.size});
				}
			}

			return removed;
		}).immediate();
	}

	async unreferencedCachedBlobs(before: number): Promise<Array<{digest: string; size: number}>> {
		return this.#statement(
			`SELECT digest, size FROM blobs b WHERE pushed = 0 AND last_access < ?
			 AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.reference_digest = b.digest)
			 ORDER BY last_access`,
		).all(before) as Array<{digest: string; size: number}>;
	}

	async collectGarbage(before: number, apply: boolean): Promise<{manifests: string[]; blobs: Array<{digest: string; size: number}>}> {
		const run = () => {
			// Mark: manifests some repository links are live, and so is everything they reference.
			const manifests = (
				this.#statement(
					`SELECT digest FROM manifests m WHERE last_access < ?
					 AND NOT EXISTS (SELECT 1 FROM repository_manifests l WHERE l.digest = m.digest)`,
				).all(before) as Array<{digest: string}>
			).map(row => row.digest);
			if (apply) {
				for (const digest of manifests) {
					this.#statement('DELETE FROM manifests WHERE digest = ?').run(digest);
				}
			}

			const blobs = this.#statement(
				`SELECT digest, size FROM blobs b WHERE last_access < ?
				 AND NOT EXISTS (
					SELECT 1 FROM manifest_references r JOIN repository_manifests l ON l.digest = r.manifest_digest
					WHERE r.reference_digest = b.digest)`,
			).all(before) as Array<{digest: string; size: number}>;
			if (apply) {
				for (const blob of blobs) {
					this.#statement('DELETE FROM blobs WHERE digest = ?').run(blob.digest);
				}
			}

			return {manifests, blobs};
		};

		return apply ? this.#db.transaction(run).immediate() : run();
	}

	async deleteBlobRecords(digests: readonly string[]): Promise<void> {
		this.#db.transaction(() => {
			for (const digest of digests) {
				this.#statement('DELETE FROM blobs WHERE digest = ?').run(digest);
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
