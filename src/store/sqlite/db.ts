/**
 * The SQLite driver's connection, shared by its role objects: one file in
 * WAL mode, migrated on open, with a cache of prepared statements.
 */
import Database from 'better-sqlite3';
import {type RepoKey} from '../metadata.js';
import {forSqlite, MIGRATIONS} from '../migrations.js';
import {SQL} from '../queries.js';

type Statement = Database.Statement<unknown[], unknown>;

/** How stale the cache generation may be for changes made by another process that did not say so (the CLI, another replica). */
export const GENERATION_POLL_MS = 20;

export class SqliteDb {
	readonly #db: Database.Database;
	readonly #statements = new Map<string, Statement>();

	#generation = 0;
	#generationReadAt = 0;
	/** A statement that writes was prepared or fetched since the generation was last read. */
	#wrote = true;

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
				this.#db.exec(forSqlite(MIGRATIONS[version]!));
				this.#db.pragma(`user_version = ${version + 1}`);
			}).immediate();
		}
	}

	/** The prepared statement for `sql`, prepared on first use. */
	statement(sql: string): Statement {
		let statement = this.#statements.get(sql);
		if (!statement) {
			statement = this.#db.prepare(sql);
			this.#statements.set(sql, statement);
		}

		if (!statement.reader) {
			this.#wrote = true; // it runs next, in this same turn
		}

		return statement;
	}

	/**
	 * The cache generation (see migrations.ts), asked for every answer from
	 * memory. A read of SQLite costs a lock round on its shared memory (about
	 * 13 µs here, more than the rest of such an answer), so the value is read
	 * again only when it may have moved: after a write through this
	 * connection (which may have fired the triggers), when told another
	 * process changed it (`generationChanged`), and otherwise at most every
	 * GENERATION_POLL_MS.
	 */
	cacheGeneration(read: () => number): number {
		const now = Date.now();
		if (this.#wrote || now >= this.#generationReadAt + GENERATION_POLL_MS) {
			this.#wrote = false;
			this.#generationReadAt = now;
			this.#generation = read();
		}

		return this.#generation;
	}

	/** Another process says it changed the store: read the generation again before the next answer. */
	generationChanged(): void {
		this.#wrote = true;
	}

	transaction<T>(work: () => T): Database.Transaction<() => T> {
		return this.#db.transaction(work);
	}

	repoId(repo: RepoKey): number | undefined {
		const row = this.statement(SQL.repoId).get(repo.registry, repo.name) as
			| {id: number}
			| undefined;
		return row?.id;
	}

	ensureRepo(repo: RepoKey, now: number): number {
		this.statement('INSERT INTO repositories (registry, name, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING').run(
			repo.registry,
			repo.name,
			now,
		);
		return this.repoId(repo)!;
	}

	close(): void {
		this.#db.close();
	}
}
