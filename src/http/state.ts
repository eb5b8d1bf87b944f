/** What the middlewares leave on `ctx.state` for the ones after them, typed once. */
import {type Next, type ParameterizedContext} from 'koa';

export type RequestState = {
	/** Set by the request log: the client's X-Request-Id when well-formed, else a fresh UUID. */
	requestId: string;
	/** Set by auth: the user name, null for an anonymous pull; absent without auth. */
	user?: string | null;
	/** Set by a read handler whose answer may be repeated from memory (answer-cache.ts). */
	answer?: CacheableAnswer;
};

export type MirrorContext = ParameterizedContext<RequestState>;

export type MirrorMiddleware = (ctx: MirrorContext, next: Next) => Promise<void>;

/** The user a request is made as, or null. */
export function userOf(ctx: MirrorContext): string | null {
	return ctx.state.user ?? null;
}

/**
 * What a log line, a pull count or a webhook event says about the request
 * behind it: the same whether Koa handled the request or the answer cache
 * answered it before Koa (answer-cache.ts).
 */
export type RequestFacts = {
	id: string;
	method: string;
	host: string;
	protocol: string;
	userAgent: string;
	user: string | null;
	socket: {remoteAddress?: string; remotePort?: number; localPort?: number};
};

export function factsOf(ctx: MirrorContext): RequestFacts {
	return {
		id: ctx.state.requestId,
		method: ctx.method,
		host: ctx.host,
		protocol: ctx.protocol,
		userAgent: ctx.get('user-agent'),
		user: userOf(ctx),
		socket: ctx.req.socket,
	};
}

/** What a handler offers to be answered again from memory. */
/** (Kept by http/answer-cache.ts.) */
export type CacheableAnswer = {
	kind: 'manifest' | 'blob';
	digest: string;
	/** The upstream of a cached namespace (hits are counted per upstream), undefined for local ones. */
	upstream?: string;
	/** Until when (ms since the epoch) the answer holds without asking the store or upstream again. */
	freshUntil: number;
	body: Buffer;
	/** What a repeat costs besides the bytes: pull counters and webhook events, as the handler does them. */
	replay(request: RequestFacts): void;
};
