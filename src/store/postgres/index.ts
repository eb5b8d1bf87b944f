/**
 * The PostgreSQL metadata driver, for several replicas sharing one database.
 * Same schema as SQLite (migrations.ts, translated by forPostgres), same
 * queries where the dialects agree. The connection and migrations are in
 * db.ts; one object per role of the MetadataStore interface works over it.
 */
import {randomBytes} from 'node:crypto';
import type pg from 'pg';
import {type Catalog, type Housekeeping, type MetadataStore, type ReadIndex, type TagIndex, type UploadIndex, type WriteIndex} from '../metadata.js';
import {PostgresDb} from './db.js';
import {catalog} from './catalog.js';
import {housekeeping} from './housekeeping.js';
import {readIndex} from './read-index.js';
import {tagIndex} from './tag-index.js';
import {uploadIndex} from './uploads.js';
import {writeIndex} from './write-index.js';

/** The role methods: the role objects' own, assigned to the store in the constructor. */
// The mixin pattern: the interface names the methods the constructor assigns (TypeScript's documented way to type mixins).
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface PostgresMetadataStore extends ReadIndex, WriteIndex, UploadIndex, Housekeeping, Catalog, TagIndex {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class PostgresMetadataStore implements MetadataStore {
	readonly pool: pg.Pool;
	readonly #db: PostgresDb;

	private constructor(db: PostgresDb) {
		this.#db = db;
		this.pool = db.pool;
		Object.assign(this, readIndex(db), writeIndex(db), uploadIndex(db), housekeeping(db), catalog(db), tagIndex(db));
	}

	static async open(url: string): Promise<PostgresMetadataStore> {
		return new PostgresMetadataStore(await PostgresDb.open(url));
	}

	async sharedSecret(name: string): Promise<string> {
		await this.#db.run('INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING', [name, randomBytes(32).toString('hex')]);
		return (await this.#db.row<{value: string}>('SELECT value FROM settings WHERE name = ?', [name]))!.value;
	}

	/** Rejects when the database cannot be reached (readiness). */
	async ping(): Promise<void> {
		await this.pool.query('SELECT 1');
	}

	async close(): Promise<void> {
		await this.pool.end();
	}
}
