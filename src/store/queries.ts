/**
 * The statements both metadata drivers run as they are: `?` placeholders
 * (the PostgreSQL driver numbers them) and quoted camelCase aliases, which
 * both dialects read the same way. What the dialects spell differently stays
 * in each driver: upserts that keep the larger value (MAX against GREATEST),
 * text orderings (PostgreSQL needs COLLATE "C" for byte order), arrays.
 */
import {type ManifestRecord, type ReferrerRecord, type TagRecord, type UploadRecord} from './metadata.js';

export const SQL = {
	repoId: 'SELECT id FROM repositories WHERE registry = ? AND name = ?',
	tag: `SELECT t.digest, t.fetched_at AS "fetchedAt", t.checked_at AS "checkedAt"
		FROM tags t JOIN repositories r ON r.id = t.repository_id
		WHERE r.registry = ? AND r.name = ? AND t.tag = ?`,
	// A pin wins over the tag's own digest (a revalidation that raced the pin cannot unpin it).
	taggedManifest: `SELECT m.digest, t.fetched_at AS "fetchedAt", t.checked_at AS "checkedAt", p.pinned_at AS "pinnedAt",
			m.media_type AS "mediaType", m.content
		FROM tags t JOIN repositories r ON r.id = t.repository_id
		LEFT JOIN tag_pins p ON p.registry = r.registry AND p.name = r.name AND p.tag = t.tag
		JOIN manifests m ON m.digest = COALESCE(p.digest, t.digest)
		WHERE r.registry = ? AND r.name = ? AND t.tag = ?`,
	latestSighting: `SELECT id, digest FROM tag_history WHERE registry = ? AND name = ? AND tag = ? ORDER BY id DESC LIMIT 1`,
	extendSighting: 'UPDATE tag_history SET last_seen = ? WHERE id = ? AND last_seen < ?',
	addSighting: 'INSERT INTO tag_history (registry, name, tag, digest, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)',
	tagHistory: `SELECT digest, first_seen AS "firstSeen", last_seen AS "lastSeen" FROM tag_history
		WHERE registry = ? AND name = ? AND tag = ? ORDER BY id`,
	pinTagRow: `INSERT INTO tags (repository_id, tag, digest, fetched_at, checked_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (repository_id, tag) DO UPDATE SET digest = excluded.digest`,
	pin: `INSERT INTO tag_pins (registry, name, tag, digest, pinned_at, pinned_by) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (registry, name, tag) DO UPDATE SET digest = excluded.digest, pinned_at = excluded.pinned_at, pinned_by = excluded.pinned_by`,
	unpin: 'DELETE FROM tag_pins WHERE registry = ? AND name = ? AND tag = ?',
	getPin: `SELECT registry, name, tag, digest, pinned_at AS "pinnedAt", pinned_by AS "pinnedBy" FROM tag_pins
		WHERE registry = ? AND name = ? AND tag = ?`,
	listPins: 'SELECT registry, name, tag, digest, pinned_at AS "pinnedAt", pinned_by AS "pinnedBy" FROM tag_pins',
	/** The least recently used cached manifest the quota may evict: not pinned, nor a child of a pinned index. */
	leastRecentlyUsedCachedManifest: `SELECT digest, last_access AS "lastAccess" FROM manifests m WHERE pushed = 0
		AND NOT EXISTS (SELECT 1 FROM tag_pins p WHERE p.digest = m.digest)
		AND NOT EXISTS (SELECT 1 FROM manifest_references r JOIN tag_pins p ON p.digest = r.manifest_digest WHERE r.reference_digest = m.digest)
		ORDER BY last_access, `, // + the digest in byte order, as each dialect spells it
	markTagChecked: `UPDATE tags SET checked_at = ?
		WHERE tag = ? AND repository_id = (SELECT id FROM repositories WHERE registry = ? AND name = ?)`,
	linkManifest: 'INSERT INTO repository_manifests (repository_id, digest) VALUES (?, ?) ON CONFLICT DO NOTHING',
	setTag: `INSERT INTO tags (repository_id, tag, digest, fetched_at, checked_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (repository_id, tag) DO UPDATE
		SET digest = excluded.digest, fetched_at = excluded.fetched_at, checked_at = excluded.checked_at`,
	manifest: 'SELECT digest, media_type AS "mediaType", content FROM manifests WHERE digest = ?',
	hasRepoManifest: `SELECT 1 FROM repository_manifests m JOIN repositories r ON r.id = m.repository_id
		WHERE r.registry = ? AND r.name = ? AND m.digest = ?`,
	repoManifest: `SELECT m.digest, m.media_type AS "mediaType", m.content
		FROM repository_manifests l JOIN repositories r ON r.id = l.repository_id JOIN manifests m ON m.digest = l.digest
		WHERE r.registry = ? AND r.name = ? AND l.digest = ?`,
	blob: 'SELECT digest, size, pushed, last_access AS "lastAccess" FROM blobs WHERE digest = ?',
	blobFor: `SELECT b.digest, b.size, b.pushed, b.last_access AS "lastAccess",
			EXISTS (SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id
				WHERE r.registry = ? AND r.name = ? AND l.digest = b.digest) AS linked
		FROM blobs b WHERE b.digest = ?`,
	hasRepoBlob: `SELECT 1 FROM repository_blobs b JOIN repositories r ON r.id = b.repository_id
		WHERE r.registry = ? AND r.name = ? AND b.digest = ?`,
	registryHasBlob: `SELECT 1 FROM repository_blobs b JOIN repositories r ON r.id = b.repository_id
		WHERE r.registry = ? AND b.digest = ? LIMIT 1`,
	allBlobDigests: 'SELECT digest FROM blobs',
	cacheGeneration: 'SELECT n FROM cache_generation',
	deleteBlob: 'DELETE FROM blobs WHERE digest = ?',
	deleteTag: 'DELETE FROM tags WHERE repository_id = ? AND tag = ?',
	unlinkManifest: 'DELETE FROM repository_manifests WHERE repository_id = ? AND digest = ?',
	deleteRepoTagsOf: 'DELETE FROM tags WHERE repository_id = ? AND digest = ?',
	deleteRepoReferrer: 'DELETE FROM referrers WHERE repository_id = ? AND digest = ?',
	unlinkBlob: 'DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?',
	createUpload: 'INSERT INTO uploads (id, registry, name, size, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)',
	upload: 'SELECT id, registry, name, size, created_at AS "createdAt", updated_at AS "updatedAt" FROM uploads WHERE id = ?',
	uploadsIdleSince: 'SELECT id, registry, name, size, created_at AS "createdAt", updated_at AS "updatedAt" FROM uploads WHERE updated_at < ?',
	setUploadSize: 'UPDATE uploads SET size = ?, updated_at = ? WHERE id = ?',
	deleteUpload: 'DELETE FROM uploads WHERE id = ?',
	putReferrer: `INSERT INTO referrers (repository_id, subject, digest, media_type, artifact_type, size, annotations)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
	references: 'SELECT reference_digest AS digest FROM manifest_references WHERE manifest_digest = ?',
	deleteTagsOf: 'DELETE FROM tags WHERE digest = ?',
	deleteReferrer: 'DELETE FROM referrers WHERE digest = ?',
	deleteCachedManifest: 'DELETE FROM manifests WHERE digest = ? AND pushed = 0',
	unreferencedCachedBlobs: `SELECT digest, size FROM blobs b WHERE pushed = 0 AND last_access < ?
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.reference_digest = b.digest)
		ORDER BY last_access`,
	/**
	 * Manifests no repository links. Their repository link is gone, so the one
	 * named is the one that links most of their blobs (where they were pushed or pulled).
	 */
	unlinkedManifests: `SELECT m.digest, m.media_type AS "mediaType", m.size,
		(SELECT r.registry FROM manifest_references x JOIN repository_blobs l ON l.digest = x.reference_digest
			JOIN repositories r ON r.id = l.repository_id WHERE x.manifest_digest = m.digest
			GROUP BY r.id, r.registry, r.name ORDER BY COUNT(*) DESC, r.registry, r.name LIMIT 1) AS registry,
		(SELECT r.name FROM manifest_references x JOIN repository_blobs l ON l.digest = x.reference_digest
			JOIN repositories r ON r.id = l.repository_id WHERE x.manifest_digest = m.digest
			GROUP BY r.id, r.registry, r.name ORDER BY COUNT(*) DESC, r.registry, r.name LIMIT 1) AS name
		FROM manifests m WHERE last_access < ?
		AND NOT EXISTS (SELECT 1 FROM repository_manifests l WHERE l.digest = m.digest)
		ORDER BY m.digest`,
	unreachableBlobs: `SELECT digest, size FROM blobs b WHERE last_access < ?
		AND NOT EXISTS (
			SELECT 1 FROM manifest_references r JOIN repository_manifests l ON l.digest = r.manifest_digest
			WHERE r.reference_digest = b.digest)
		ORDER BY digest`,
	/** What GC would take but for the grace period: unlinked manifests and unreachable blobs touched since `?`. */
	graceKept: `SELECT
		(SELECT COUNT(*) FROM manifests m WHERE last_access >= ?
			AND NOT EXISTS (SELECT 1 FROM repository_manifests l WHERE l.digest = m.digest)) AS manifests,
		(SELECT COUNT(*) FROM blobs b WHERE last_access >= ?
			AND NOT EXISTS (
				SELECT 1 FROM manifest_references r JOIN repository_manifests l ON l.digest = r.manifest_digest
				WHERE r.reference_digest = b.digest)) AS blobs`,
	repoTagDetails: `SELECT t.tag, t.digest, t.fetched_at AS "fetchedAt", t.checked_at AS "checkedAt", m.media_type AS "mediaType", m.size
		FROM tags t JOIN manifests m ON m.digest = t.digest WHERE t.repository_id = ?`,
	blobRepositories: `SELECT r.registry, r.name FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id
		WHERE l.digest = ? LIMIT ?`,
	manifestParents: 'SELECT manifest_digest AS digest FROM manifest_references WHERE reference_digest = ? LIMIT ?',
	repoTagsAll: 'SELECT tag FROM tags WHERE repository_id = ?',
	deleteRepoTags: 'DELETE FROM tags WHERE repository_id = ?',
	deleteRepoReferrers: 'DELETE FROM referrers WHERE repository_id = ?',
	deleteRepoManifestLinks: 'DELETE FROM repository_manifests WHERE repository_id = ?',
	deleteRepoBlobLinks: 'DELETE FROM repository_blobs WHERE repository_id = ?',
	deleteRepository: 'DELETE FROM repositories WHERE id = ?',
	tagTarget: 'SELECT digest FROM tags WHERE repository_id = ? AND tag = ?',
	otherTagOf: 'SELECT 1 FROM tags WHERE repository_id = ? AND digest = ? LIMIT 1',
} as const;

/**
 * The dashboard's page of repositories: the WHERE clause and its parameters
 * for a search and kind, shared by the count and the page. `collate` is what
 * the dialect needs for byte order ('' on SQLite, ' COLLATE "C"' on PostgreSQL).
 */
export function repositoryPageSql(query: {search?: string; kind?: 'cached' | 'pushed'}, collate: string): {count: string; page: string; parameters: unknown[]} {
	const where = ['EXISTS (SELECT 1 FROM repository_manifests l WHERE l.repository_id = r.id)'];
	const parameters: unknown[] = [];
	if (query.search) {
		// Names are lower case by grammar; upstream names may not be.
		where.push(`(r.name LIKE ? ESCAPE '\\' OR LOWER(r.registry) LIKE ? ESCAPE '\\')`);
		const pattern = `%${query.search.toLowerCase().replace(/[\\%_]/g, char => `\\${char}`)}%`;
		parameters.push(pattern, pattern);
	}

	if (query.kind) {
		where.push(query.kind === 'pushed' ? "r.registry = ''" : "r.registry <> ''");
	}

	const clause = where.join(' AND ');
	return {
		count: `SELECT COUNT(*) AS total FROM repositories r WHERE ${clause}`,
		page: `SELECT r.registry, r.name,
				(SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id) AS tags,
				CAST(COALESCE((SELECT SUM(b.size) FROM repository_blobs l JOIN blobs b ON b.digest = l.digest WHERE l.repository_id = r.id), 0) AS BIGINT) AS bytes,
				COALESCE((SELECT MAX(m.last_access) FROM repository_manifests l JOIN manifests m ON m.digest = l.digest WHERE l.repository_id = r.id), 0) AS "lastAccess"
			FROM repositories r WHERE ${clause}
			ORDER BY r.registry${collate}, r.name${collate} LIMIT ? OFFSET ?`,
		parameters,
	};
}

/** The parameters of SQL.putReferrer, in order. */
export function referrerParams(repoId: number, subject: string, referrer: ReferrerRecord): unknown[] {
	return [
		repoId,
		subject,
		referrer.digest,
		referrer.mediaType,
		referrer.artifactType ?? null,
		referrer.size,
		referrer.annotations ? JSON.stringify(referrer.annotations) : null,
	];
}

/** The parameters of SQL.createUpload, in order. */
export function uploadParams(upload: {id: string; repo: {registry: string; name: string}; now: number}): unknown[] {
	return [upload.id, upload.repo.registry, upload.repo.name, upload.now, upload.now];
}

export type TaggedRow = Omit<TagRecord, 'pinnedAt'> & {pinnedAt: number | null; mediaType: string; content: Buffer};

export function toTagged(row: TaggedRow): TagRecord & {manifest: ManifestRecord} {
	return {
		digest: row.digest,
		fetchedAt: row.fetchedAt,
		checkedAt: row.checkedAt,
		...(row.pinnedAt === null ? {} : {pinnedAt: row.pinnedAt}),
		manifest: {digest: row.digest, mediaType: row.mediaType, content: row.content},
	};
}

export type UploadRow = {id: string; registry: string; name: string; size: number; createdAt: number; updatedAt: number};

export function toUpload(row: UploadRow): UploadRecord {
	return {id: row.id, repo: {registry: row.registry, name: row.name}, size: row.size, createdAt: row.createdAt, updatedAt: row.updatedAt};
}

export type ReferrerRow = {digest: string; mediaType: string; artifactType: string | null; size: number; annotations: string | null};

export function toReferrer(row: ReferrerRow): ReferrerRecord {
	return {
		digest: row.digest,
		mediaType: row.mediaType,
		size: row.size,
		...(row.artifactType === null ? {} : {artifactType: row.artifactType}),
		...(row.annotations === null ? {} : {annotations: JSON.parse(row.annotations) as Record<string, string>}),
	};
}
