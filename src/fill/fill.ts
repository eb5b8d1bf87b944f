/**
 * One cache fill, and the table of fills in flight. One upstream download per digest, however many
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
import {EventEmitter} from 'node:events';
import {type Readable} from 'node:stream';
import {type BlobContent, type ByteRange, type TempBlob} from '../store/blob-store.js';

/** What a fill needs of the blob store: a temp file to write, and removal of a blob it failed to record. */
export type FillStore = Pick<BlobContent, 'createTemp' | 'remove' | 'keepsPartialFills'>;
import {type FillSource} from './source.js';
import {HashingWriter} from '../store/hashing.js';
import {type Digest} from '../v2/grammar.js';
import {UpstreamError} from '../v2/errors.js';
import {FillReader, type FillState, type GrowingBlob, type InFlightChunk} from './fill-reader.js';

export {type FillState} from './fill-reader.js';

/** Bytes withheld from clients until the digest is verified, when the size is unknown. */
const UNKNOWN_SIZE_HOLDBACK = 64 * 1024;
/** Upstream responses a fill may resume through after the first, and resumes in a row that may bring nothing new. */
export const MAX_RESUMES = 10;
const MAX_IDLE_RESUMES = 2;

/** Opens the upstream body from byte `from` (0 for the first request). */
export type OpenSource = (from: number) => Promise<FillSource>;

export type FillHooks = {
	/** The upstream (registry name) the bytes come from. */
	origin?: string;
	/** Called once the size is known, before any byte is written (the quota makes room here). */
	reserve?: (size: number) => Promise<void>;
	/** Bytes received from the upstream, per chunk. */
	onChunk?: (bytes: number) => void;
	/** The upstream body broke at byte `from`; the fill asks for the rest. */
	onResume?: (from: number, error: Error) => void;
};

export class Fill extends EventEmitter implements GrowingBlob {
	state: FillState = 'starting';
	/** The upstream (registry name) the bytes come from, when the starter said. */
	readonly origin: string | undefined;
	size: number | undefined;
	error: Error | undefined;
	temp: TempBlob | undefined;
	/**
	 * The chunk being written to the temp file right now, from byte
	 * `position`: readers may have it from memory before the write lands
	 * (the first byte of a cold fill does not wait for the file round trip).
	 */
	inFlight: InFlightChunk | undefined;
	/** Resolves once the upstream has answered (size known), rejects if it did not. */
	readonly ready: Promise<void>;
	/** Resolves when the blob is committed, rejects when the fill failed. */
	readonly done: Promise<void>;
	#resolveReady!: () => void;
	#rejectReady!: (error: Error) => void;

	constructor(
		readonly digest: Digest,
		origin?: string,
	) {
		super();
		this.origin = origin;
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
						reject(this.error ?? new Error('cache fill failed'));
					} else {
						this.once('finished', () => (this.state === 'done' ? resolve() : reject(this.error ?? new Error('cache fill failed'))));
					}
				}),
		);
		// Nobody may be waiting on these; failures are reported through readers.
		this.ready.catch(() => undefined);
		this.done.catch(() => undefined);
	}

	/** How many bytes clients may have right now. */
	get readable(): number {
		const onDisk = this.temp?.written ?? 0;
		const written = this.inFlight?.position === onDisk ? onDisk + this.inFlight.chunk.length : onDisk;
		if (this.state === 'done') {
			return written;
		}

		if (this.size !== undefined) {
			return Math.min(written, this.size - 1);
		}

		return Math.max(0, written - UNKNOWN_SIZE_HOLDBACK);
	}

	async run(store: FillStore, open: OpenSource, commit: (size: number) => Promise<void>, hooks: FillHooks = {}): Promise<void> {
		let source: FillSource | undefined;
		const creating = store.createTemp(this.digest);
		creating.catch(() => undefined);
		// The upstream is asked while the temp file is made, to save the first byte a little time; unless the
		// store may hold the first bytes already (a fill another replica began), which decides where to ask from.
		const asking = store.keepsPartialFills ? undefined : open(0);
		asking?.catch(() => undefined);
		try {
			this.temp = await creating;
			this.temp.retain(); // held until the state below is final, so a reader that joins meanwhile finds the file open
			const writer = new HashingWriter(this.temp, this.digest);
			if (this.temp.recovered) {
				for await (const chunk of this.temp.recovered.read()) {
					await writer.write(chunk);
				}
			}

			source = await (asking ?? open(writer.written));
			this.size = source.size;
			if (source.size !== undefined) {
				await hooks.reserve?.(source.size);
			}

			this.state = 'running';
			this.#resolveReady();
			source = await this.#download(writer, source, open, hooks);
			const actual = writer.actual();
			if (actual !== this.digest.value) {
				throw new UpstreamError('DIGEST_INVALID', {
					message: 'upstream content does not match its digest',
					detail: {expected: this.digest.value, actual},
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
			(source ?? (await asking?.catch(() => undefined)))?.body.destroy();
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

	/**
	 * Copies upstream bodies into `writer` until the blob is complete. When a
	 * body breaks or ends early, the rest is asked for from the last byte
	 * written (`Range: bytes=N-`); an answer that starts earlier has its known
	 * part skipped, one that starts later is refused. The hash state carries
	 * on, so the digest is still checked over the whole blob. Returns the last
	 * source (the caller destroys it on failure).
	 */
	async #download(writer: HashingWriter, first: FillSource, open: OpenSource, hooks: FillHooks): Promise<FillSource> {
		let source = first;
		let resumes = 0;
		let idle = 0;
		try {
			for (;;) {
				const before = writer.written;
				const broken = await this.#copy(writer, source, hooks);
				if (broken === undefined && (this.size === undefined || writer.written === this.size)) {
					return source;
				}

				const error = broken ?? new UpstreamError('BLOB_UNKNOWN', {message: `upstream sent ${writer.written} of ${this.size} bytes`});
				idle = writer.written > before ? 0 : idle + 1;
				if (resumes >= MAX_RESUMES || idle > MAX_IDLE_RESUMES) {
					throw error;
				}

				resumes++;
				source.body.destroy();
				hooks.onResume?.(writer.written, error);
				source = await open(writer.written);
				if (source.size !== undefined && this.size !== undefined && source.size !== this.size) {
					throw new UpstreamError('BLOB_UNKNOWN', {message: `upstream changed the blob's size from ${this.size} to ${source.size} while resuming`});
				}

				this.size ??= source.size;
			}
		} catch (error) {
			source.body.destroy();
			throw error;
		}
	}

	/**
	 * Appends one upstream body from where the writer stands. Resolves with
	 * the error when the body broke (resumable), undefined when it ended;
	 * throws what must fail the fill (too many bytes, a disk error, a range
	 * that starts past what is written).
	 */
	async #copy(writer: HashingWriter, source: FillSource, hooks: FillHooks): Promise<Error | undefined> {
		let skip = writer.written - source.start;
		if (skip < 0) {
			throw new UpstreamError('BLOB_UNKNOWN', {message: `upstream resumed at byte ${source.start}, past the ${writer.written} bytes written`});
		}

		const iterator = source.body[Symbol.asyncIterator]();
		for (;;) {
			let next: IteratorResult<Uint8Array>;
			try {
				next = await iterator.next();
			} catch (error) {
				return error instanceof Error ? error : new Error(String(error));
			}

			if (next.done) {
				return undefined;
			}

			let chunk = next.value;
			hooks.onChunk?.(chunk.length);
			if (skip > 0) {
				const skipped = Math.min(skip, chunk.length);
				skip -= skipped;
				chunk = chunk.subarray(skipped);
				if (chunk.length === 0) {
					continue;
				}
			}

			this.inFlight = {position: writer.written, chunk};
			this.emit('progress');
			try {
				await writer.write(chunk);
			} finally {
				this.inFlight = undefined;
			}

			if (this.size !== undefined && writer.written > this.size) {
				throw new UpstreamError('BLOB_UNKNOWN', {message: 'upstream sent more bytes than it announced'});
			}

			this.emit('progress');
		}
	}

	/** A stream of this blob for one client, served from the growing temp file. */
	createReader(range?: ByteRange): Readable {
		return new FillReader(this, range);
	}
}
