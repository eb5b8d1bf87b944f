/**
 * Versioned schema. Each entry runs once, in order, inside a transaction;
 * PRAGMA user_version records how many have run. Append, never edit.
 */
export const MIGRATIONS: readonly string[] = [
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
	CREATE TABLE repository_blobs (
		repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
		digest TEXT NOT NULL REFERENCES blobs (digest) ON DELETE CASCADE,
		PRIMARY KEY (repository_id, digest)
	) WITHOUT ROWID;
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
	CREATE TABLE repository_manifests (
		repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
		digest TEXT NOT NULL REFERENCES manifests (digest) ON DELETE CASCADE,
		PRIMARY KEY (repository_id, digest)
	) WITHOUT ROWID;
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
];
