/**
 * The embedded metadata driver: one SQLite file in WAL mode (db.ts), and one
 * object per role of the MetadataStore interface over it.
 */
import {randomBytes} from 'node:crypto';
import {type Catalog, type Housekeeping, type MetadataStore, type ReadIndex, type TagIndex, type UploadIndex, type WriteIndex} from '../metadata.js';
import {SqliteDb} from './db.js';
import {catalog} from './catalog.js';
import {housekeeping} from './housekeeping.js';
import {readIndex} from './read-index.js';
import {tagIndex} from './tag-index.js';
import {uploadIndex} from './uploads.js';
import {writeIndex} from './write-index.js';

/** The role methods: the role objects' own, assigned to the store in the constructor. */
// The mixin pattern: the interface names the methods the constructor assigns (TypeScript's documented way to type mixins).
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface SqliteMetadataStore extends ReadIndex, WriteIndex, UploadIndex, Housekeeping, Catalog, TagIndex {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class SqliteMetadataStore implements MetadataStore {
	readonly #db: SqliteDb;

	constructor(file: string) {
		this.#db = new SqliteDb(file);
		Object.assign(this, readIndex(this.#db), writeIndex(this.#db), uploadIndex(this.#db), housekeeping(this.#db), catalog(this.#db), tagIndex(this.#db));
	}

	get schemaVersion(): number {
		return this.#db.schemaVersion;
	}

	async sharedSecret(name: string): Promise<string> {
		this.#db.statement('INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING').run(name, randomBytes(32).toString('hex'));
		return (this.#db.statement('SELECT value FROM settings WHERE name = ?').get(name) as {value: string}).value;
	}

	async close(): Promise<void> {
		this.#db.close();
	}
}
