/** A cached repository's upstream as the blob layers see it (fill/source.ts `BlobOrigin`). */
import {type BlobOrigin, type FillSource} from '../fill/source.js';
import {type UpstreamClient, pullScope} from '../upstream/client.js';
import {RegistryError, UpstreamError} from '../v2/errors.js';
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

	async open(digest: Digest, from = 0): Promise<FillSource> {
		const {remoteName} = this.target;
		const response = await this.client.stream(`/v2/${remoteName}/blobs/${digest.value}`, {scope: pullScope(remoteName), kind: 'blob', from});
		if (response.status === 206) {
			const range = contentRange(response.headers['content-range']);
			if (!range) {
				response.body.destroy();
				throw new UpstreamError('BLOB_UNKNOWN', {message: 'upstream answered 206 without a usable Content-Range', detail: {contentRange: response.headers['content-range']}});
			}

			return {size: range.size, start: range.start, body: response.body};
		}

		checkUpstreamStatus(response.status, this.target, () => this.unknown(digest));
		return {size: contentLength(response.headers['content-length']), start: 0, body: response.body};
	}

	unknown(digest: Digest): RegistryError {
		return new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value, upstream: this.target.upstream.name}});
	}
}

/** `bytes START-END/SIZE` (SIZE may be `*`). */
function contentRange(header: string | undefined): {start: number; size: number | undefined} | undefined {
	const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header?.trim() ?? '');
	if (!match) {
		return undefined;
	}

	const start = Number(match[1]);
	const size = match[3] === '*' ? undefined : Number(match[3]);
	return Number.isSafeInteger(start) && (size === undefined || Number.isSafeInteger(size)) ? {start, size} : undefined;
}

function contentLength(header: string | undefined): number | undefined {
	const length = Number(header);
	return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}
