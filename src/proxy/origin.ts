/** A cached repository's upstream as the blob layers see it (fill/source.ts `BlobOrigin`). */
import {type BlobOrigin, type FillSource} from '../fill/source.js';
import {type UpstreamClient, pullScope} from '../upstream/client.js';
import {RegistryError} from '../v2/errors.js';
import {type Digest} from '../v2/grammar.js';
import {type CachedTarget} from '../service/namespaces.js';
import {checkUpstreamStatus} from './upstream-status.js';

export class UpstreamOrigin implements BlobOrigin {
	constructor(
		private readonly client: UpstreamClient,
		private readonly target: CachedTarget,
	) {}

	get offline(): boolean {
		return this.target.upstream.offline;
	}

	async head(digest: Digest): Promise<number | undefined> {
		const {remoteName} = this.target;
		const response = await this.client.request('HEAD', `/v2/${remoteName}/blobs/${digest.value}`, {scope: pullScope(remoteName), kind: 'blob'});
		if (response.status === 404) {
			return undefined;
		}

		checkUpstreamStatus(response.status, this.target, () => this.unknown(digest));
		return contentLength(response.headers['content-length']);
	}

	async open(digest: Digest): Promise<FillSource> {
		const {remoteName} = this.target;
		const response = await this.client.stream(`/v2/${remoteName}/blobs/${digest.value}`, {scope: pullScope(remoteName), kind: 'blob'});
		checkUpstreamStatus(response.status, this.target, () => this.unknown(digest));
		return {size: contentLength(response.headers['content-length']), body: response.body};
	}

	unknown(digest: Digest): RegistryError {
		return new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value, upstream: this.target.upstream.name}});
	}
}

function contentLength(header: string | undefined): number | undefined {
	const length = Number(header);
	return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}
