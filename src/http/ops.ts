/** Operations endpoints outside /v2/: /metrics, /healthz, /readyz. */
import {randomBytes} from 'node:crypto';
import {rm, writeFile} from 'node:fs/promises';
import path from 'node:path';
import {type Context} from 'koa';
import {type Metrics} from '../metrics.js';
import {type MetadataStore} from '../store/metadata.js';

export function metricsHandler(metrics: Metrics) {
	return async (ctx: Context): Promise<void> => {
		ctx.type = metrics.registry.contentType;
		ctx.body = await metrics.registry.metrics();
	};
}

export function healthz() {
	return (ctx: Context): void => {
		ctx.body = {status: 'ok'};
	};
}

/** Ready when the storage directory takes a write and the database answers. */
export function readyz(storageDir: string, metadata: MetadataStore) {
	return async (ctx: Context): Promise<void> => {
		const checks: Record<string, string> = {};
		try {
			const probe = path.join(storageDir, 'tmp', `.readyz-${randomBytes(4).toString('hex')}`);
			await writeFile(probe, 'ok');
			await rm(probe, {force: true});
			checks['storage'] = 'ok';
		} catch (error) {
			checks['storage'] = `not writable: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
		}

		try {
			await metadata.cachedBytes();
			checks['database'] = 'ok';
		} catch (error) {
			checks['database'] = `not answering: ${String(error)}`;
		}

		const ready = Object.values(checks).every(value => value === 'ok');
		ctx.status = ready ? 200 : 503;
		ctx.body = {status: ready ? 'ready' : 'not ready', checks};
	};
}
