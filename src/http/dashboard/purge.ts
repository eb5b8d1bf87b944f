/**
 * Purge from the dashboard: GET PREFIX/dashboard/purge?name=&tag= asks for a
 * confirmation, its form POSTs back, and the purge runs (service/purge.ts).
 * Admin-only with auth; refused for pushed repositories; a POST from another
 * site (a cross-site form riding on the browser's login) is refused.
 */
import {RegistryError} from '../../v2/errors.js';
import {type MirrorContext} from '../state.js';
import {type DashboardDeps, mayPurge} from './deps.js';
import {href, html, page, sendPage, stringParameter} from './layout.js';

const MAX_FORM_BYTES = 4096;

async function readForm(ctx: MirrorContext): Promise<URLSearchParams> {
	if (!ctx.is('application/x-www-form-urlencoded')) {
		throw new RegistryError('UNSUPPORTED', {message: 'send the form as application/x-www-form-urlencoded'});
	}

	const chunks: Buffer[] = [];
	let size = 0;
	for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
		size += chunk.length;
		if (size > MAX_FORM_BYTES) {
			throw new RegistryError('SIZE_INVALID', {message: 'form too large'}, 413);
		}

		chunks.push(chunk);
	}

	return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sameOrigin(ctx: MirrorContext): boolean {
	if (ctx.get('sec-fetch-site') === 'cross-site') {
		return false;
	}

	const origin = ctx.get('origin');
	if (!origin || origin === 'null') {
		return origin !== 'null';
	}

	try {
		return new URL(origin).host === ctx.host;
	} catch {
		return false;
	}
}

function target(name: string, tag: string): string {
	return tag ? `${name}:${tag}` : name;
}

function refuse(ctx: MirrorContext, deps: DashboardDeps, status: number, message: string): void {
	sendPage(ctx, page({base: deps.prefix, title: 'Purge refused', body: html`<p class="notice" id="purge-error">${message}</p>`, user: ctx.state.user}), status);
}

export function purgeConfirm(deps: DashboardDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const name = stringParameter(ctx.query['name']);
		const tag = stringParameter(ctx.query['tag'], 128);
		if (!mayPurge(deps, ctx.state.user)) {
			refuse(ctx, deps, 403, 'Only administrators (auth.admins) may purge.');
			return;
		}

		const what = target(name, tag);
		const body = html`<p class="notice">Purge <b>${what}</b> from the cache? ${tag ? 'The tag' : 'Every cached tag of the repository'} is forgotten: the next pull fetches it from the upstream again. Layers nothing else uses are removed by the next <code>gc</code>.</p>
<form method="post" action="${deps.prefix}/dashboard/purge" id="purge-form">
<input type="hidden" name="name" value="${name}"><input type="hidden" name="tag" value="${tag}">
<button class="danger" type="submit" id="confirm">Yes, purge ${what}</button>
<a href="${href(deps.prefix, '/dashboard/repository', {name})}">Cancel</a>
</form>`;
		sendPage(ctx, page({base: deps.prefix, title: `Purge ${what}?`, body, user: ctx.state.user}));
	};
}

export function purgeSubmit(deps: DashboardDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		if (!mayPurge(deps, ctx.state.user)) {
			refuse(ctx, deps, 403, 'Only administrators (auth.admins) may purge.');
			return;
		}

		if (!sameOrigin(ctx)) {
			refuse(ctx, deps, 403, 'A purge must come from this dashboard.');
			return;
		}

		const form = await readForm(ctx);
		const name = form.get('name') ?? '';
		const tag = form.get('tag') ?? '';
		try {
			const result = await deps.purger.purge(target(name, tag));
			const body = html`<p class="done" id="purge-result">Purged ${target(result.repository, result.tag ?? '')}: ${result.tags.length} ${result.tags.length === 1 ? 'tag' : 'tags'} (${result.tags.join(', ')}) and ${result.manifests} manifest ${result.manifests === 1 ? 'link' : 'links'} removed. The next pull fetches from ${result.upstream}.</p>
<p><a href="${deps.prefix}/dashboard/repositories">Back to the repositories</a></p>`;
			sendPage(ctx, page({base: deps.prefix, title: 'Purged', body, user: ctx.state.user}));
		} catch (error) {
			if (error instanceof RegistryError) {
				refuse(ctx, deps, error.status, `${target(name, tag)}: ${error.message}`);
				return;
			}

			throw error;
		}
	};
}

/** DELETE PREFIX/api/cache/NAME[:TAG]: the same purge for scripts, answering JSON (V2 errors on failure). */
export function purgeApi(deps: Pick<DashboardDeps, 'purger'>) {
	return async (ctx: MirrorContext): Promise<void> => {
		const reference = (ctx.params as Record<string, string | undefined>)['reference'] ?? '';
		ctx.body = await deps.purger.purge(reference);
	};
}
