/** Operations endpoints outside /v2/: /metrics, /healthz, /readyz. */
import {randomBytes} from 'node:crypto';
import {rm, writeFile} from 'node:fs/promises';
import path from 'node:path';
import {type MirrorContext} from './state.js';
import {type Metrics, type UpstreamHealth} from '../ops/metrics.js';
import {within} from '../util/within.js';
import {upstreamHealth} from './dashboard/overview.js';

/** How long a readiness check may take before it counts as not answering. */
const CHECK_TIMEOUT_MS = 3000;

export function metricsHandler(metrics: Metrics) {
	return async (ctx: MirrorContext): Promise<void> => {
		ctx.type = metrics.registry.contentType;
		ctx.body = await metrics.exposition();
	};
}

export function healthz() {
	return (ctx: MirrorContext): void => {
		ctx.body = {status: 'ok'};
	};
}

/**
 * Ready when the storage directory takes a write and every shared store
 * (database, S3, cluster locks) answers. Upstreams are reported, not
 * required: with one unreachable the mirror still serves what it has.
 */
export function readyz(storageDir: string, checks: Record<string, () => Promise<unknown>>, upstreams: () => UpstreamHealth[]) {
	return async (ctx: MirrorContext): Promise<void> => {
		const results: Record<string, string> = {};
		try {
			const probe = path.join(storageDir, 'tmp', `.readyz-${randomBytes(4).toString('hex')}`);
			await writeFile(probe, 'ok');
			await rm(probe, {force: true});
			results['storage'] = 'ok';
		} catch (error) {
			results['storage'] = `not writable: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
		}

		await Promise.all(
			Object.entries(checks).map(async ([name, check]) => {
				try {
					await within(check(), CHECK_TIMEOUT_MS, () => {
						throw new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`);
					});
					results[name] = 'ok';
				} catch (error) {
					results[name] = `not answering: ${error instanceof Error ? error.message || error.name : String(error)}`;
				}
			}),
		);

		const ready = Object.values(results).every(value => value === 'ok');
		ctx.status = ready ? 200 : 503;
		ctx.body = {status: ready ? 'ready' : 'not ready', checks: results, upstreams: Object.fromEntries(upstreams().map(upstream => [upstream.name, upstreamHealth(upstream)]))};
	};
}
