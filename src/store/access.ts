/**
 * Last-access times for LRU eviction, without a SQLite write per hit: hits
 * are collected in memory and written in one transaction every few seconds
 * (and on shutdown).
 */
import {type Logger} from '../util/log.js';
import {type Housekeeping} from './metadata.js';

export class AccessRecorder {
	readonly #pending = new Map<string, {kind: 'blob' | 'manifest'; digest: string; at: number}>();
	readonly #timer: NodeJS.Timeout;

	constructor(
		private readonly metadata: Pick<Housekeeping, 'touch'>,
		intervalMs = 5000,
		private readonly log?: Logger,
	) {
		this.#timer = setInterval(() => {
			// Nobody awaits the timer: a failed write is logged (those access times are lost, as before).
			void this.flush().catch((error: unknown) => this.log?.warn({err: error}, 'could not record access times'));
		}, intervalMs);
		this.#timer.unref();
	}

	touch(kind: 'blob' | 'manifest', digest: string, at = Date.now()): void {
		this.#pending.set(`${kind}:${digest}`, {kind, digest, at});
	}

	async flush(): Promise<void> {
		if (this.#pending.size === 0) {
			return;
		}

		const entries = [...this.#pending.values()];
		this.#pending.clear(); // before the write: touches that arrive meanwhile go to the next flush
		await this.metadata.touch(entries);
	}

	async close(): Promise<void> {
		clearInterval(this.#timer);
		await this.flush();
	}
}
