/**
 * A fill another worker of this machine runs, followed through its temp file
 * rather than streamed over the loopback endpoint: the clients of a herd on
 * a worker that does not fill read the same file the filling worker's
 * clients read, with the same FillReader.
 *
 * Progress is the file's length, looked at every few milliseconds while
 * readers wait. The last byte is released only once the blob is committed
 * (the filling worker renames the file into the store after the digest
 * checks); a fill that ends without a commit (wrong bytes, the worker died)
 * fails the readers, whose streams then carry on from another source
 * (cluster-blobs.ts).
 */
import {EventEmitter} from 'node:events';
import {type FileHandle, open} from 'node:fs/promises';
import {type FillFile, type FillState, FillReader, type GrowingBlob} from '../fill/fill-reader.js';
import {type ByteRange} from '../store/blob-store.js';
import {type Digest} from '../v2/grammar.js';
import {type FillCoordinator} from './coordination.js';

/** How often a waiting reader looks at the file again (a fill's end wakes it sooner). */
const POLL_MS = 5;
/** Without growth for this long, ask whether the filling worker still holds the fill. */
const QUIET_CHECK_MS = 250;

export type FollowedFillDeps = {
	coordinator: Pick<FillCoordinator, 'fillOwner' | 'waitForFill'>;
	/** The committed blob's size, or undefined while it is not in the store. */
	committed: (digest: Digest) => Promise<number | undefined>;
};

export class FollowedFill extends EventEmitter implements GrowingBlob {
	state: FillState = 'running';
	error: Error | undefined;
	readonly temp: FillFile;
	#onDisk = 0;
	#readers = 0;
	#closed = false;

	private constructor(
		readonly digest: Digest,
		readonly size: number,
		/** The replica URL of the worker filling it. */
		readonly owner: string,
		private readonly handle: FileHandle,
		private readonly deps: FollowedFillDeps,
	) {
		super();
		this.setMaxListeners(0);
		this.temp = {
			read: async (buffer, length, position) => (await handle.read(buffer, 0, length, position)).bytesRead,
			retain: () => {
				this.#readers++;
			},
			release: () => {
				this.#readers--;
				if (this.#readers <= 0) {
					void this.#close();
				}
			},
		};
	}

	/** Opens `file`; throws when it is gone (the fill ended meanwhile: the store has the blob, or nobody does). */
	static async open(file: string, digest: Digest, size: number, owner: string, deps: FollowedFillDeps): Promise<FollowedFill> {
		const followed = new FollowedFill(digest, size, owner, await open(file, 'r'), deps);
		void followed.#watch();
		return followed;
	}

	/** Whether new readers may still join (running, with its file open). */
	get open(): boolean {
		return this.state === 'running' && !this.#closed;
	}

	get readable(): number {
		return this.state === 'done' ? this.size : Math.min(this.#onDisk, this.size - 1);
	}

	createReader(range?: ByteRange): FillReader {
		return new FillReader(this, range);
	}

	async #watch(): Promise<void> {
		let quietSince = Date.now();
		try {
			while (this.state === 'running' && !this.#closed) {
				const {size: onDisk} = await this.handle.stat();
				if (onDisk > this.#onDisk) {
					this.#onDisk = onDisk;
					quietSince = Date.now();
					this.emit('progress');
				}

				if (onDisk >= this.size || Date.now() - quietSince >= QUIET_CHECK_MS) {
					quietSince = Date.now();
					if (await this.#ended()) {
						return;
					}
				}

				await this.deps.coordinator.waitForFill(this.digest, POLL_MS);
			}
		} catch (error) {
			this.#end('failed', error instanceof Error ? error : new Error(String(error)));
		}
	}

	/** Whether the fill is over: committed (done) or abandoned by its worker (failed). */
	async #ended(): Promise<boolean> {
		if ((await this.deps.committed(this.digest)) === this.size) {
			this.#end('done');
			return true;
		}

		// The owner releases the lock only after the rename: no owner and no blob means the fill failed.
		if ((await this.deps.coordinator.fillOwner(this.digest)) !== this.owner && (await this.deps.committed(this.digest)) !== this.size) {
			this.#end('failed', new Error(`the worker filling ${this.digest.value} stopped before it was committed`));
			return true;
		}

		return false;
	}

	#end(state: 'done' | 'failed', error?: Error): void {
		if (this.state !== 'running') {
			return;
		}

		this.state = state;
		this.error = error;
		this.emit('progress');
		if (this.#readers <= 0) {
			void this.#close();
		}
	}

	async #close(): Promise<void> {
		if (!this.#closed) {
			this.#closed = true;
			this.emit('closed');
			await this.handle.close().catch(() => undefined);
		}
	}
}
