/**
 * Hashing while bytes go by: the one place a digest is computed over content
 * that is being written (fills, monolithic uploads) or read back (verify,
 * upload sessions finished without their hash state).
 */
import {createHash, type Hash} from 'node:crypto';
import {type Digest} from '../v2/grammar.js';
import {type TempBlob} from './blob-store.js';

/** Appends to a temp blob and hashes what it appends; the hash state lasts across sources. */
export class HashingWriter {
	readonly #hash: Hash;

	constructor(
		readonly temp: TempBlob,
		readonly digest: Digest,
	) {
		this.#hash = createHash(digest.algorithm);
	}

	get written(): number {
		return this.temp.written;
	}

	async write(chunk: Uint8Array): Promise<void> {
		this.#hash.update(chunk);
		await this.temp.append(chunk);
	}

	/** The digest of everything written, as `algorithm:hex`; call once, at the end. */
	actual(): string {
		return `${this.digest.algorithm}:${this.#hash.digest('hex')}`;
	}
}

/** The digest (`algorithm:hex`) of everything `source` yields. */
export async function hashOf(source: AsyncIterable<unknown>, algorithm: Digest['algorithm']): Promise<string> {
	const hash = createHash(algorithm);
	for await (const chunk of source) {
		hash.update(chunk as Uint8Array);
	}

	return `${algorithm}:${hash.digest('hex')}`;
}
