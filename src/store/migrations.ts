/**
 * Versioned schema. Each entry runs once, in order, inside a transaction;
 * PRAGMA user_version records how many have run. Append, never edit.
 */
/** A repository's links to blobs or to manifests: the same shape for both. */
function linkTable(table: string, target: string): string {
	return `CREATE TABLE ${table} (
		repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
		digest TEXT NOT NULL REFERENCES ${target} (digest) ON DELETE CASCADE,
		PRIMARY KEY (repository_id, digest)
	) WITHOUT ROWID;`;
}

/**
 * A migration the two dialects cannot share (triggers): each spelled out.
 */
export type DialectMigration = {sqlite: string; postgres: string};

/**
 * Every change that can make an answer the mirror already gave wrong (a tag
 * moved or removed, a manifest or blob unlinked or deleted, a repository
 * removed) bumps cache_generation.n, whichever code path or process (another
 * worker, the CLI, another replica) made it. Memory caches of answers keep
 * the generation they were filled under and drop entries from an older one.
 */
const GENERATION_TRIGGERS: Array<[table: string, event: string, when?: string]> = [
	['tags', 'UPDATE OF digest', 'OLD.digest <> NEW.digest'],
	['tags', 'DELETE'],
	['repository_manifests', 'DELETE'],
	['manifests', 'DELETE'],
	['repository_blobs', 'DELETE'],
	['blobs', 'DELETE'],
	['repositories', 'DELETE'],
];

const cacheGeneration: DialectMigration = {
	sqlite: [
		'CREATE TABLE cache_generation (n INTEGER NOT NULL);',
		'INSERT INTO cache_generation (n) VALUES (0);',
		...GENERATION_TRIGGERS.map(
			([table, event, when], index) =>
				`CREATE TRIGGER cache_generation_${index} AFTER ${event} ON ${table} ${when ? `WHEN ${when} ` : ''}BEGIN UPDATE cache_generation SET n = n + 1; END;`,
		),
	].join('\n'),
	postgres: [
		'CREATE TABLE cache_generation (n BIGINT NOT NULL);',
		'INSERT INTO cache_generation (n) VALUES (0);',
		`CREATE FUNCTION bump_cache_generation() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN UPDATE cache_generation SET n = n + 1; RETURN NULL; END $$;`,
		...GENERATION_TRIGGERS.map(
			([table, event, when], index) =>
				`CREATE TRIGGER cache_generation_${index} AFTER ${event} ON ${table} FOR EACH ROW ${when ? `WHEN (${when}) ` : ''}EXECUTE FUNCTION bump_cache_generation();`,
		),
	].join('\n'),
};

/**
 * Tag history and pins, by registry and repository name (not repository id:
 * both outlive the eviction of what they name). tag_history holds one row per
 * stretch of time an upstream had a tag at one digest (a tag that moves back
 * gets a new row). A pin makes a cached tag answer its digest without asking
 * the upstream and keeps that content from eviction; pinning and unpinning
 * change answers, so both bump the cache generation.
 */
const TAG_TABLES = `
	CREATE TABLE tag_history (
		id INTEGER PRIMARY KEY,
		registry TEXT NOT NULL,
		name TEXT NOT NULL,
		tag TEXT NOT NULL,
		digest TEXT NOT NULL,
		first_seen INTEGER NOT NULL,
		last_seen INTEGER NOT NULL
	);
	CREATE INDEX tag_history_tag ON tag_history (registry, name, tag, id);
	CREATE TABLE tag_pins (
		registry TEXT NOT NULL,
		name TEXT NOT NULL,
		tag TEXT NOT NULL,
		digest TEXT NOT NULL,
		pinned_at INTEGER NOT NULL,
		pinned_by TEXT,
		PRIMARY KEY (registry, name, tag)
	);
	CREATE INDEX tag_pins_digest ON tag_pins (digest);
`;

const PIN_EVENTS = ['INSERT', 'UPDATE', 'DELETE'] as const;

const tagHistoryAndPins: DialectMigration = {
	sqlite: [
		TAG_TABLES,
		...PIN_EVENTS.map(event => `CREATE TRIGGER cache_generation_pins_${event.toLowerCase()} AFTER ${event} ON tag_pins BEGIN UPDATE cache_generation SET n = n + 1; END;`),
	].join('\n'),
	postgres: [
		forPostgres(TAG_TABLES),
		...PIN_EVENTS.map(event => `CREATE TRIGGER cache_generation_pins_${event.toLowerCase()} AFTER ${event} ON tag_pins FOR EACH ROW EXECUTE FUNCTION bump_cache_generation();`),
	].join('\n'),
};

export const MIGRATIONS: ReadonlyArray<string | DialectMigration> = [
	`
	CREATE TABLE repositories (
		id INTEGER PRIMARY KEY,
		registry TEXT NOT NULL,
		name TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		UNIQUE (registry, name)
	);
	CREATE TABLE blobs (
		digest TEXT PRIMARY KEY,
		size INTEGER NOT NULL,
		pushed INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL,
		last_access INTEGER NOT NULL
	);
	${linkTable('repository_blobs', 'blobs')}
	CREATE INDEX repository_blobs_digest ON repository_blobs (digest);
	CREATE TABLE manifests (
		digest TEXT PRIMARY KEY,
		media_type TEXT NOT NULL,
		size INTEGER NOT NULL,
		content BLOB NOT NULL,
		pushed INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL,
		last_access INTEGER NOT NULL
	);
	${linkTable('repository_manifests', 'manifests')}
	CREATE TABLE manifest_references (
		manifest_digest TEXT NOT NULL REFERENCES manifests (digest) ON DELETE CASCADE,
		reference_digest TEXT NOT NULL,
		PRIMARY KEY (manifest_digest, reference_digest)
	) WITHOUT ROWID;
	CREATE INDEX manifest_references_reference ON manifest_references (reference_digest);
	CREATE TABLE tags (
		repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
		tag TEXT NOT NULL,
		digest TEXT NOT NULL,
		fetched_at INTEGER NOT NULL,
		checked_at INTEGER NOT NULL,
		PRIMARY KEY (repository_id, tag)
	) WITHOUT ROWID;
	`,
	`
	CREATE TABLE uploads (
		id TEXT PRIMARY KEY,
		registry TEXT NOT NULL,
		name TEXT NOT NULL,
		size INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE INDEX uploads_updated ON uploads (updated_at);
	CREATE TABLE referrers (
		repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
		subject TEXT NOT NULL,
		digest TEXT NOT NULL,
		media_type TEXT NOT NULL,
		artifact_type TEXT,
		size INTEGER NOT NULL,
		annotations TEXT,
		PRIMARY KEY (repository_id, subject, digest)
	) WITHOUT ROWID;
	`,
	`
	CREATE TABLE fills (
		digest TEXT PRIMARY KEY,
		owner TEXT NOT NULL,
		started_at INTEGER NOT NULL
	);
	CREATE TABLE settings (
		name TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);
	`,
	cacheGeneration,
	tagHistoryAndPins,
];

/** A migration as SQLite runs it. */
export function forSqlite(migration: string | DialectMigration): string {
	return typeof migration === 'string' ? migration : migration.sqlite;
}

/**
 * The same migrations for PostgreSQL: the few words the two dialects spell
 * differently, translated. Times are milliseconds, so integers are 64-bit.
 */
export function forPostgres(migration: string | DialectMigration): string {
	if (typeof migration !== 'string') {
		return migration.postgres;
	}

	return migration
		.replaceAll('INTEGER PRIMARY KEY', 'BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY')
		.replaceAll('INTEGER', 'BIGINT')
		.replaceAll('BLOB', 'BYTEA')
		.replaceAll(') WITHOUT ROWID;', ');');
}
