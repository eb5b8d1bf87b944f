/**
 * An upstream's pull budget as its answers announce it: Docker Hub's
 * `ratelimit-limit` / `ratelimit-remaining` (`100;w=21600`: a count and the
 * window in seconds), `docker-ratelimit-source` (whom it counts: an IP or an
 * account) and, on a 429, `Retry-After` (seconds or an HTTP date).
 */
import {type IncomingHttpHeaders} from 'node:http';

export type RateLimitSnapshot = {
	limit?: number;
	remaining?: number;
	/** The window the counts apply to, seconds (`w=`). */
	windowSeconds?: number;
	source?: string;
	/** Until when (ms since the epoch) the last 429 asked us to wait. */
	retryAfterUntil?: number;
	/** When the upstream last sent any of these headers. */
	updatedAt?: number;
};

/** `100;w=21600` (or a bare `100`) → the count and the window. */
export function parseQuota(value: string | string[] | undefined): {count: number; windowSeconds?: number} | undefined {
	const text = Array.isArray(value) ? value[0] : value;
	const match = /^\s*(\d+)\s*(?:;\s*w\s*=\s*(\d+))?/.exec(text ?? '');
	if (!match) {
		return undefined;
	}

	return {count: Number(match[1]), ...(match[2] === undefined ? {} : {windowSeconds: Number(match[2])})};
}

/** Retry-After as seconds or an HTTP date → milliseconds from `now` (at least 0). */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
	if (value === undefined || value.trim() === '') {
		return undefined;
	}

	if (/^\s*\d+\s*$/.test(value)) {
		return Number(value) * 1000;
	}

	const at = Date.parse(value);
	return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export class RateLimit {
	#state: RateLimitSnapshot = {};

	constructor(private readonly now: () => number = Date.now) {}

	get snapshot(): RateLimitSnapshot {
		return {...this.#state};
	}

	/** Takes in what one upstream answer says about the budget. */
	observe(status: number, headers: IncomingHttpHeaders): void {
		const now = this.now();
		const limit = parseQuota(headers['ratelimit-limit']);
		const remaining = parseQuota(headers['ratelimit-remaining']);
		const source = headers['docker-ratelimit-source'];
		const next = {...this.#state};
		let seen = false;
		if (limit) {
			next.limit = limit.count;
			next.windowSeconds = limit.windowSeconds ?? next.windowSeconds;
			seen = true;
		}

		if (remaining) {
			next.remaining = remaining.count;
			next.windowSeconds = remaining.windowSeconds ?? next.windowSeconds;
			seen = true;
		}

		if (typeof source === 'string' && source !== '') {
			next.source = source;
			seen = true;
		}

		if (status === 429) {
			const wait = parseRetryAfter(headers['retry-after'], now);
			next.retryAfterUntil = now + (wait ?? 0);
			seen = true;
		}

		if (seen) {
			next.updatedAt = now;
		}

		this.#state = next;
	}

	/** Seconds until the last 429's Retry-After ends (0 when it has). */
	retryAfterSeconds(): number {
		const until = this.#state.retryAfterUntil;
		return until === undefined ? 0 : Math.max(0, Math.ceil((until - this.now()) / 1000));
	}

	/**
	 * Whether the budget is short: fewer pulls left than `reserve`, or a
	 * 429's Retry-After still running. Counted pulls (manifest GETs) should
	 * then go only to content the mirror does not have.
	 */
	isShort(reserve: number): boolean {
		const {remaining} = this.#state;
		return (remaining !== undefined && remaining < reserve) || this.retryAfterSeconds() > 0;
	}
}
