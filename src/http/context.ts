/** What every handler needs: turn a request into a target and pick its service. */
import {type Context} from 'koa';
import {type LocalWriter} from '../local/push.js';
import {type LocalService} from '../local/service.js';
import {type UploadService} from '../local/uploads.js';
import {type LocalTarget, type NamespaceRouter, type Target} from '../namespaces.js';
import {type ReadService} from '../services.js';
import {type ProxyService} from '../proxy/service.js';
import {type MetadataStore} from '../store/metadata.js';
import {RegistryError} from '../v2/errors.js';
import {parseName} from '../v2/grammar.js';

export type HandlerDeps = {
	namespaces: NamespaceRouter;
	proxy: ProxyService;
	local: LocalService;
	writer: LocalWriter;
	uploads: UploadService;
	metadata: MetadataStore;
	/** The path prefix the API is served under ('' or like /registry). */
	prefix: string;
	/** Base URL for Location headers (public_url), or '' for relative ones. */
	publicUrl: string;
};

export function params(ctx: Context): Record<string, string> {
	return (ctx['params'] as Record<string, string> | undefined) ?? {};
}

export function targetOf(ctx: Context, deps: HandlerDeps): Target {
	const name = parseName(params(ctx)['name'] ?? '');
	const ns = typeof ctx.query['ns'] === 'string' ? ctx.query['ns'] : undefined;
	return deps.namespaces.resolve(name, ns);
}

/** The target of a write: only local namespaces take pushes and deletes. */
export function writableTargetOf(ctx: Context, deps: HandlerDeps): LocalTarget {
	const target = targetOf(ctx, deps);
	if (target.kind !== 'local') {
		throw new RegistryError('UNSUPPORTED', {
			message: `${target.clientName} is a cached namespace of upstream ${target.upstream.name}: it is read-only; push to a local namespace`,
			detail: {name: target.clientName, upstream: target.upstream.name},
		});
	}

	return target;
}

export function readService(deps: HandlerDeps, target: Target): ReadService {
	return (target.kind === 'cached' ? deps.proxy : deps.local) as ReadService;
}

/** A Location header value for a path under /v2/. */
export function location(deps: HandlerDeps, path: string): string {
	return `${deps.publicUrl}${deps.prefix}/v2/${path}`;
}
