/**
 * Blobs of cached namespaces: a request becomes a `BlobRequest` for the blob
 * layers (fill/source.ts), with the repository's upstream as its origin.
 */
import {type BlobOutcome, type BlobRequest, type BlobResult, type BlobSource} from '../fill/source.js';
import {notCachedOffline} from '../fill/upstream-fills.js';
import {type CachedTarget} from '../service/namespaces.js';
import {type UpstreamClient} from '../upstream/client.js';
import {type Digest} from '../v2/grammar.js';
import {UpstreamOrigin} from './origin.js';

export type ProxyBlobDeps = {
	/** The top blob layer: the cluster layer with several replicas, else the fill layer. */
	source: BlobSource;
	upstream: (name: string) => UpstreamClient;
	onResult?: (upstream: string, outcome: BlobOutcome) => void;
};

export class ProxyBlobs {
	constructor(private readonly deps: ProxyBlobDeps) {}

	async stat(target: CachedTarget, digest: Digest): Promise<number> {
		const request = this.#request(target, digest);
		const found = await this.deps.source.find(request);
		if (found?.size !== undefined) {
			return found.size;
		}

		if (target.upstream.offline) {
			throw notCachedOffline(digest);
		}

		const size = await request.origin.head(digest);
		if (size === undefined) {
			throw request.origin.unknown(digest);
		}

		return size;
	}

	async get(target: CachedTarget, digest: Digest): Promise<BlobResult> {
		const result = await this.deps.source.get(this.#request(target, digest));
		this.deps.onResult?.(target.upstream.name, result.outcome);
		return result;
	}

	#request(target: CachedTarget, digest: Digest): BlobRequest {
		return {digest, repo: target.repo, origin: new UpstreamOrigin(this.deps.upstream(target.upstream.name), target)};
	}
}
