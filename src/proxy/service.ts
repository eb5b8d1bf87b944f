/** The read service for cached namespaces: manifests, blobs and tags through the cache. */
import {type CachedTarget} from '../namespaces.js';
import {type BlobResult, type ManifestResult, type ReadService, type TagList, type TagPage} from '../services.js';
import {type MetadataStore} from '../store/metadata.js';
import {type UpstreamClient, pullScope} from '../upstream/client.js';
import {RegistryError, isUpstreamFailure} from '../v2/errors.js';
import {type Digest, type Reference, parseDigest} from '../v2/grammar.js';
import {indexChildren} from '../v2/manifest.js';
import {accepts, isIndexType} from '../v2/media-types.js';
import {paginate} from '../v2/pagination.js';
import {type ProxyBlobs} from './blobs.js';
import {type ProxyManifests} from './manifests.js';
import {checkUpstreamStatus} from './upstream-status.js';

export class ProxyService implements ReadService<CachedTarget> {
	constructor(
		private readonly manifests: ProxyManifests,
		private readonly blobs: ProxyBlobs,
		private readonly metadata: MetadataStore,
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

const DEFAULT_PLATFORM = {os: 'linux', architecture: 'amd64'};

/**
 * Serves what the client's Accept allows. A client that cannot take a
 * manifest list gets the linux/amd64 image, as with the reference registry;
 * otherwise an unacceptable type is MANIFEST_UNKNOWN.
 */
export async function negotiate(
	result: ManifestResult,
	accept: string[],
	byDigest: (digest: Digest) => Promise<ManifestResult>,
): Promise<ManifestResult> {
	const {mediaType} = result.manifest;
	if (accepts(accept, mediaType)) {
		return result;
	}

	if (isIndexType(mediaType)) {
		const child = indexChildren(JSON.parse(result.manifest.content.toString('utf8'))).find(
			entry => entry.platform?.os === DEFAULT_PLATFORM.os && entry.platform.architecture === DEFAULT_PLATFORM.architecture,
		);
		if (child) {
			const resolved = await byDigest(parseDigest(child.digest));
			if (accepts(accept, resolved.manifest.mediaType)) {
				return {...resolved, warning: resolved.warning ?? result.warning};
			}
		}
	}

	throw new RegistryError('MANIFEST_UNKNOWN', {
		message: `manifest is ${mediaType}, which the Accept header does not allow`,
		detail: {mediaType, accept},
	});
}
