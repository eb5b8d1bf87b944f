/**
 * The fill layer: a blob the store does not hold is fetched from the
 * upstream once per digest in this process, however many clients ask. The
 * download goes to a temp file while it is hashed, every client reads the
 * growing file, and the blob is recorded only after its digest checks (see
 * fill.ts). Quota room is made before the first byte is written.
 */
import {type WriteIndex} from '../store/metadata.js';
import {RegistryError} from '../v2/errors.js';
import {type Digest} from '../v2/grammar.js';
import {type Fill, type FillStore} from './fill.js';
import {FillRegistry} from './registry.js';
import {type BlobOutcome, type BlobRequest, type BlobResult, type BlobSource} from './source.js';
import {type StoredBlobs} from './stored.js';

/** Room under the storage quota: made before a fill writes, trimmed after it landed. */
export type Quota = {reserve(size: number, digest?: string): Promise<void>; settle(): void};

export type UpstreamFillsDeps = {
	content: FillStore;
	index: Pick<WriteIndex, 'putBlob' | 'linkBlob'>;
	quota?: Quota;
	/** Bytes received from an upstream, per chunk (metrics). */
	onFetched?: (upstream: string, bytes: number) => void;
	/** An upstream body broke at byte `from` and the fill asks for the rest (log, metrics). */
	onResume?: (upstream: string, digest: Digest, from: number, error: Error) => void;
	now?: () => number;
};

export class UpstreamFills implements BlobSource {
	readonly #fills = new FillRegistry();
	readonly #now: () => number;

	constructor(
		private readonly below: StoredBlobs,
		private readonly deps: UpstreamFillsDeps,
	) {
		this.#now = deps.now ?? Date.now;
	}

	/** Fills in flight in this process. */
	get size(): number {
		return this.#fills.size;
	}

	/** This process's fill of `digest`, while it runs. */
	running(digest: Digest): Fill | undefined {
		return this.#fills.get(digest);
	}

	async find(request: BlobRequest): Promise<BlobResult | undefined> {
		const stored = await this.below.find(request);
		if (stored) {
			return stored;
		}

		const fill = this.#fills.get(request.digest);
		if (!fill || !(await this.below.mayShare(request, fill.origin))) {
			return undefined;
		}

		return this.#join(request);
	}

	async get(request: BlobRequest): Promise<BlobResult> {
		const stored = await this.below.find(request);
		if (stored) {
			return stored;
		}

		if (request.origin.offline) {
			throw notCachedOffline(request.digest);
		}

		const running = this.#fills.get(request.digest);
		if (running && !(await this.below.mayShare(request, running.origin))) {
			throw request.origin.unknown(request.digest);
		}

		return this.#join(request);
	}

	async mayShare(request: BlobRequest, origin: string | undefined): Promise<boolean> {
		return this.below.mayShare(request, origin);
	}

	/** Joins this process's fill of the digest or starts one; resolves once the upstream answered. */
	async #join(request: BlobRequest): Promise<BlobResult> {
		const {digest, repo, origin} = request;
		const {index, quota, onFetched} = this.deps;
		const {fill, started} = this.#fills.join(
			digest,
			this.deps.content,
			async from => origin.open(digest, from),
			async size => {
				await index.putBlob(repo, {digest: digest.value, size, pushed: false, now: this.#now()});
				quota?.settle();
			},
			{
				origin: repo.registry,
				reserve: quota ? async size => quota.reserve(size, digest.value) : undefined,
				onChunk: onFetched ? bytes => onFetched(repo.registry, bytes) : undefined,
				onResume: (from, error) => this.deps.onResume?.(repo.registry, digest, from, error),
			},
		);
		if (!started) {
			// Another repository's fill: link this one too once the bytes are in.
			fill.done.then(async () => index.linkBlob(repo, digest.value)).catch(() => undefined);
		}

		await fill.ready;
		return this.#result(request, fill, started ? 'miss' : 'joined');
	}

	#result(request: BlobRequest, fill: Fill, outcome: BlobOutcome): BlobResult {
		if (fill.state === 'done' && fill.size !== undefined) {
			return {...this.below.result(request, fill.size), outcome};
		}

		return {size: fill.size, outcome, open: range => fill.createReader(range)};
	}

	async drain(): Promise<void> {
		await this.#fills.drain();
	}
}

export function notCachedOffline(digest: Digest): RegistryError {
	return new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value, reason: 'upstream is offline and this blob is not cached'}});
}
