/** What every handler needs: turn a request into a target and pick its service. */
import {type Context} from 'koa';
import {type LocalService} from '../local/service.js';
import {type NamespaceRouter, type Target} from '../namespaces.js';
import {type ReadService} from '../services.js';
import {type ProxyService} from '../proxy/service.js';
import {parseName} from '../v2/grammar.js';

export type HandlerDeps = {
	namespaces: NamespaceRouter;
	proxy: ProxyService;
	local: LocalService;
	/** The path prefix the API is served under ('' or like /registry). */
	prefix: string;
};

export function targetOf(ctx: Context, deps: HandlerDeps): Target {
	const params = ctx['params'] as Record<string, string>;
	const name = parseName(params['name'] ?? '');
	const ns = typeof ctx.query['ns'] === 'string' ? ctx.query['ns'] : undefined;
	return deps.namespaces.resolve(name, ns);
}

export function readService(deps: HandlerDeps, target: Target): ReadService {
	return (target.kind === 'cached' ? deps.proxy : deps.local) as ReadService;
}
