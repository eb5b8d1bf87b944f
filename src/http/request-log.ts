/** One log line and one metric per request, with a request id the client can quote. */
import {randomUUID} from 'node:crypto';
import {type Next} from 'koa';
import {type Metrics} from '../ops/metrics.js';
import {type Logger} from '../util/log.js';
import {type MirrorContext} from './state.js';

export function requestLog(log: Logger, metrics: Metrics) {
	return async (ctx: MirrorContext, next: Next): Promise<void> => {
		const started = performance.now();
		const incoming = ctx.get('x-request-id');
		const id = /^[\w.-]{1,64}$/.test(incoming) ? incoming : randomUUID();
		ctx.state.requestId = id;
		ctx.set('X-Request-Id', id);
		try {
			await next();
		} finally {
			const kind = ctx.path.includes('/blobs/') ? 'blob' : ctx.path.includes('/manifests/') ? 'manifest' : undefined;
			let recorded = false;
			const done = (complete: boolean) => {
				if (recorded) {
					return;
				}

				recorded = true;
				const route = (ctx['_matchedRoute'] as string | undefined) ?? 'unmatched';
				metrics.requests.inc({route, method: ctx.method, status: String(ctx.status)});
				if (complete && kind && ctx.method === 'GET' && ctx.status < 300 && typeof ctx.length === 'number') {
					metrics.bytesServed.inc({kind}, ctx.length);
				}

				if (!log.isLevelEnabled('info')) {
					return;
				}

				log.info(
					{id, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(performance.now() - started), bytes: ctx.length, complete, user: ctx.state.user},
					'request',
				);
			};

			// 'finish' (the last byte handed to the kernel) comes before the client can have it all,
			// so a client that reads /metrics after a download sees the download counted.
			if (ctx.res.writableFinished) {
				done(true);
			} else {
				ctx.res.once('finish', () => done(true));
				ctx.res.once('close', () => done(false));
			}
		}
	};
}
