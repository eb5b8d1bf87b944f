/**
 * The PostgreSQL driver's connection, shared by its role objects: a pool,
 * the query helpers, and the migrations. Migrations run under an advisory
 * lock, so replicas that start at the same moment apply each one exactly once.
 */
import pg from 'pg';
import {type RepoKey} from '../metadata.js';
import {forPostgres, MIGRATIONS} from '../migrations.js';
import {SQL} from '../queries.js';

/**
 * The advisory lock key of migrations (a 64-bit number spelling "mirror" and
 * a purpose); fills lock on the first 8 bytes of their digest instead.
 */
export const MIGRATE_LOCK_KEY = 0x6d_69_72_72_6f_72_01n.toString();

const INT8 = 20;

/** `?` placeholders (as in the SQLite driver) to PostgreSQL's `$1, $2…`. */
function numbered(sql: string): string {
	let index = 0;
	return sql.replaceAll('?', () => `$${++index}`);
}

export type Queryable = pg.Pool | pg.PoolClient;

function createPool(url: string, max = 10): pg.Pool {
	const pool = new pg.Pool({
		connectionString: url,
		max,
		connectionTimeoutMillis: 5000,
		idleTimeoutMillis: 30_000,
		// Sizes and millisecond times are BIGINT: numbers, not strings (they stay far below 2^53).
		types: {getTypeParser: ((oid: number, format?: string): unknown => (oid === INT8 ? Number : (pg.types.getTypeParser(oid, format as 'text') as unknown))) as typeof pg.types.getTypeParser},
	});
	// An idle client losing its connection must not crash the process; the next query reconnects.
	pool.on('error', () => undefined);
	return pool;
}

export class PostgresDb {
	private constructor(readonly pool: pg.Pool) {}

	/** Connects and applies the migrations this database lacks. */
	static async open(url: string): Promise<PostgresDb> {
		const db = new PostgresDb(createPool(url));
		try {
			await db.transaction(async client => migrate(client));
		} catch (error) {
			await db.pool.end().catch(() => undefined);
			throw new Error(`postgres: ${(error as Error).message}`);
		}

		return db;
	}

	async rows<T>(sql: string, parameters: unknown[] = [], db: Queryable = this.pool): Promise<T[]> {
		return (await db.query(numbered(sql), parameters)).rows as T[];
	}

	async row<T>(sql: string, parameters: unknown[] = [], db: Queryable = this.pool): Promise<T | undefined> {
		return (await this.rows<T>(sql, parameters, db))[0];
	}

	/** Runs a statement; returns how many rows it changed. */
	async run(sql: string, parameters: unknown[] = [], db: Queryable = this.pool): Promise<number> {
		return (await db.query(numbered(sql), parameters)).rowCount ?? 0;
	}

	async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
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

	async repoId(repo: RepoKey, db: Queryable = this.pool): Promise<number | undefined> {
		return (await this.row<{id: number}>(SQL.repoId, [repo.registry, repo.name], db))?.id;
	}

	async ensureRepo(repo: RepoKey, now: number, db: Queryable): Promise<number> {
		const inserted = await this.row<{id: number}>(
			'INSERT INTO repositories (registry, name, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING id',
			[repo.registry, repo.name, now],
			db,
		);
		return inserted?.id ?? (await this.repoId(repo, db))!;
	}
}

/** Applies the migrations this database lacks, one replica at a time (inside the caller's transaction). */
async function migrate(client: pg.PoolClient): Promise<void> {
	await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATE_LOCK_KEY]);
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
}
