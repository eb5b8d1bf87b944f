/** The read service for cached namespaces: manifests, blobs and tags through the cache. */
import {type CachedTarget} from '../service/namespaces.js';
import {negotiate} from '../service/negotiate.js';
import {type BlobResult, type ManifestResult, type ReadService, type TagList, type TagPage} from '../service/read-service.js';
import {type ReadIndex} from '../store/metadata.js';
import {type UpstreamClient, pullScope} from '../upstream/client.js';
import {RegistryError, isUpstreamFailure} from '../v2/errors.js';
import {type Digest, type Reference} from '../v2/grammar.js';
import {paginate} from '../v2/pagination.js';
import {type ProxyBlobs} from './blobs.js';
import {type ProxyManifests} from './manifests.js';
import {checkUpstreamStatus} from './upstream-status.js';

export class ProxyService implements ReadService<CachedTarget> {
	constructor(
		private readonly manifests: ProxyManifests,
		private readonly blobs: ProxyBlobs,
		private readonly metadata: Pick<ReadIndex, 'listTags'>,
		private readonly upstream: (name: string) => UpstreamClient,
	) {}

	async getManifest(target: CachedTarget, reference: Reference, accept: string[]): Promise<ManifestResult> {
		const result = await this.manifests.get(target, reference);
		return negotiate(result, accept, async digest => this.manifests.get(target, {kind: 'digest', digest}));
	}

	async getBlob(target: CachedTarget, digest: Digest): Promise<BlobResult> {
		return this.blobs.get(target, digest);
	}

	async statBlob(target: CachedTarget, digest: Digest): Promise<number> {
		return this.blobs.stat(target, digest);
	}

	async listTags(target: CachedTarget, page: TagPage): Promise<TagList> {
		if (!target.upstream.offline) {
			try {
				const searchParams = new URLSearchParams();
				if (page.n !== undefined) {
					searchParams.set('n', String(page.n));
				}

				if (page.last !== undefined) {
					searchParams.set('last', page.last);
				}

				const response = await this.upstream(target.upstream.name).request('GET', `/v2/${target.remoteName}/tags/list`, {
					scope: pullScope(target.remoteName),
					kind: 'tags',
					searchParams,
				});
				checkUpstreamStatus(
					response.status,
					target,
					() => new RegistryError('NAME_UNKNOWN', {detail: {upstream: target.upstream.name, repository: target.remoteName}}),
				);

				const body = JSON.parse(response.body.toString('utf8')) as {tags?: unknown};
				const tags = Array.isArray(body.tags) ? body.tags.filter((tag): tag is string => typeof tag === 'string') : [];
				const hasNext = typeof response.headers.link === 'string' && response.headers.link.includes('rel="next"');
				return {name: target.clientName, tags, next: hasNext ? tags.at(-1) : undefined};
			} catch (error) {
				if (!isUpstreamFailure(error) && !(error instanceof SyntaxError)) {
					throw error;
				}
			}
		}

		const cached = await this.metadata.listTags(target.repo);
		if (cached.length === 0) {
			throw new RegistryError('NAME_UNKNOWN', {detail: {repository: target.remoteName, reason: 'upstream unavailable and nothing cached'}});
		}

		return {name: target.clientName, ...paginate(cached, page)};
	}
}
