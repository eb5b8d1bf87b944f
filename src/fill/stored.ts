/**
 * The bottom blob layer: hits. A committed blob is served to a repository
 * that links it, or whose upstream vouches for it (another repository of
 * the same upstream links it, or the upstream answers a HEAD for it under
 * this repository's name); a blob another upstream brought in is never
 * handed out under a name whose upstream does not have it.
 */
import {type AccessRecorder} from '../store/access.js';
import {type BlobContent} from '../store/blob-store.js';
import {type ReadIndex, type WriteIndex} from '../store/metadata.js';
import {RegistryError, isUpstreamFailure} from '../v2/errors.js';
import {type Digest} from '../v2/grammar.js';
import {type BlobRequest, type BlobResult, type BlobSource} from './source.js';

export type StoredBlobsDeps = {
	index: Pick<ReadIndex, 'getBlob' | 'getBlobFor' | 'registryHasBlob'> & Pick<WriteIndex, 'linkBlob' | 'deleteBlobRecord'>;
	content: Pick<BlobContent, 'size' | 'createReadStream' | 'sendTo'>;
	access: Pick<AccessRecorder, 'touch'>;
};

export class StoredBlobs implements BlobSource {
	/**
	 * The upstream's answer to "do you have it?", once per request: the layers
	 * above look again after waiting for a lock or a fill, and the answer does
	 * not change meanwhile.
	 */
	readonly #asked = new WeakMap<BlobRequest, Promise<boolean>>();

	constructor(private readonly deps: StoredBlobsDeps) {}

	async find(request: BlobRequest): Promise<BlobResult | undefined> {
		const size = request.anyCopy ? await this.#anyCopy(request) : await this.#forRepository(request);
		if (size === undefined) {
			return undefined;
		}

		this.deps.access.touch('blob', request.digest.value);
		return this.result(request, size);
	}

	async get(request: BlobRequest): Promise<BlobResult> {
		const found = await this.find(request);
		if (!found) {
			throw new RegistryError('BLOB_UNKNOWN', {detail: {digest: request.digest.value}});
		}

		return found;
	}

	async mayShare(request: BlobRequest, origin: string | undefined): Promise<boolean> {
		return request.anyCopy === true || origin === undefined || origin === request.repo.registry || this.#vouched(request);
	}

	/** A stored blob of `size` bytes as a result. */
	result(request: BlobRequest, size: number): BlobResult {
		return {...storedBlob(this.deps.content, request.digest, size), outcome: 'hit'};
	}

	async #anyCopy({digest}: BlobRequest): Promise<number | undefined> {
		return (await this.deps.index.getBlob(digest.value)) ? this.deps.content.size(digest) : undefined;
	}

	async #forRepository(request: BlobRequest): Promise<number | undefined> {
		const {index, content} = this.deps;
		const {digest, repo} = request;
		const record = await index.getBlobFor(repo, digest.value);
		if (!record) {
			return undefined;
		}

		const size = await content.size(digest);
		if (size === undefined) {
			// The row outlived its file (deleted by hand, or a crash between the two): forget it and fetch again.
			await index.deleteBlobRecord(digest.value);
			return undefined;
		}

		if (!record.linked) {
			if (!(await this.#vouched(request))) {
				return undefined;
			}

			await index.linkBlob(repo, digest.value);
		}

		return size;
	}

	/** Known under this upstream (its registries share layers across repositories), or confirmed by a HEAD. */
	async #vouched(request: BlobRequest): Promise<boolean> {
		const {digest, repo, origin} = request;
		if (await this.deps.index.registryHasBlob(repo.registry, digest.value)) {
			return true;
		}

		if (origin.offline) {
			return true;
		}

		let asked = this.#asked.get(request);
		if (!asked) {
			asked = origin.head(digest).then(
				size => size !== undefined,
				// The bytes are verified and immutable; when the upstream cannot say, serve them.
				(error: unknown) => isUpstreamFailure(error),
			);
			this.#asked.set(request, asked);
		}

		return asked;
	}
}

/** A committed blob of `size` bytes as the blob layers and the local service hand it up: streamed, or sent by the store. */
export function storedBlob(content: Pick<BlobContent, 'createReadStream' | 'sendTo'>, digest: Digest, size: number): Omit<BlobResult, 'outcome'> {
	const sendTo = content.sendTo?.bind(content);
	return {
		size,
		stored: true,
		open: range => content.createReadStream(digest, range, size),
		send: sendTo && (async (range, out) => sendTo(digest, range, out)),
	};
}
