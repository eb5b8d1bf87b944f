/**
 * The blob source layers: "give me this blob for this repository", answered
 * by layers that wrap each other behind one interface (the shape of the
 * reference registry's proxyblobstore):
 *
 *   ClusterBlobs (cluster/)   one fill per blob across replicas, peer reads
 *     -> UpstreamFills         one fill per blob in this process: upstream -> temp file -> verify -> store
 *       -> StoredBlobs         hits: committed blobs this repository may read
 *
 * Each layer calls only the one below it. What a layer needs from the
 * upstream comes with the request (`BlobOrigin`), so no layer calls back
 * into the service above it.
 */
import {type Readable, type Writable} from 'node:stream';
import {type ByteRange} from '../store/blob-store.js';
import {type RepoKey} from '../store/metadata.js';
import {type Digest} from '../v2/grammar.js';

/**
 * An upstream's answer to a blob GET: the blob's size (when announced), the
 * offset of the body's first byte in the blob (0, or where a range starts),
 * and the body.
 */
export type FillSource = {size: number | undefined; start: number; body: AsyncIterable<Uint8Array> & {destroy(error?: Error): void}};

/**
 * The upstream a cached repository's blobs come from, bound to that
 * repository's upstream name. Implemented above (proxy/), used here.
 */
export interface BlobOrigin {
	/** Configured offline: never asked; only what is cached is served. */
	readonly offline: boolean;
	/** The blob's size if the upstream has it under this repository, undefined on a 404; throws when the upstream cannot answer. */
	head(digest: Digest): Promise<number | undefined>;
	/**
	 * Starts the download, from byte `from` on when given (a resumed fill):
	 * the upstream may answer from another offset (`start`). Throws the V2
	 * error the upstream's answer means.
	 */
	open(digest: Digest, from?: number): Promise<FillSource>;
	/** The V2 error for "the upstream does not have it". */
	unknown(digest: Digest): Error;
}

export type BlobRequest = {
	digest: Digest;
	/** The repository asking; `repo.registry` names its upstream. */
	repo: RepoKey;
	origin: BlobOrigin;
	/**
	 * The client already holds bytes of this digest (a stream carrying on
	 * from another source): any verified copy will do, whichever repository
	 * or upstream brought it in.
	 */
	anyCopy?: boolean;
};

/** hit: from the store; miss: a fill started for it; joined: served from a fill already running. */
export type BlobOutcome = 'hit' | 'miss' | 'joined';

export type BlobResult = {
	/** Unknown only for an uncached blob whose upstream sent no Content-Length. */
	size: number | undefined;
	open(range?: ByteRange): Readable;
	/** Stored blobs, where the store can: writes bytes `range` to `out` and ends it (see BlobContent.sendTo). */
	send?(range: ByteRange, out: Writable): Promise<void>;
	/** The bytes are in the blob store (not a fill in progress), so a client may be redirected to them. */
	stored?: boolean;
	outcome: BlobOutcome;
};

export interface BlobSource {
	/** What this layer or one below can serve now without fetching anything: a stored blob or a fill in flight. */
	find(request: BlobRequest): Promise<BlobResult | undefined>;
	/** The blob, fetched if need be; resolves once its bytes can flow. */
	get(request: BlobRequest): Promise<BlobResult>;
	/**
	 * Whether bytes another fill is bringing in from `origin` (an upstream's
	 * name; undefined when unknown) may be served to this request: only to
	 * repositories whose upstream has the blob too.
	 */
	mayShare(request: BlobRequest, origin: string | undefined): Promise<boolean>;
}
