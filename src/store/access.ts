/**
 * Last-access times for LRU eviction, without a SQLite write per hit: hits
 * are collected in memory and written in one transaction every few seconds
 * (and on shutdown).
 */
import {type MetadataStore} from './metadata.js';

export class AccessRecorder {
	readonly #pending = new Map<string, {kind: 'blob' | 'manifest'; digest: string; at: number}>();
	readonly #timer: NodeJS.Timeout;

	constructor(
		private readonly metadata: MetadataStore,
		intervalMs = 5000,
	) {
		this.#timer = setInterval(() => this.flush(), intervalMs);
		this.#timer.unref();
	}

	touch(kind: 'blob' | 'manifest', digest: string, at = Date.now()): void {
		this.#pending.set(`${kind}:${digest}`, {kind, digest, at});
	}

	flush(): void {
		if (this.#pending.size === 0) {
			return;
		}

		const entries = [...this.#pending.values()];
		this.#pending.clear();
		this.metadata.touch(entries);
	}

	close(): void {
		clearInterval(this.#timer);
		this.flush();
	}
}
