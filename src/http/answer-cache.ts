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
 *
 * A hit is answered before Koa when nothing between the request and the
 * cache has a say (no auth): `early` writes the kept status line, headers
 * and body with one writeHead/end, and does the request's log line, metrics
 * and replay as the Koa path would. Otherwise the middleware answers it.
 */
import {type IncomingMessage, type ServerResponse} from 'node:http';
import {type TLSSocket} from 'node:tls';
import {type Next} from 'koa';
import {LRUCache} from 'lru-cache';
import {type Metrics} from '../ops/metrics.js';
import {type Logger} from '../util/log.js';
import {recordWhenDone, requestIdFrom} from './request-log.js';
import {type CacheableAnswer, type MirrorContext, type RequestFacts, factsOf} from './state.js';

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
	/** The kept headers as writeHead takes them: name, value, name, value… */
	headers: string[];
	route: string | undefined;
	generation: number;
};

/** Headers that belong to one response, not to the answer. */
const PER_RESPONSE = new Set(['x-request-id', 'content-length', 'date', 'connection', 'keep-alive', 'warning']);

/** A read that may be answered from memory: no range, no conditional, no body. */
function cacheKey(method: string | undefined, url: string | undefined, headers: IncomingMessage['headers']): string | undefined {
	if ((method !== 'GET' && method !== 'HEAD') || headers.range !== undefined || headers['if-none-match'] !== undefined) {
		return undefined;
	}

	return `${url ?? ''}\n${headers.accept ?? ''}`;
}

export class AnswerCache {
	readonly #entries: LRUCache<string, Entry>;
	readonly #now: () => number;

	constructor(private readonly options: AnswerCacheOptions) {
		this.#now = options.now ?? Date.now;
		this.#entries = new LRUCache<string, Entry>({
			maxSize: Math.max(options.maxBytes, 1),
			sizeCalculation: (entry, key) => entry.answer.body.length + key.length + 256,
		});
	}

	/**
	 * The request's key, and the store's generation (read at once from
	 * SQLite, one round trip to PostgreSQL); undefined when the request may
	 * not be answered from memory or the store cannot say (PostgreSQL
	 * unreachable: the request goes on as if there were no cache).
	 */
	#keyAndGeneration(request: IncomingMessage): [string, number] | Promise<[string, number] | undefined> | undefined {
		const key = this.options.maxBytes > 0 ? cacheKey(request.method, request.url, request.headers) : undefined;
		if (key === undefined) {
			return undefined;
		}

		try {
			const read = this.options.generation();
			return typeof read === 'number' ? [key, read] : read.then(generation => [key, generation] as [string, number], () => undefined);
		} catch {
			return undefined;
		}
	}

	/** The entry for `key` if it holds under `generation`; an entry that no longer holds is dropped. */
	#valid(key: string, generation: number): Entry | undefined {
		const entry = this.#entries.get(key);
		if (!entry) {
			return undefined;
		}

		if (entry.generation === generation && this.#now() < entry.answer.freshUntil) {
			return entry;
		}

		this.#entries.delete(key);
		return undefined;
	}

	/**
	 * For the HTTP server, before Koa: answers a hit and says so (true), or
	 * leaves the request to Koa (false). Only for servers where no middleware
	 * before the cache decides anything (no auth).
	 */
	early(log: Logger, metrics: Metrics) {
		const answer = (request: IncomingMessage, response: ServerResponse, [key, generation]: [string, number]): boolean => {
			const entry = this.#valid(key, generation);
			if (!entry) {
				return false;
			}

			const started = performance.now();
			const id = requestIdFrom(request.headers['x-request-id']);
			const {body} = entry.answer;
			for (let index = 0; index < entry.headers.length; index += 2) {
				response.setHeader(entry.headers[index]!, entry.headers[index + 1]!);
			}

			response.writeHead(200, {'X-Request-Id': id, 'Content-Length': body.length});
			response.end(request.method === 'HEAD' ? undefined : body);
			const path = request.url!.split('?', 1)[0]!;
			recordWhenDone(response, log, metrics, {
				id,
				method: request.method!,
				path,
				route: entry.route,
				status: () => 200,
				length: () => body.length,
				user: () => undefined,
				started,
			});
			this.#hit(entry, rawFacts(request, id));
			return true;
		};

		return (request: IncomingMessage, response: ServerResponse): boolean | Promise<boolean> => {
			const read = this.#keyAndGeneration(request);
			if (read === undefined) {
				return false;
			}

			return Array.isArray(read) ? answer(request, response, read) : read.then(found => found !== undefined && answer(request, response, found));
		};
	}

	middleware() {
		return async (ctx: MirrorContext, next: Next): Promise<void> => {
			const read = this.#keyAndGeneration(ctx.req);
			const found = read === undefined || Array.isArray(read) ? read : await read;
			if (found === undefined) {
				await next();
				return;
			}

			const [key, generation] = found;
			const entry = this.#valid(key, generation);
			if (entry) {
				this.#serve(ctx, entry);
				return;
			}

			await next();
			const answer = ctx.state.answer;
			if (answer && ctx.status === 200 && answer.body.length <= this.options.maxItemBytes && !ctx.response.get('Warning')) {
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
		const {headers} = entry;
		for (let index = 0; index < headers.length; index += 2) {
			ctx.set(headers[index]!, headers[index + 1]!);
		}

		ctx.body = entry.answer.body;
		// The request log and metrics label a request by the route that served it.
		ctx['_matchedRoute'] = entry.route;
		this.#hit(entry, factsOf(ctx));
	}

	#hit(entry: Entry, request: RequestFacts): void {
		this.options.onHit(entry.answer);
		entry.answer.replay(request);
	}

	#keep(ctx: MirrorContext, key: string, answer: CacheableAnswer, generation: number): void {
		// Spelled as the handler set them (Koa's view of the headers is lower-cased), so a repeat is the same answer.
		// (OutgoingMessage.getRawHeaderNames, in Node since 15.13; @types/node declares it on ClientRequest only.)
		const rawNames = (ctx.res as typeof ctx.res & {getRawHeaderNames(): string[]}).getRawHeaderNames();
		const spelled = new Map(rawNames.map(name => [name.toLowerCase(), name]));
		const headers: string[] = [];
		for (const [name, value] of Object.entries(ctx.response.headers)) {
			if (!PER_RESPONSE.has(name.toLowerCase())) {
				headers.push(spelled.get(name) ?? name, Array.isArray(value) ? value.join(', ') : String(value));
			}
		}

		this.#entries.set(key, {answer, headers, route: ctx['_matchedRoute'] as string | undefined, generation});
	}
}

/** The facts of a request answered before Koa (no auth there: no user). */
function rawFacts(request: IncomingMessage, id: string): RequestFacts {
	return {
		id,
		method: request.method ?? 'GET',
		host: request.headers.host ?? '',
		protocol: (request.socket as Partial<TLSSocket>).encrypted ? 'https' : 'http',
		userAgent: request.headers['user-agent'] ?? '',
		user: null,
		socket: request.socket,
	};
}
