/**
 * The metadata store: everything about repositories, tags, manifests and
 * blobs except the blob bytes. SQLite is the embedded driver (sqlite/),
 * PostgreSQL the shared one (postgres/). Every method returns a promise, so a
 * driver that talks over the network fits the same interface as the
 * synchronous embedded one.
 *
 * The interface is cut by role, so each caller can ask for only what it uses:
 * ReadIndex (the pull read path), WriteIndex (what fills and pushes record),
 * UploadIndex (push sessions) and Housekeeping (quota, GC, verify, listings,
 * access times). MetadataStore is all of them.
 *
 * A repository is identified by its registry and its name: `registry` is the
 * upstream's configured name for cached content and LOCAL_REGISTRY ('') for
 * pushed content, so two upstreams with the same repository name never mix.
 */
export const LOCAL_REGISTRY = '';

export type RepoKey = {registry: string; name: string};

/** A manifest GC takes, with the repository that last held it when that can still be told. */
export type GarbageManifest = {digest: string; mediaType: string; size: number; registry: string | null; name: string | null};

/** What a GC run takes, and what the grace period kept back (touched since `before`). */
export type GarbageReport = {
	manifests: GarbageManifest[];
	blobs: Array<{digest: string; size: number}>;
	kept: {manifests: number; blobs: number};
};

export type TagRecord = {
	digest: string;
	fetchedAt: number;
	checkedAt: number;
	/** Set when the tag is pinned (then `digest` is the pinned one): served without asking the upstream. */
	pinnedAt?: number;
};

/** One stretch of time an upstream had a tag at one digest. */
export type TagSighting = {digest: string; firstSeen: number; lastSeen: number};

export type PinRecord = RepoKey & {tag: string; digest: string; pinnedAt: number; pinnedBy: string | null};

export type ManifestRecord = {digest: string; mediaType: string; content: Buffer};

export type BlobRecord = {digest: string; size: number; pushed: boolean; lastAccess: number};

export type PutManifest = {
	repo: RepoKey;
	manifest: ManifestRecord;
	tag?: string;
	/** Pushed content is never evicted; cached content is. */
	pushed: boolean;
	/** Digests of the blobs and child manifests this manifest references. */
	references?: string[];
	now: number;
};

export type UploadRecord = {id: string; repo: RepoKey; size: number; createdAt: number; updatedAt: number};

export type ReferrerRecord = {
	digest: string;
	mediaType: string;
	artifactType?: string;
	size: number;
	annotations?: Record<string, string>;
};

/** The pull read path: tags, manifests, blobs and referrers as a client asks for them. */
export interface ReadIndex {
	getTag(repo: RepoKey, tag: string): Promise<TagRecord | undefined>;
	/** A tag with the manifest it points at, in one lookup (the read path of manifests by tag). */
	getTaggedManifest(repo: RepoKey, tag: string): Promise<(TagRecord & {manifest: ManifestRecord}) | undefined>;
	listTags(repo: RepoKey): Promise<string[]>;
	getManifest(digest: string): Promise<ManifestRecord | undefined>;
	hasRepoManifest(repo: RepoKey, digest: string): Promise<boolean>;
	/** The manifest if `repo` links it, in one lookup. */
	getRepoManifest(repo: RepoKey, digest: string): Promise<ManifestRecord | undefined>;
	getBlob(digest: string): Promise<BlobRecord | undefined>;
	/** The blob with whether `repo` links it, in one lookup (the read path of cached blobs). */
	getBlobFor(repo: RepoKey, digest: string): Promise<(BlobRecord & {linked: boolean}) | undefined>;
	/** Whether `digest` is linked to `repo`. */
	hasRepoBlob(repo: RepoKey, digest: string): Promise<boolean>;
	/** Whether any repository of `registry` links `digest`. */
	registryHasBlob(registry: string, digest: string): Promise<boolean>;
	repositoryExists(repo: RepoKey): Promise<boolean>;
	/** Repositories with at least one manifest, sorted by (registry, name). */
	listRepositories(): Promise<RepoKey[]>;
	listReferrers(repo: RepoKey, subject: string): Promise<ReferrerRecord[]>;
	/**
	 * A number that grows whenever something the mirror answered may have
	 * changed (a tag moved or removed, content unlinked or deleted), by any
	 * process sharing the store. SQLite answers at once (a local read).
	 */
	cacheGeneration(): number | Promise<number>;
	/** Another process sharing the store says it changed something: the next cacheGeneration() must look. */
	generationChanged(): void;
}

/** What fills and pushes record, and the deletes of local namespaces. */
export interface WriteIndex {
	putManifest(input: PutManifest): Promise<void>;
	/** Records that the upstream still has `tag` at the digest we hold. */
	markTagChecked(repo: RepoKey, tag: string, now: number): Promise<void>;
	/** Inserts the blob row (if new) and links it to the repository, in one transaction. */
	putBlob(repo: RepoKey, blob: {digest: string; size: number; pushed: boolean; now: number}): Promise<void>;
	linkBlob(repo: RepoKey, digest: string): Promise<void>;
	deleteBlobRecord(digest: string): Promise<void>;
	putReferrer(repo: RepoKey, subject: string, referrer: ReferrerRecord): Promise<void>;
	deleteTag(repo: RepoKey, tag: string): Promise<boolean>;
	/** Unlinks a manifest from a repository with its tags and referrer entries. */
	deleteRepoManifest(repo: RepoKey, digest: string): Promise<boolean>;
	unlinkBlob(repo: RepoKey, digest: string): Promise<boolean>;
}

/** Tag history (what each upstream tag pointed at, and when) and pins. */
export interface TagIndex {
	/** Records that the upstream has `tag` at `digest` now: extends the latest sighting, or starts a new one when the tag moved. */
	recordTagSeen(repo: RepoKey, tag: string, digest: string, now: number): Promise<void>;
	/** Every sighting of `tag`, oldest first. */
	tagHistory(repo: RepoKey, tag: string): Promise<TagSighting[]>;
	/** Points `tag` at `digest` (which the repository must link) and pins it there, in one transaction. */
	pinTag(repo: RepoKey, tag: string, digest: string, now: number, by: string | null): Promise<void>;
	/** Removes a pin; false when there was none. */
	unpinTag(repo: RepoKey, tag: string): Promise<boolean>;
	getPin(repo: RepoKey, tag: string): Promise<PinRecord | undefined>;
	listPins(): Promise<PinRecord[]>;
}

/** Upload sessions of pushes (local namespaces); the bytes are in the blob store's UploadStore. */
export interface UploadIndex {
	createUpload(upload: {id: string; repo: RepoKey; now: number}): Promise<void>;
	getUpload(id: string): Promise<UploadRecord | undefined>;
	setUploadSize(id: string, size: number, now: number): Promise<void>;
	deleteUpload(id: string): Promise<void>;
	uploadsIdleSince(before: number): Promise<UploadRecord[]>;
}

/** Quota, eviction, garbage collection, verification, listings and access times. */
export interface Housekeeping {
	/** Batched access-time updates (see AccessRecorder). */
	touch(entries: ReadonlyArray<{kind: 'blob' | 'manifest'; digest: string; at: number}>): Promise<void>;
	/** Every blob digest the store knows, for start-up consistency checks. */
	allBlobDigests(): Promise<string[]>;
	/** Bytes of cached (evictable) blobs and manifests. */
	cachedBytes(): Promise<number>;
	/** Pushed bytes (never evicted). */
	pushedBytes(): Promise<number>;
	/** The least recently used cached manifest that is neither pushed nor pinned (nor a child of a pinned index), or undefined. */
	leastRecentlyUsedCachedManifest(): Promise<{digest: string; lastAccess: number} | undefined>;
	/**
	 * Removes a cached manifest from every repository (tags, links, references)
	 * and the cached blobs no remaining manifest references. Returns the removed blobs.
	 */
	evictManifest(digest: string): Promise<Array<{digest: string; size: number}>>;
	/** Cached blobs that no manifest references and nobody touched since `before`. */
	unreferencedCachedBlobs(before: number): Promise<Array<{digest: string; size: number}>>;
	/**
	 * Mark and sweep: manifests no repository links, and blobs no linked
	 * manifest references, both untouched since `before`. With `apply` the
	 * rows are deleted; the caller removes the blob files.
	 */
	collectGarbage(before: number, apply: boolean): Promise<GarbageReport>;
	deleteBlobRecords(digests: readonly string[]): Promise<void>;
	/** Repositories with their tags, for listings. */
	describeRepositories(): Promise<Array<RepoKey & {tags: Array<{tag: string; digest: string; fetchedAt: number}>; bytes: number; lastAccess: number}>>;
}

/** One row of the dashboard's repository list. */
export type RepositorySummary = RepoKey & {tags: number; bytes: number; lastAccess: number};

export type RepositoryPageQuery = {
	/** Case-insensitive substring of the name (or the upstream's name). */
	search?: string;
	/** Only cached (from an upstream) or only pushed repositories. */
	kind?: 'cached' | 'pushed';
	offset: number;
	limit: number;
};

export type TagDetail = {tag: string; digest: string; fetchedAt: number; checkedAt: number; mediaType: string; size: number};

/** What the dashboard and purge ask: paged listings, a repository's detail, purges of cached content. */
export interface Catalog {
	/** One page of repositories with at least one manifest, ordered by (registry, name), and how many match in all. */
	repositoryPage(query: RepositoryPageQuery): Promise<{total: number; rows: RepositorySummary[]}>;
	/** A repository's tags with the manifests they point at (size and media type), sorted by tag. */
	repositoryTags(repo: RepoKey): Promise<TagDetail[]>;
	/** Manifests (indexes) that reference `digest` (at most `limit`): where an image's platform is written. */
	manifestParents(digest: string, limit: number): Promise<string[]>;
	/** The repositories that link `digest` (at most `limit`). */
	blobRepositories(digest: string, limit: number): Promise<RepoKey[]>;
	/**
	 * Forgets a repository's cached tags: with `tag`, that tag (and the link to its
	 * manifest when no other tag of the repository points there); without, every
	 * tag, manifest link, blob link and referrer of the repository. Manifests and
	 * blobs nothing links any more are left for `gc`. Returns the tags removed.
	 */
	purge(repo: RepoKey, tag?: string): Promise<{tags: string[]; manifests: number}>;
}

export interface MetadataStore extends ReadIndex, WriteIndex, UploadIndex, Housekeeping, Catalog, TagIndex {
	/**
	 * A random secret stored under `name`, made on first use: the same for
	 * every process sharing the store (replicas verify each other's tokens).
	 */
	sharedSecret(name: string): Promise<string>;
	close(): Promise<void>;
}
