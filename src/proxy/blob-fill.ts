/**
 * Single-flight cache fills. One upstream download per digest, however many
 * clients ask: the download goes to a temp file while its sha256 is computed,
 * and every client (the first and any that arrive while it runs) reads from
 * that growing file as bytes land. Clients never slow the fill and a client
 * that leaves does not stop it.
 *
 * The last byte of a fill is held back from clients until the digest checks,
 * so a fill that turns out wrong can never have given anyone a complete
 * response: their connections are cut instead. On success the file is renamed
 * into place and recorded; on any failure it is deleted.
 */
import {createHash} from 'node:crypto';
import {EventEmitter} from 'node:events';
import {Readable} from 'node:stream';
import {type BlobStore, type ByteRange, type TempBlob} from '../store/blob-store.js';
import {type Digest} from '../v2/grammar.js';
import {UpstreamError} from '../v2/errors.js';

export type FillSource = {size: number | undefined; body: AsyncIterable<Uint8Array> & {destroy(error?: Error): void}};

/** Bytes withheld from clients until the digest is verified, when the size is unknown. */
const UNKNOWN_SIZE_HOLDBACK = 64 * 1024;
/** Reads for clients of a fill: small enough that 20 slow clients do not hold much each. */
const READ_CHUNK = 256 * 1024;

export type FillHooks = {
	/** Called once the size is known, before any byte is written (the quota makes room here). */
	reserve?: (size: number) => Promise<void>;
	/** Bytes received from the upstream, per chunk. */
	onChunk?: (bytes: number) => void;
};

export type FillState = 'starting' | 'running' | 'done' | 'failed';

export class Fill extends EventEmitter {
	state: FillState = 'starting';
	/** The upstream (registry name) the bytes come from, when the starter says. */
	origin: string | undefined;
	size: number | undefined;
	error: Error | undefined;
	temp: TempBlob | undefined;
	/** Resolves once the upstream has answered (size known), rejects if it did not. */
	readonly ready: Promise<void>;
	/** Resolves when the blob is committed, rejects when the fill failed. */
	readonly done: Promise<void>;
	#resolveReady!: () => void;
	#rejectReady!: (error: Error) => void;

	constructor(readonly digest: Digest) {
		super();
		this.setMaxListeners(0);
		this.ready = new Promise((resolve, reject) => {
			this.#resolveReady = resolve;
			this.#rejectReady = reject;
		});
		this.done = this.ready.then(
			async () =>
				new Promise<void>((resolve, reject) => {
					if (this.state === 'done') {
						resolve();
					} else if (this.state === 'failed') {
						reject(this.error);
					} else {
						this.once('finished', () => (this.state === 'done' ? resolve() : reject(this.error)));
					}
				}),
		);
		// Nobody may be waiting on these; failures are reported through readers.
		this.ready.catch(() => undefined);
		this.done.catch(() => undefined);
	}

	/** How many bytes clients may have right now. */
	get readable(): number {
		const written = this.temp?.written ?? 0;
		if (this.state === 'done') {
			return written;
		}

		if (this.size !== undefined) {
			return Math.min(written, this.size - 1);
		}

		return Math.max(0, written - UNKNOWN_SIZE_HOLDBACK);
	}

	async run(store: BlobStore, open: () => Promise<FillSource>, commit: (size: number) => Promise<void>, hooks: FillHooks = {}): Promise<void> {
		let source: FillSource | undefined;
		// The temp file is created while the upstream is asked, to save the first byte a little time.
		const creating = store.createTemp(this.digest);
		creating.catch(() => undefined);
		try {
			source = await open();
			this.size = source.size;
			if (source.size !== undefined) {
				await hooks.reserve?.(source.size);
			}

			this.temp = await creating;
			this.temp.retain(); // held until the state below is final, so a reader that joins meanwhile finds the file open
			this.state = 'running';
			this.#resolveReady();

			const hash = createHash(this.digest.algorithm);
			for await (const chunk of source.body) {
				hash.update(chunk);
				hooks.onChunk?.(chunk.length);
				await this.temp.append(chunk);
				if (this.size !== undefined && this.temp.written > this.size) {
					throw new UpstreamError('BLOB_UNKNOWN', {message: 'upstream sent more bytes than it announced'});
				}

				this.emit('progress');
			}

			if (this.size !== undefined && this.temp.written !== this.size) {
				throw new UpstreamError('BLOB_UNKNOWN', {
					message: `upstream sent ${this.temp.written} of ${this.size} bytes`,
				});
			}

			const actual = hash.digest('hex');
			if (actual !== this.digest.hex) {
				throw new UpstreamError('DIGEST_INVALID', {
					message: 'upstream content does not match its digest',
					detail: {expected: this.digest.value, actual: `${this.digest.algorithm}:${actual}`},
				});
			}

			this.size = this.temp.written;
			await this.temp.commit(this.digest);
			try {
				await commit(this.size); // the row is written before the state is 'done' and the last byte is released
			} catch (error) {
				await store.remove(this.digest); // a file without its record is an orphan: do not keep it
				throw error;
			}

			this.state = 'done';
		} catch (error) {
			const failure = error instanceof Error ? error : new Error(String(error));
			this.error = failure;
			this.state = 'failed';
			source?.body.destroy();
			if (this.temp) {
				await this.temp.discard();
			} else {
				await (await creating.catch(() => undefined))?.discard();
			}

			this.#rejectReady(failure);
		} finally {
			this.emit('progress');
			this.emit('finished');
			this.temp?.release();
		}
	}

	/** A stream of this blob for one client, served from the growing temp file. */
	createReader(range?: ByteRange): Readable {
		return new FillReader(this, range);
	}
}

class FillReader extends Readable {
	#position: number;
	readonly #end: number | undefined;
	#reading = false;
	#holding = false;
	/** Set by _read(), cleared when push() says the client's buffer is full: a slow client never buffers ahead. */
	#wanted = false;
	readonly #fill: Fill;
	readonly #onProgress = () => {
		void this.#pump();
	};

	constructor(fill: Fill, range?: ByteRange) {
		super({highWaterMark: READ_CHUNK});
		this.#fill = fill;
		this.#position = range?.start ?? 0;
		this.#end = range ? range.end + 1 : undefined;
		this.#hold();
		fill.on('progress', this.#onProgress);
	}

	override _read(): void {
		this.#wanted = true;
		void this.#pump();
	}

	/** Keeps the temp file open for this reader, once it exists. */
	#hold(): void {
		if (!this.#holding && this.#fill.temp) {
			this.#fill.temp.retain();
			this.#holding = true;
		}
	}

	override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
		this.#fill.off('progress', this.#onProgress);
		if (this.#holding) {
			this.#holding = false;
			this.#fill.temp?.release();
		}

		callback(error);
	}

	async #pump(): Promise<void> {
		if (this.#reading || this.destroyed) {
			return;
		}

		this.#reading = true;
		try {
			for (;;) {
				const fill = this.#fill;
				const end = this.#end ?? (fill.state === 'done' ? fill.size : undefined);
				if (end !== undefined && this.#position >= end) {
					this.push(null);
					return;
				}

				if (fill.state === 'failed') {
					this.destroy(fill.error ?? new Error('cache fill failed'));
					return;
				}

				this.#hold(); // as soon as the file exists, even before the client asks for bytes
				if (!this.#wanted) {
					return; // progress arrived but the client has not asked for more
				}

				const limit = Math.min(fill.readable, end ?? Number.POSITIVE_INFINITY);
				if (this.#position >= limit || !fill.temp || !this.#holding) {
					return; // wait for the next 'progress'
				}

				const length = Math.min(limit - this.#position, READ_CHUNK);
				const buffer = Buffer.allocUnsafe(length);
				const read = await fill.temp.read(buffer, length, this.#position);
				if (this.destroyed) {
					return;
				}

				if (read === 0) {
					return;
				}

				this.#position += read;
				if (!this.push(read === length ? buffer : buffer.subarray(0, read))) {
					this.#wanted = false;
					return; // the client is slow; _read() resumes us
				}
			}
		} catch (error) {
			this.destroy(error instanceof Error ? error : new Error(String(error)));
		} finally {
			this.#reading = false;
		}
	}
}

/** The fills in flight, by digest. */
export class FillRegistry {
	readonly #fills = new Map<string, Fill>();

	get size(): number {
		return this.#fills.size;
	}

	get(digest: Digest): Fill | undefined {
		return this.#fills.get(digest.value);
	}

	/**
	 * Joins the fill for `digest` or starts one. The fill runs detached from
	 * any client request: it ends when the upstream body does.
	 */
	join(
		digest: Digest,
		store: BlobStore,
		open: () => Promise<FillSource>,
		commit: (size: number) => Promise<void>,
		hooks: FillHooks = {},
	): {fill: Fill; started: boolean} {
		const existing = this.#fills.get(digest.value);
		if (existing) {
			return {fill: existing, started: false};
		}

		const fill = new Fill(digest);
		this.#fills.set(digest.value, fill);
		void fill.run(store, open, commit, hooks).finally(() => {
			if (this.#fills.get(digest.value) === fill) {
				this.#fills.delete(digest.value);
			}
		});
		return {fill, started: true};
	}

	async drain(): Promise<void> {
		await Promise.allSettled([...this.#fills.values()].map(async fill => fill.done));
	}
}
