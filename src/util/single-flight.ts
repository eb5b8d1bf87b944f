/**
 * Single-flight: one run of a task per key at a time. Callers that ask for a
 * key while its run is in flight share that run's promise; once it settles,
 * the next caller starts a new run. Nothing is cached past the run itself.
 */
export class SingleFlight<K, V> {
	readonly #running = new Map<K, Promise<V>>();

	/** Joins the run for `key`, or starts `task` as that run. */
	run(key: K, task: () => Promise<V>): Promise<V> {
		const running = this.#running.get(key);
		if (running) {
			return running;
		}

		const started = task().finally(() => {
			if (this.#running.get(key) === started) {
				this.#running.delete(key);
			}
		});
		this.#running.set(key, started);
		return started;
	}
}

/**
 * One task at a time per key, in arrival order (a mutex per key): each task
 * starts after the previous one for its key settled, whatever its outcome.
 */
export class KeyedQueue<K> {
	readonly #tails = new Map<K, Promise<unknown>>();

	/** Whether a task for `key` runs or waits. */
	busy(key: K): boolean {
		return this.#tails.has(key);
	}

	async run<T>(key: K, task: () => Promise<T>): Promise<T> {
		const previous = this.#tails.get(key) ?? Promise.resolve();
		const run = previous.catch(() => undefined).then(task);
		const settled = run.catch(() => undefined);
		this.#tails.set(key, settled);
		void settled.then(() => {
			if (this.#tails.get(key) === settled) {
				this.#tails.delete(key);
			}
		});
		return run;
	}
}
