/**
 * A client's stream of a fill in progress, read from the growing temp file.
 * It asks the file for bytes only when its client wants more, so a slow
 * client never buffers ahead, and never gets past what the fill releases
 * (`Fill.readable`: the last byte waits for the digest).
 */
import {Readable} from 'node:stream';
import {type ByteRange, type TempBlob} from '../store/blob-store.js';

export type FillState = 'starting' | 'running' | 'done' | 'failed';

/** Bytes on their way to the temp file, from byte `position`: the same bytes the file will hold. */
export type InFlightChunk = {position: number; chunk: Uint8Array};

/** What a reader needs of the file a fill writes: its bytes, and keeping it open while it reads. */
export type FillFile = Pick<TempBlob, 'read' | 'retain' | 'release'>;

/** What a reader needs of the fill it follows. */
export interface GrowingBlob {
	readonly state: FillState;
	readonly size: number | undefined;
	readonly error: Error | undefined;
	readonly temp: FillFile | undefined;
	/** The chunk being written now, which readers may take from memory. */
	readonly inFlight?: InFlightChunk;
	/** How many bytes clients may have right now (the chunk in flight included). */
	readonly readable: number;
	/** 'progress' is emitted for every chunk written and once more when the fill ends. */
	on(event: 'progress', listener: () => void): unknown;
	off(event: 'progress', listener: () => void): unknown;
}

/** Reads for clients of a fill: small enough that 20 slow clients do not hold much each. */
const READ_CHUNK = 256 * 1024;

export class FillReader extends Readable {
	#position: number;
	readonly #end: number | undefined;
	#reading = false;
	#holding = false;
	/** Set by _read(), cleared when push() says the client's buffer is full: a slow client never buffers ahead. */
	#wanted = false;
	readonly #fill: GrowingBlob;
	readonly #onProgress = () => {
		void this.#pump();
	};

	constructor(fill: GrowingBlob, range?: ByteRange) {
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

	/** The next bytes from the chunk in flight, when this reader has reached it (not copied: a chunk is never changed). */
	#inFlight(limit: number): Buffer | undefined {
		const inFlight = this.#fill.inFlight;
		if (!inFlight || this.#position < inFlight.position || this.#position >= inFlight.position + inFlight.chunk.length) {
			return undefined;
		}

		const offset = this.#position - inFlight.position;
		const length = Math.min(limit - this.#position, inFlight.chunk.length - offset, READ_CHUNK);
		return Buffer.from(inFlight.chunk.buffer, inFlight.chunk.byteOffset + offset, length);
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

				const fromMemory = this.#inFlight(limit);
				if (fromMemory) {
					this.#position += fromMemory.length;
					if (!this.push(fromMemory)) {
						this.#wanted = false;
						return;
					}

					continue;
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
