/**
 * Reading another replica's fill in progress over the internal endpoint
 * (`GET /_mirror/fills/<digest>`, served by http/internal-fills.ts). Not part
 * of the registry API: only requests carrying the cluster key are answered.
 */
import {type Readable} from 'node:stream';
import got from 'got';
import {type ByteRange} from '../store/blob-store.js';
import {type Digest} from '../v2/grammar.js';

export const FILL_ENDPOINT = '/_mirror/fills/';
export const CLUSTER_KEY_HEADER = 'x-mirror-cluster-key';
/** The size of the blob a peer serves, and the upstream its fill brings it from. */
export const BLOB_SIZE_HEADER = 'x-blob-size';
export const FILL_ORIGIN_HEADER = 'x-fill-origin';
/** The temp file of a fill running there, for a replica on the same machine (a worker) to follow directly. */
export const FILL_FILE_HEADER = 'x-fill-file';

export class Peers {
	constructor(private readonly clusterKey: string) {}

	/** What `owner` serves of `digest`: its size, its fill's origin and temp file, or undefined. */
	async size(owner: string, digest: Digest): Promise<{size: number; origin: string | undefined; file?: string} | undefined> {
		const response = await got.head(`${owner}${FILL_ENDPOINT}${digest.value}`, {
			headers: {[CLUSTER_KEY_HEADER]: this.clusterKey},
			retry: {limit: 0},
			throwHttpErrors: false,
			timeout: {connect: 2000, response: 10_000},
		});
		const size = Number(response.headers[BLOB_SIZE_HEADER]);
		const origin = response.headers[FILL_ORIGIN_HEADER];
		const file = response.headers[FILL_FILE_HEADER];
		return response.statusCode === 200 && Number.isSafeInteger(size)
			? {size, origin: typeof origin === 'string' ? origin : undefined, ...(typeof file === 'string' ? {file: decodeURIComponent(file)} : {})}
			: undefined;
	}

	/** The bytes `range` of `digest` from `owner`, once it answered. */
	async read(owner: string, digest: Digest, range: ByteRange): Promise<Readable> {
		const stream = got.stream(`${owner}${FILL_ENDPOINT}${digest.value}`, {
			headers: {[CLUSTER_KEY_HEADER]: this.clusterKey, range: `bytes=${range.start}-${range.end}`},
			retry: {limit: 0},
			timeout: {connect: 2000, response: 10_000, socket: 60_000},
		});
		await new Promise<void>((resolve, reject) => {
			stream.once('response', () => resolve());
			stream.once('error', reject);
		});
		return stream;
	}
}
