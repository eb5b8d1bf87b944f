/** One log line and one metric per request, with a request id the client can quote. */
import {randomUUID} from 'node:crypto';
import {type ServerResponse} from 'node:http';
import {type Next} from 'koa';
import {type Metrics} from '../ops/metrics.js';
import {type Logger} from '../util/log.js';
import {type MirrorContext} from './state.js';

/** The client's X-Request-Id when it is well-formed, else a fresh one. */
export function requestIdFrom(incoming: string | string[] | undefined): string {
	return typeof incoming === 'string' && /^[\w.-]{1,64}$/.test(incoming) ? incoming : randomUUID();
}

/** What one request's line and counters say, read once its response is done. */
export type RequestRecord = {
	id: string;
	method: string;
	path: string;
	/** The route that served it, for the metric's label. */
	route: string | undefined;
	status: () => number;
	length: () => number | undefined;
	user: () => string | null | undefined;
	started: number;
};

/**
 * Counts and logs `record` once its response is done: right after the last
 * byte was handed to the kernel, before the client can have it all (so a
 * client that reads /metrics after a download sees the download counted),
 * or as incomplete when the connection closed first.
 */
export function recordWhenDone(response: ServerResponse, log: Logger, metrics: Metrics, record: RequestRecord): void {
	const kind = record.path.includes('/blobs/') ? 'blob' : record.path.includes('/manifests/') ? 'manifest' : undefined;
	let recorded = false;
	const done = (complete: boolean) => {
		if (recorded) {
			return;
		}

		recorded = true;
		const status = record.status();
		const length = record.length();
		metrics.requests.inc({route: record.route ?? 'unmatched', method: record.method, status: String(status)});
		if (complete && kind && record.method === 'GET' && status < 300 && typeof length === 'number') {
			metrics.bytesServed.inc({kind}, length);
		}

		if (!log.isLevelEnabled('info')) {
			return;
		}

		log.info(
			{id: record.id, method: record.method, path: record.path, status, ms: Math.round(performance.now() - record.started), bytes: length, complete, user: record.user()},
			'request',
		);
	};

	if (response.writableFinished) {
		done(true);
	} else {
		// 'close' follows 'finish' (on the next tick) or comes alone when the connection broke first.
		response.once('close', () => done(response.writableFinished));
	}
}

export function requestLog(log: Logger, metrics: Metrics) {
	return async (ctx: MirrorContext, next: Next): Promise<void> => {
		const started = performance.now();
		const id = requestIdFrom(ctx.headers['x-request-id']);
		ctx.state.requestId = id;
		ctx.set('X-Request-Id', id);
		try {
			await next();
		} finally {
			recordWhenDone(ctx.res, log, metrics, {
				id,
				method: ctx.method,
				path: ctx.path,
				route: ctx['_matchedRoute'] as string | undefined,
				status: () => ctx.status,
				length: () => ctx.length,
				user: () => ctx.state.user,
				started,
			});
		}
	};
}
