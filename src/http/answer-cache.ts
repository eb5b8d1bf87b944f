/**
 * Repeated reads of manifests and small blobs answered from memory: the
 * bytes and the headers the full path produced the first time, replayed
 * without the router, the namespace and service layers or a store read.
 *
 * A handler offers an answer by leaving `ctx.state.answer`; this middleware
 * keeps it (per path, query and Accept header) if it is small enough.
 * An entry holds while both are true:
 * - it is fresh: a tag within its TTL (as the service said), anything by digest for good;
 * - the store's cache generation is the one it was made under. Every change
 *   that could make it wrong (a tag moved or deleted, content unlinked,
 *   purged or evicted) bumps the generation in the store itself, by trigger,
 *   whichever process made it: another worker, the CLI, another replica.
 * Stale answers (the upstream failed) and ranges are never kept.
 */
import {type Next} from 'koa';
import {LRUCache} from 'lru-cache';
import {type CacheableAnswer, type MirrorContext} from './state.js';

export type AnswerCacheOptions = {
	/** Total bytes of bodies kept. 0 turns the cache off. */
	maxBytes: number;
	/** The largest body kept. */
	maxItemBytes: number;
	generation: () => number | Promise<number>;
	/**
	 * With workers: tells the others a write here moved the generation, and
	 * resolves once they have taken note, so the response to a push or a
	 * delete goes out only when no worker can answer the old content any more.
	 */
	announce?: () => Promise<void>;
	/** A served answer: access times and hit counters, as the service layer counts a hit. */
	onHit: (answer: Pick<CacheableAnswer, 'kind' | 'digest' | 'upstream'>) => void;
	now?: () => number;
};

type Entry = {
	answer: CacheableAnswer;
	body: Buffer;
	headers: Array<[string, string]>;
	route: string | undefined;
	generation: number;
};

/** Headers that belong to one response, not to the answer. */
const PER_RESPONSE = new Set(['x-request-id', 'content-length', 'date', 'connection', 'keep-alive', 'warning']);

/** A read that may be answered from memory: no range, no conditional, no body. */
function cacheKey(ctx: MirrorContext): string | undefined {
	if ((ctx.method !== 'GET' && ctx.method !== 'HEAD') || ctx.headers.range !== undefined || ctx.headers['if-none-match'] !== undefined) {
		return undefined;
	}

	return `${ctx.url}\n${ctx.headers.accept ?? ''}`;
}

export class AnswerCache {
	readonly #entries: LRUCache<string, Entry>;
	readonly #loading = new Set<string>();
	readonly #now: () => number;

	constructor(private readonly options: AnswerCacheOptions) {
		this.#now = options.now ?? Date.now;
		this.#entries = new LRUCache<string, Entry>({
			maxSize: Math.max(options.maxBytes, 1),
			sizeCalculation: (entry, key) => entry.body.length + key.length + 256,
		});
	}

	get size(): number {
		return this.#entries.size;
	}

	get bytes(): number {
		return this.#entries.calculatedSize;
	}

	clear(): void {
		this.#entries.clear();
	}

	middleware() {
		return async (ctx: MirrorContext, next: Next): Promise<void> => {
			const key = this.options.maxBytes > 0 ? cacheKey(ctx) : undefined;
			if (key === undefined) {
				await next();
				return;
			}

			let generation: number;
			try {
				const read = this.options.generation();
				generation = typeof read === 'number' ? read : await read; // SQLite answers at once: no extra turn
			} catch {
				// The store cannot say (PostgreSQL unreachable): no answer from memory, and the request goes on as if there were no cache.
				await next();
				return;
			}

			const entry = this.#entries.get(key);
			if (entry) {
				if (entry.generation === generation && this.#now() < entry.answer.freshUntil) {
					this.#serve(ctx, entry);
					return;
				}

				this.#entries.delete(key);
			}

			await next();
			const answer = ctx.state.answer;
			if (answer && ctx.status === 200 && answer.size <= this.options.maxItemBytes && !ctx.response.get('Warning') && !this.#loading.has(key)) {
				this.#keep(ctx, key, answer, generation);
			}
		};
	}

	async #generation(): Promise<number> {
		return this.options.generation();
	}

	/**
	 * For every request that may write (any method but GET and HEAD, wherever
	 * it is routed: the V2 API, the purge API): when it moved the generation,
	 * the other workers hear of it before its response goes out. Goes first,
	 * before the routes that write.
	 */
	announcer() {
		return async (ctx: MirrorContext, next: Next): Promise<void> => {
			const {announce} = this.options;
			if (!announce || ctx.method === 'GET' || ctx.method === 'HEAD') {
				await next();
				return;
			}

			const before = await this.#generation().catch(() => undefined);
			try {
				await next();
			} finally {
				const after = await this.#generation().catch(() => undefined);
				if (before === undefined || after !== before) {
					await announce(); // moved, or unknown: the others look again
				}
			}
		};
	}

	#serve(ctx: MirrorContext, entry: Entry): void {
		ctx.status = 200;
		for (const [name, value] of entry.headers) {
			ctx.set(name, value);
		}

		ctx.body = entry.body;
		// The request log and metrics label a request by the route that served it.
		ctx['_matchedRoute'] = entry.route;
		this.options.onHit(entry.answer);
		entry.answer.replay(ctx);
	}

	#keep(ctx: MirrorContext, key: string, answer: CacheableAnswer, generation: number): void {
		const headers = Object.entries(ctx.response.headers)
			.filter(([name]) => !PER_RESPONSE.has(name.toLowerCase()))
			.map(([name, value]): [string, string] => [name, Array.isArray(value) ? value.join(', ') : String(value)]);
		const route = ctx['_matchedRoute'] as string | undefined;
		const store = (body: Buffer) => {
			if (body.length === answer.size) {
				this.#entries.set(key, {answer, body, headers, route, generation});
			}
		};

		if (Buffer.isBuffer(answer.body)) {
			store(answer.body);
			return;
		}

		// A blob's bytes are read again once its response is done, not copied off the stream the client is reading.
		const load = answer.body;
		this.#loading.add(key);
		const loadNow = () => {
			load()
				.then(store, () => undefined)
				.finally(() => this.#loading.delete(key));
		};

		if (ctx.res.writableFinished || ctx.res.destroyed) {
			loadNow(); // sent already (written straight to the response)
		} else {
			ctx.res.once('close', loadNow);
		}
	}
}
