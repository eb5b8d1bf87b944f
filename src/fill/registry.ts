/** The fills in flight in this process, by digest: one per digest, however many ask. */
import {type Digest} from '../v2/grammar.js';
import {Fill, type FillHooks, type FillStore, type OpenSource} from './fill.js';

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
		store: FillStore,
		open: OpenSource,
		commit: (size: number) => Promise<void>,
		hooks: FillHooks = {},
	): {fill: Fill; started: boolean} {
		const existing = this.#fills.get(digest.value);
		if (existing) {
			return {fill: existing, started: false};
		}

		const fill = new Fill(digest, hooks.origin);
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
