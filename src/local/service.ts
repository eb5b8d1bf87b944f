/** Local (pushed) namespaces: reads. Pushes live in uploads.ts. */
import {storedBlob} from '../fill/stored.js';
import {type LocalTarget} from '../service/namespaces.js';
import {type BlobResult, type ManifestResult, type ReadService, type TagList, type TagPage} from '../service/read-service.js';
import {type AccessRecorder} from '../store/access.js';
import {type BlobContent} from '../store/blob-store.js';
import {type ManifestRecord, type ReadIndex} from '../store/metadata.js';
import {RegistryError} from '../v2/errors.js';
import {type Digest, type Reference} from '../v2/grammar.js';
import {paginate} from '../v2/pagination.js';
import {negotiate} from '../service/negotiate.js';

export class LocalService implements ReadService<LocalTarget> {
	constructor(
		protected readonly metadata: ReadIndex,
		protected readonly blobs: Pick<BlobContent, 'size' | 'createReadStream' | 'sendTo'>,
		protected readonly access: AccessRecorder,
	) {}

	async getManifest(target: LocalTarget, reference: Reference, accept: string[]): Promise<ManifestResult> {
		const byDigest = async (digest: Digest): Promise<ManifestResult> =>
			this.#found(await this.metadata.getRepoManifest(target.repo, digest.value), {digest: digest.value});
		const result =
			reference.kind === 'digest'
				? await byDigest(reference.digest)
				: this.#found((await this.metadata.getTaggedManifest(target.repo, reference.tag))?.manifest, {tag: reference.tag});
		return negotiate(result, accept, byDigest);
	}

	#found(manifest: ManifestRecord | undefined, detail: Record<string, string>): ManifestResult {
		if (!manifest) {
			throw new RegistryError('MANIFEST_UNKNOWN', {detail});
		}

		this.access.touch('manifest', manifest.digest);
		// Pushed content changes only by writes, and every write that matters moves the store's cache generation.
		return {manifest, freshUntil: Number.POSITIVE_INFINITY};
	}

	async statBlob(target: LocalTarget, digest: Digest): Promise<number> {
		if (!(await this.metadata.hasRepoBlob(target.repo, digest.value))) {
			throw new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value}});
		}

		const size = await this.blobs.size(digest);
		if (size === undefined) {
			throw new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value}});
		}

		return size;
	}

	async getBlob(target: LocalTarget, digest: Digest): Promise<BlobResult> {
		const size = await this.statBlob(target, digest);
		this.access.touch('blob', digest.value);
		return storedBlob(this.blobs, digest, size);
	}

	async listTags(target: LocalTarget, page: TagPage): Promise<TagList> {
		const tags = await this.metadata.listTags(target.repo);
		if (tags.length === 0 && !(await this.metadata.repositoryExists(target.repo))) {
			throw new RegistryError('NAME_UNKNOWN', {detail: {name: target.clientName}});
		}

		return {name: target.clientName, ...paginate(tags, page)};
	}
}
