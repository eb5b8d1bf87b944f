import {type MirrorContext} from './state.js';
import {parsePage} from '../v2/pagination.js';
import {type HandlerDeps, queryParam, readService, targetOf} from './context.js';

/** The `Link: <...>; rel="next"` header for a paginated list, keeping `ns`. */
export function nextLink(ctx: MirrorContext, path: string, n: number | undefined, last: string): string {
	const query = new URLSearchParams();
	const ns = queryParam(ctx, 'ns');
	if (ns !== undefined) {
		query.set('ns', ns);
	}

	if (n !== undefined) {
		query.set('n', String(n));
	}

	query.set('last', last);
	return `<${path}?${query.toString()}>; rel="next"`;
}

export function listTags(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = targetOf(ctx, deps);
		const page = parsePage(ctx.query);
		const list = await readService(deps, target).listTags(target, page);
		if (list.next !== undefined) {
			ctx.set('Link', nextLink(ctx, `${deps.prefix}/v2/${target.clientName}/tags/list`, page.n, list.next));
		}

		ctx.status = 200;
		ctx.body = {name: list.name, tags: list.tags};
	};
}
