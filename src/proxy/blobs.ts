/**
 * Blobs of cached namespaces: served from the store when we have them,
 * otherwise through the single-flight fill (see blob-fill.ts).
 */
import {type CachedTarget} from '../namespaces.js';
import {type BlobResult} from '../services.js';
import {type AccessRecorder} from '../store/access.js';
import {type BlobStore} from '../store/blob-store.js';
import {type MetadataStore} from '../store/metadata.js';
import {type UpstreamClient, pullScope} from '../upstream/client.js';
import {RegistryError, isUpstreamFailure} from '../v2/errors.js';
import {type Digest} from '../v2/grammar.js';
import {type ClusterFills} from '../cluster/fills.js';
import {type Fill, type FillRegistry, type FillSource} from './blob-fill.js';
import {checkUpstreamStatus} from './upstream-status.js';

export type ProxyBlobDeps = {
	metadata: MetadataStore;
	blobs: BlobStore;
	fills: FillRegistry;
	upstream: (name: string) => UpstreamClient;
	access: AccessRecorder;
	now?: () => number;
	/** hit (from the store), miss (a fill started), joined (served from a fill in flight). */
	onResult?: (upstream: string, outcome: 'hit' | 'miss' | 'joined') => void;
	onFetched?: (upstream: string, bytes: number) => void;
	/** Makes room under the quota before a fill writes, and trims after it landed. */
	quota?: {reserve(size: number): Promise<void>; settle(): void};
	/** With several replicas: one fill per blob for all of them (see cluster/fills.ts). */
	cluster?: ClusterFills;
};

export class ProxyBlobs {
	readonly #now: () => number;

	constructor(private readonly deps: ProxyBlobDeps) {
		this.#now = deps.now ?? Date.now;
	}

	/** A committed blob this repository may read, or undefined. */
	async #local(target: CachedTarget, digest: Digest): Promise<number | undefined> {
		const {metadata} = this.deps;
		const record = await metadata.getBlobFor(target.repo, digest.value);
		if (!record) {
			return undefined;
		}

		const size = await this.deps.blobs.size(digest);
		if (size === undefined) {
			// The row outlived its file (deleted by hand, or a crash between the two): forget it and fetch again.
			await metadata.deleteBlobRecord(digest.value);
			return undefined;
		}

		if (!record.linked) {
			// Known under this upstream (its registries share layers across repositories) or confirmed by a HEAD.
			if (!(await metadata.registryHasBlob(target.repo.registry, digest.value)) && !(await this.#upstreamHas(target, digest))) {
				return undefined;
			}

			await metadata.linkBlob(target.repo, digest.value);
		}

		this.deps.access.touch('blob', digest.value);
		return size;
	}

	/**
	 * Whether a fill from `origin` may serve this repository: bytes another
	 * upstream is bringing in go only to names whose upstream has them too.
	 */
	async #mayShare(target: CachedTarget, digest: Digest, origin: string | undefined): Promise<boolean> {
		return (
			origin === undefined ||
			origin === target.repo.registry ||
			(await this.deps.metadata.registryHasBlob(target.repo.registry, digest.value)) ||
			this.#upstreamHas(target, digest)
		);
	}

	async #upstreamHas(target: CachedTarget, digest: Digest): Promise<boolean> {
		if (target.upstream.offline) {
			return true;
		}

		try {
			return (await this.#head(target, digest)) !== undefined;
		} catch (error) {
			// The bytes are verified and immutable; when the upstream cannot say, serve them.
			return isUpstreamFailure(error);
		}
	}

	async #head(target: CachedTarget, digest: Digest): Promise<number | undefined> {
		const response = await this.deps.upstream(target.upstream.name).request('HEAD', `/v2/${target.remoteName}/blobs/${digest.value}`, {
			scope: pullScope(target.remoteName),
			kind: 'blob',
		});
		if (response.status === 404) {
			return undefined;
		}

		checkUpstreamStatus(response.status, target, () => blobUnknown(digest, target));
		const length = Number(response.headers['content-length']);
		return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
	}

	async stat(target: CachedTarget, digest: Digest): Promise<number> {
		const local = await this.#local(target, digest);
		if (local !== undefined) {
			return local;
		}

		const fill = this.deps.fills.get(digest);
		if (fill?.size !== undefined) {
			return fill.size;
		}

		if (target.upstream.offline) {
			throw new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value, reason: 'upstream is offline and this blob is not cached'}});
		}

		const size = await this.#head(target, digest);
		if (size === undefined) {
			throw new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value}});
		}

		return size;
	}

	async get(target: CachedTarget, digest: Digest): Promise<BlobResult> {
		const local = await this.#local(target, digest);
		if (local !== undefined) {
			this.deps.onResult?.(target.upstream.name, 'hit');
			return {size: local, stored: true, open: range => this.deps.blobs.createReadStream(digest, range, local)};
		}

		if (target.upstream.offline) {
			throw new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value, reason: 'upstream is offline and this blob is not cached'}});
		}

		const start = async (): Promise<Fill> => this.#fill(target, digest);
		if (this.deps.cluster) {
			const result = await this.deps.cluster.get(digest, target.repo.registry, {
				start,
				found: async () => this.#local(target, digest),
				mayShare: async origin => this.#mayShare(target, digest, origin),
			});
			if (result.source !== 'local') {
				this.deps.onResult?.(target.upstream.name, result.source === 'stored' ? 'hit' : 'joined');
			}

			return result;
		}

		const fill = await start();
		if (fill.state === 'done') {
			return {size: fill.size, stored: true, open: range => this.deps.blobs.createReadStream(digest, range, fill.size)};
		}

		return {size: fill.size, open: range => fill.createReader(range)};
	}

	/** Joins this process's fill of `digest` or starts one; resolves once the upstream answered. */
	async #fill(target: CachedTarget, digest: Digest): Promise<Fill> {
		const {metadata} = this.deps;
		const running = this.deps.fills.get(digest);
		if (running && !(await this.#mayShare(target, digest, running.origin))) {
			throw blobUnknown(digest, target);
		}

		const {fill, started} = this.deps.fills.join(
			digest,
			this.deps.blobs,
			async () => this.#openUpstream(target, digest),
			async size => {
				await metadata.putBlob(target.repo, {digest: digest.value, size, pushed: false, now: this.#now()});
				this.deps.quota?.settle();
			},
			{
				reserve: this.deps.quota ? async size => this.deps.quota!.reserve(size) : undefined,
				onChunk: this.deps.onFetched ? bytes => this.deps.onFetched!(target.upstream.name, bytes) : undefined,
			},
		);
		this.deps.onResult?.(target.upstream.name, started ? 'miss' : 'joined');
		if (started) {
			fill.origin = target.repo.registry;
		} else {
			// Another repository's fill: link this one too once the bytes are in.
			fill.done.then(async () => metadata.linkBlob(target.repo, digest.value)).catch(() => undefined);
		}

		await fill.ready;
		return fill;
	}

	async #openUpstream(target: CachedTarget, digest: Digest): Promise<FillSource> {
		const response = await this.deps.upstream(target.upstream.name).stream(`/v2/${target.remoteName}/blobs/${digest.value}`, {
			scope: pullScope(target.remoteName),
			kind: 'blob',
		});
		checkUpstreamStatus(response.status, target, () => blobUnknown(digest, target));

		const length = Number(response.headers['content-length']);
		return {size: Number.isSafeInteger(length) && length >= 0 ? length : undefined, body: response.body};
	}
}

function blobUnknown(digest: Digest, target: CachedTarget): RegistryError {
	return new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value, upstream: target.upstream.name}});
}
