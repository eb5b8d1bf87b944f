/**
 * The first middleware: every /v2/ response carries the API version header,
 * and every error becomes a V2 JSON body with its code and status. When the
 * headers are already out (a blob stream failed midway), the only honest
 * thing left is to cut the connection, so the client sees an error and not a
 * complete-looking response.
 */
import {type Next} from 'koa';
import {type MirrorContext} from './state.js';
import {type Logger} from '../util/log.js';
import {FrameworkError, RegistryError, TooLargeError} from '../v2/errors.js';

export const API_VERSION_HEADER = 'Docker-Distribution-API-Version';

export function toRegistryError(error: unknown): RegistryError {
	if (error instanceof RegistryError) {
		return error;
	}

	const status = (error as {status?: unknown; expose?: unknown}).status;
	if (typeof status === 'number' && status === 413) {
		return new TooLargeError('SIZE_INVALID', {message: 'request body too large'});
	}

	if (typeof status === 'number' && status >= 400 && status < 500) {
		return new FrameworkError(status, {message: (error as Error).message});
	}

	return new RegistryError('UNKNOWN', {cause: error});
}

export function errorMiddleware(log: Logger) {
	return async (ctx: MirrorContext, next: Next): Promise<void> => {
		ctx.set(API_VERSION_HEADER, 'registry/2.0');
		try {
			await next();
			if (ctx.status === 404 && ctx.body === undefined) {
				throw new RegistryError('NOT_FOUND', {detail: {path: ctx.path.slice(0, 300)}});
			}
		} catch (error) {
			const registryError = toRegistryError(error);
			if (registryError.code === 'UNKNOWN') {
				log.error({err: error, method: ctx.method, path: ctx.path}, 'request failed');
			}

			if (ctx.headerSent || !ctx.writable) {
				ctx.req.socket.destroy();
				return;
			}

			ctx.remove('Content-Length');
			ctx.remove('Content-Range');
			ctx.remove('Docker-Content-Digest');
			ctx.set(API_VERSION_HEADER, 'registry/2.0');
			for (const [name, value] of Object.entries(registryError.headers)) {
				ctx.set(name, value);
			}

			ctx.status = registryError.status;
			ctx.type = 'application/json';
			ctx.body = registryError.toJSON();
		}
	};
}
