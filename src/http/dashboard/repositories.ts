/**
 * PREFIX/dashboard/repositories: every repository (cached per upstream, and
 * pushed), searchable and paged with query strings (`q`, `kind`, `page`),
 * so it works without JavaScript and reads one page of rows from the store.
 */
import {clientName} from '../../service/namespaces.js';
import {formatBytes} from '../../util/format.js';
import {type MirrorContext} from '../state.js';
import {type DashboardDeps} from './deps.js';
import {href, html, intParameter, page, sendPage, stringParameter, table, when, type Html} from './layout.js';

export const PAGE_SIZE = 50;

export function repositories(deps: DashboardDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const search = stringParameter(ctx.query['q'], 100).trim();
		const kindParameter = stringParameter(ctx.query['kind']);
		const kind = kindParameter === 'cached' || kindParameter === 'pushed' ? kindParameter : undefined;
		const pageNumber = Math.max(1, intParameter(ctx.query['page'], 1, 1_000_000));
		const {total, rows} = await deps.catalog.repositoryPage({search, kind, offset: (pageNumber - 1) * PAGE_SIZE, limit: PAGE_SIZE});
		const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
		const base = deps.prefix;
		const link = (pageAt: number) => href(base, '/dashboard/repositories', {q: search, kind, page: pageAt > 1 ? pageAt : undefined});
		const tableRows: Html[][] = rows.map(repo => {
			const name = clientName(repo, deps.rules);
			return [
				html`<a href="${href(base, '/dashboard/repository', {name})}">${name}</a>`,
				repo.registry === '' ? html`pushed` : html`cached from ${repo.registry}`,
				html`${repo.tags}`,
				html`${formatBytes(repo.bytes)}`,
				html`${when(repo.lastAccess)}`,
				html`${deps.metrics.pulls.get(name) ?? 0}`,
			];
		});
		const option = (value: string, label: string) => html`<option value="${value}"${(kind ?? '') === value ? html` selected` : undefined}>${label}</option>`;
		const body = [
			html`<form method="get" action="${base}/dashboard/repositories" id="search">
<input type="search" name="q" value="${search}" placeholder="name contains…" aria-label="search">
<select name="kind" aria-label="kind">${[option('', 'all'), option('cached', 'cached'), option('pushed', 'pushed')]}</select>
<button type="submit">Search</button></form>`,
			html`<p id="count">${total} ${total === 1 ? 'repository' : 'repositories'}${search ? ` matching “${search}”` : ''} · page ${pageNumber} of ${pages}</p>`,
			table(['repository', 'kind', 'tags', 'size', 'last pull', 'pulls'], tableRows, 'no repositories', 'repositories'),
			html`<nav class="pager">${pageNumber > 1 ? html`<a rel="prev" href="${link(pageNumber - 1)}">← previous</a>` : undefined}
<span>page ${pageNumber} of ${pages}</span>${pageNumber < pages ? html`<a rel="next" href="${link(pageNumber + 1)}">next →</a>` : undefined}</nav>`,
			html`<p class="muted">Sizes count each blob a repository links; pulls are counted since this process started.</p>`,
		];
		sendPage(ctx, page({base, title: 'Repositories', body, user: ctx.state.user}));
	};
}
