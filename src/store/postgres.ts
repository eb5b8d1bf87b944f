import {randomBytes} from 'node:crypto';
/**
 * The PostgreSQL metadata driver, for several replicas sharing one database.
 * Same schema as SQLite (migrations.ts, translated by forPostgres), same
 * queries where the dialects agree. Migrations run under an advisory lock,
 * so replicas that start at the same moment apply each one exactly once.
 */
import pg from 'pg';
import {forPostgres, MIGRATIONS} from './migrations.js';
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

/**
 * The fixed advisory lock keys (64-bit numbers spelling "mirror" and a
 * purpose); fills lock on the first 8 bytes of their digest instead.
 */
export const LOCK_KEYS = {migrate: 0x6d_69_72_72_6f_72_01n.toString(), maintenance: 0x6d_69_72_72_6f_72_03n.toString()} as const;

const INT8 = 20;

/** `?` placeholders (as in the SQLite driver) to PostgreSQL's `$1, $2…`. */
function numbered(sql: string): string {
	let index = 0;
	return sql.replaceAll('?', () => `$${++index}`);
}

type Queryable = pg.Pool | pg.PoolClient;

function createPool(url: string, max = 10): pg.Pool {
	const pool = new pg.Pool({
		connectionString: url,
		max,
		connectionTimeoutMillis: 5000,
		idleTimeoutMillis: 30_000,
		// Sizes and millisecond times are BIGINT: numbers, not strings (they stay far below 2^53).
		types: {getTypeParser: ((oid: number, format?: string) => (oid === INT8 ? Number : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser},
	});
	// An idle client losing its connection must not crash the process; the next query reconnects.
	pool.on('error', () => undefined);
	return pool;
}

export class PostgresMetadataStore implements MetadataStore {
	private constructor(readonly pool: pg.Pool) {}

	static async open(url: string): Promise<PostgresMetadataStore> {
		const pool = createPool(url);
		try {
			await migrate(pool);
		} catch (error) {
			await pool.end().catch(() => undefined);
			throw new Error(`postgres: ${(error as Error).message}`);
		}

		return new PostgresMetadataStore(pool);
	}

	async #rows<T>(sql: string, parameters: unknown[] = [], db: Queryable = this.pool): Promise<T[]> {
		return (await db.query(numbered(sql), parameters)).rows as T[];
	}

	async #row<T>(sql: string, parameters: unknown[] = [], db: Queryable = this.pool): Promise<T | undefined> {
		return (await this.#rows<T>(sql, parameters, db))[0];
	}

	async #run(sql: string, parameters: unknown[] = [], db: Queryable = this.pool): Promise<number> {
		return (await db.query(numbered(sql), parameters)).rowCount ?? 0;
	}

	async #transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
		const client = await this.pool.connect();
		try {
			await client.query('BEGIN');
			const result = await work(client);
			await client.query('COMMIT');
			return result;
		} catch (error) {
			await client.query('ROLLBACK').catch(() => undefined);
			throw error;
		} finally {
			client.release();
		}
	}

	async #repoId(repo: RepoKey, db: Queryable = this.pool): Promise<number | undefined> {
		return (await this.#row<{id: number}>(SQL.repoId, [repo.registry, repo.name], db))?.id;
	}

	async #ensureRepo(repo: RepoKey, now: number, db: Queryable): Promise<number> {
		const inserted = await this.#row<{id: number}>(
			'INSERT INTO repositories (registry, name, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING id',
			[repo.registry, repo.name, now],
			db,
		);
		return inserted?.id ?? (await this.#repoId(repo, db))!;
	}

	async getTag(repo: RepoKey, tag: string): Promise<TagRecord | undefined> {
		return this.#row<TagRecord>(
			SQL.tag,
			[repo.registry, repo.name, tag],
		);
	}

	async getTaggedManifest(repo: RepoKey, tag: string): Promise<(TagRecord & {manifest: ManifestRecord}) | undefined> {
		const row = await this.#row<TaggedRow>(SQL.taggedManifest, [repo.registry, repo.name, tag]);
		return row && toTagged(row);
	}

	async markTagChecked(repo: RepoKey, tag: string, now: number): Promise<void> {
		await this.#run(
			SQL.markTagChecked,
			[now, tag, repo.registry, repo.name],
		);
	}

	async listTags(repo: RepoKey): Promise<string[]> {
		const rows = await this.#rows<{tag: string}>(
			`SELECT t.tag FROM tags t JOIN repositories r ON r.id = t.repository_id
			 WHERE r.registry = ? AND r.name = ? ORDER BY t.tag COLLATE "C"`,
			[repo.registry, repo.name],
		);
		return rows.map(row => row.tag);
	}

	async putManifest(input: PutManifest): Promise<void> {
		const {repo, manifest, tag, pushed, now} = input;
		await this.#transaction(async db => {
			const repoId = await this.#ensureRepo(repo, now, db);
			await this.#run(
				`INSERT INTO manifests (digest, media_type, size, content, pushed, created_at, last_access)
				 VALUES (?, ?, ?, ?, ?, ?, ?)
				 ON CONFLICT (digest) DO UPDATE
				 SET pushed = GREATEST(manifests.pushed, excluded.pushed), last_access = GREATEST(manifests.last_access, excluded.last_access)`,
				[manifest.digest, manifest.mediaType, manifest.content.length, manifest.content, pushed ? 1 : 0, now, now],
				db,
			);
			await this.#run(SQL.linkManifest, [repoId, manifest.digest], db);
			const references = input.references ?? [];
			if (references.length > 0) {
				await this.#run(
					`INSERT INTO manifest_references (manifest_digest, reference_digest)
					 SELECT ?, unnest(?::text[]) ON CONFLICT DO NOTHING`,
					[manifest.digest, references],
					db,
				);
			}

			if (tag !== undefined) {
				await this.#run(
					SQL.setTag,
					[repoId, tag, manifest.digest, now, now],
					db,
				);
			}
		});
	}

	async getManifest(digest: string): Promise<ManifestRecord | undefined> {
		return this.#row<ManifestRecord>(SQL.manifest, [digest]);
	}

	async hasRepoManifest(repo: RepoKey, digest: string): Promise<boolean> {
		return (
			(await this.#row(
				SQL.hasRepoManifest,
				[repo.registry, repo.name, digest],
			)) !== undefined
		);
	}

	async getRepoManifest(repo: RepoKey, digest: string): Promise<ManifestRecord | undefined> {
		return this.#row<ManifestRecord>(
			SQL.repoManifest,
			[repo.registry, repo.name, digest],
		);
	}

	async getBlob(digest: string): Promise<BlobRecord | undefined> {
		const row = await this.#row<{digest: string; size: number; pushed: number; lastAccess: number}>(
			SQL.blob,
			[digest],
		);
		return row && {...row, pushed: row.pushed === 1};
	}

	async getBlobFor(repo: RepoKey, digest: string): Promise<(BlobRecord & {linked: boolean}) | undefined> {
		const row = await this.#row<{digest: string; size: number; pushed: number; lastAccess: number; linked: boolean}>(
			SQL.blobFor,
			[repo.registry, repo.name, digest],
		);
		return row && {...row, pushed: row.pushed === 1};
	}

	async hasRepoBlob(repo: RepoKey, digest: string): Promise<boolean> {
		return (
			(await this.#row(
				SQL.hasRepoBlob,
				[repo.registry, repo.name, digest],
			)) !== undefined
		);
	}

	async registryHasBlob(registry: string, digest: string): Promise<boolean> {
		return (
			(await this.#row(
				SQL.registryHasBlob,
				[registry, digest],
			)) !== undefined
		);
	}

	async putBlob(repo: RepoKey, blob: {digest: string; size: number; pushed: boolean; now: number}): Promise<void> {
		await this.#transaction(async db => {
			const repoId = await this.#ensureRepo(repo, blob.now, db);
			await this.#run(
				`INSERT INTO blobs (digest, size, pushed, created_at, last_access) VALUES (?, ?, ?, ?, ?)
				 ON CONFLICT (digest) DO UPDATE
				 SET pushed = GREATEST(blobs.pushed, excluded.pushed), last_access = GREATEST(blobs.last_access, excluded.last_access)`,
				[blob.digest, blob.size, blob.pushed ? 1 : 0, blob.now, blob.now],
				db,
			);
			await this.#run('INSERT INTO repository_blobs (repository_id, digest) VALUES (?, ?) ON CONFLICT DO NOTHING', [repoId, blob.digest], db);
		});
	}

	async linkBlob(repo: RepoKey, digest: string): Promise<void> {
		if (!(await this.getBlob(digest))) {
			return; // nothing to link: the blob is not in the store
		}

		await this.#transaction(async db => {
			const repoId = await this.#ensureRepo(repo, Date.now(), db);
			// The blob may have been deleted since: the foreign key would refuse the link, so insert only if it exists.
			await this.#run(
				'INSERT INTO repository_blobs (repository_id, digest) SELECT ?, digest FROM blobs WHERE digest = ? ON CONFLICT DO NOTHING',
				[repoId, digest],
				db,
			);
		});
	}

	async touch(entries: ReadonlyArray<{kind: 'blob' | 'manifest'; digest: string; at: number}>): Promise<void> {
		for (const kind of ['blob', 'manifest'] as const) {
			const batch = entries.filter(entry => entry.kind === kind);
			if (batch.length === 0) {
				continue;
			}

			const table = kind === 'blob' ? 'blobs' : 'manifests';
			await this.#run(
				`UPDATE ${table} t SET last_access = GREATEST(t.last_access, u.at)
				 FROM (SELECT unnest(?::text[]) AS digest, unnest(?::bigint[]) AS at) u WHERE t.digest = u.digest`,
				[batch.map(entry => entry.digest), batch.map(entry => entry.at)],
			);
		}
	}

	async allBlobDigests(): Promise<string[]> {
		return (await this.#rows<{digest: string}>(SQL.allBlobDigests)).map(row => row.digest);
	}

	async deleteBlobRecord(digest: string): Promise<void> {
		await this.#run(SQL.deleteBlob, [digest]);
	}

	async deleteTag(repo: RepoKey, tag: string): Promise<boolean> {
		const repoId = await this.#repoId(repo);
		return repoId !== undefined && (await this.#run(SQL.deleteTag, [repoId, tag])) > 0;
	}

	async deleteRepoManifest(repo: RepoKey, digest: string): Promise<boolean> {
		const repoId = await this.#repoId(repo);
		if (repoId === undefined) {
			return false;
		}

		return this.#transaction(async db => {
			const removed = await this.#run(SQL.unlinkManifest, [repoId, digest], db);
			await this.#run(SQL.deleteRepoTagsOf, [repoId, digest], db);
			await this.#run(SQL.deleteRepoReferrer, [repoId, digest], db);
			return removed > 0;
		});
	}

	async unlinkBlob(repo: RepoKey, digest: string): Promise<boolean> {
		const repoId = await this.#repoId(repo);
		return repoId !== undefined && (await this.#run(SQL.unlinkBlob, [repoId, digest])) > 0;
	}

	async listRepositories(): Promise<RepoKey[]> {
		return this.#rows<RepoKey>(
			`SELECT registry, name FROM repositories r
			 WHERE EXISTS (SELECT 1 FROM repository_manifests m WHERE m.repository_id = r.id)
			 ORDER BY registry COLLATE "C", name COLLATE "C"`,
		);
	}

	async repositoryExists(repo: RepoKey): Promise<boolean> {
		const repoId = await this.#repoId(repo);
		return (
			repoId !== undefined &&
			(await this.#row(
				`SELECT 1 WHERE EXISTS (SELECT 1 FROM repository_manifests WHERE repository_id = ?)
				 OR EXISTS (SELECT 1 FROM repository_blobs WHERE repository_id = ?)`,
				[repoId, repoId],
			)) !== undefined
		);
	}

	async createUpload(upload: {id: string; repo: RepoKey; now: number}): Promise<void> {
		await this.#run(SQL.createUpload, [
			upload.id,
			upload.repo.registry,
			upload.repo.name,
			upload.now,
			upload.now,
		]);
	}

	async getUpload(id: string): Promise<UploadRecord | undefined> {
		const row = await this.#row<UploadRow>(SQL.upload, [id]);
		return row && toUpload(row);
	}

	async setUploadSize(id: string, size: number, now: number): Promise<void> {
		await this.#run(SQL.setUploadSize, [size, now, id]);
	}

	async deleteUpload(id: string): Promise<void> {
		await this.#run(SQL.deleteUpload, [id]);
	}

	async uploadsIdleSince(before: number): Promise<UploadRecord[]> {
		return (await this.#rows<UploadRow>(SQL.uploadsIdleSince, [before])).map(row => toUpload(row));
	}

	async putReferrer(repo: RepoKey, subject: string, referrer: ReferrerRecord): Promise<void> {
		await this.#transaction(async db => {
			const repoId = await this.#ensureRepo(repo, Date.now(), db);
			await this.#run(
				SQL.putReferrer,
				[
					repoId,
					subject,
					referrer.digest,
					referrer.mediaType,
					referrer.artifactType ?? null,
					referrer.size,
					referrer.annotations ? JSON.stringify(referrer.annotations) : null,
				],
				db,
			);
		});
	}

	async listReferrers(repo: RepoKey, subject: string): Promise<ReferrerRecord[]> {
		const repoId = await this.#repoId(repo);
		if (repoId === undefined) {
			return [];
		}

		const rows = await this.#rows<ReferrerRow>(
			`SELECT digest, media_type AS "mediaType", artifact_type AS "artifactType", size, annotations
			 FROM referrers WHERE repository_id = ? AND subject = ? ORDER BY digest COLLATE "C"`,
			[repoId, subject],
		);
		return rows.map(row => toReferrer(row));
	}

	async #bytes(pushed: 0 | 1): Promise<number> {
		const row = await this.#row<{total: number}>(
			`SELECT (COALESCE((SELECT SUM(size) FROM blobs WHERE pushed = ?), 0)
				+ COALESCE((SELECT SUM(size) FROM manifests WHERE pushed = ?), 0))::bigint AS total`,
			[pushed, pushed],
		);
		return row?.total ?? 0;
	}

	async cachedBytes(): Promise<number> {
		return this.#bytes(0);
	}

	async pushedBytes(): Promise<number> {
		return this.#bytes(1);
	}

	async leastRecentlyUsedCachedManifest(): Promise<{digest: string; lastAccess: number} | undefined> {
		return this.#row(
			'SELECT digest, last_access AS "lastAccess" FROM manifests WHERE pushed = 0 ORDER BY last_access, digest COLLATE "C" LIMIT 1',
		);
	}

	async evictManifest(digest: string): Promise<Array<{digest: string; size: number}>> {
		return this.#transaction(async db => {
			const referenced = await this.#rows<{digest: string}>(
				SQL.references,
				[digest],
				db,
			);
			await this.#run(SQL.deleteTagsOf, [digest], db);
			await this.#run(SQL.deleteReferrer, [digest], db);
			await this.#run(SQL.deleteCachedManifest, [digest], db); // cascades links and references
			if (referenced.length === 0) {
				return [];
			}

			return this.#rows<{digest: string; size: number}>(
				`DELETE FROM blobs b WHERE b.digest = ANY(?::text[]) AND b.pushed = 0
				 AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.reference_digest = b.digest)
				 RETURNING b.digest, b.size`,
				[referenced.map(row => row.digest)],
				db,
			);
		});
	}

	async unreferencedCachedBlobs(before: number): Promise<Array<{digest: string; size: number}>> {
		return this.#rows(
			SQL.unreferencedCachedBlobs,
			[before],
		);
	}

	async collectGarbage(before: number, apply: boolean): Promise<{manifests: string[]; blobs: Array<{digest: string; size: number}>}> {
		const run = async (db: Queryable) => {
			const manifests = (
				await this.#rows<{digest: string}>(
					SQL.unlinkedManifests,
					[before],
					db,
				)
			).map(row => row.digest);
			if (apply && manifests.length > 0) {
				await this.#run('DELETE FROM manifests WHERE digest = ANY(?::text[])', [manifests], db);
			}

			const blobs = await this.#rows<{digest: string; size: number}>(
				SQL.unreachableBlobs,
				[before],
				db,
			);
			if (apply && blobs.length > 0) {
				await this.#run('DELETE FROM blobs WHERE digest = ANY(?::text[])', [blobs.map(blob => blob.digest)], db);
			}

			return {manifests, blobs};
		};

		return apply ? this.#transaction(run) : run(this.pool);
	}

	async deleteBlobRecords(digests: readonly string[]): Promise<void> {
		if (digests.length > 0) {
			await this.#run('DELETE FROM blobs WHERE digest = ANY(?::text[])', [digests]);
		}
	}

	async describeRepositories(): Promise<Array<RepoKey & {tags: Array<{tag: string; digest: string; fetchedAt: number}>; bytes: number; lastAccess: number}>> {
		const repos = await this.#rows<RepoKey & {id: number; bytes: number; lastAccess: number}>(
			`SELECT r.id, r.registry, r.name,
				COALESCE((SELECT SUM(b.size) FROM repository_blobs l JOIN blobs b ON b.digest = l.digest WHERE l.repository_id = r.id), 0)::bigint AS bytes,
				COALESCE((SELECT MAX(m.last_access) FROM repository_manifests l JOIN manifests m ON m.digest = l.digest WHERE l.repository_id = r.id), 0)::bigint AS "lastAccess"
			 FROM repositories r
			 WHERE EXISTS (SELECT 1 FROM repository_manifests m WHERE m.repository_id = r.id)
			 ORDER BY r.registry COLLATE "C", r.name COLLATE "C"`,
		);
		const tags = await this.#rows<{repositoryId: number; tag: string; digest: string; fetchedAt: number}>(
			`SELECT repository_id AS "repositoryId", tag, digest, fetched_at AS "fetchedAt" FROM tags
			 WHERE repository_id = ANY(?::bigint[]) ORDER BY tag COLLATE "C"`,
			[repos.map(repo => repo.id)],
		);
		return repos.map(({id, ...repo}) => ({
			...repo,
			tags: tags.filter(tag => tag.repositoryId === id).map(({tag, digest, fetchedAt}) => ({tag, digest, fetchedAt})),
		}));
	}

	async sharedSecret(name: string): Promise<string> {
		await this.#run('INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING', [name, randomBytes(32).toString('hex')]);
		return (await this.#row<{value: string}>('SELECT value FROM settings WHERE name = ?', [name]))!.value;
	}

	/** Rejects when the database cannot be reached (readiness). */
	async ping(): Promise<void> {
		await this.pool.query('SELECT 1');
	}

	async close(): Promise<void> {
		await this.pool.end();
	}
}

/** Applies the migrations this database lacks, one replica at a time. */
async function migrate(pool: pg.Pool): Promise<void> {
	const client = await pool.connect();
	try {
		await client.query('BEGIN');
		await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEYS.migrate]);
		await client.query('CREATE TABLE IF NOT EXISTS mirror_schema (version INTEGER NOT NULL)');
		const current = ((await client.query('SELECT version FROM mirror_schema')).rows[0] as {version: number} | undefined)?.version;
		if (current === undefined) {
			await client.query('INSERT INTO mirror_schema (version) VALUES (0)');
		}

		const version = current ?? 0;
		if (version > MIGRATIONS.length) {
			throw new Error(`database schema version ${version} is newer than this program (${MIGRATIONS.length})`);
		}

		for (let next = version; next < MIGRATIONS.length; next++) {
			await client.query(forPostgres(MIGRATIONS[next]!));
		}

		await client.query('UPDATE mirror_schema SET version = $1', [MIGRATIONS.length]);
		await client.query('COMMIT');
	} catch (error) {
		await client.query('ROLLBACK').catch(() => undefined);
		throw error;
	} finally {
		client.release();
	}
}
