/** What the middlewares leave on `ctx.state` for the ones after them, typed once. */
import {type Next, type ParameterizedContext} from 'koa';
import {type CacheableAnswer} from './answer-cache.js';

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
