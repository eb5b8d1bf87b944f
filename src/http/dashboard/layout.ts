/**
 * The dashboard's shared pieces: escaping, the page frame with its
 * navigation, tables, a pager, and the sections a page is made of. Every
 * value that reaches HTML goes through `escape` (or `html`'s interpolation).
 */
import {type MirrorContext} from '../state.js';

export function escape(text: string | number): string {
	return String(text).replace(/[&<>"']/g, char => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'})[char]!);
}

/** Markup that is already safe (built by these helpers). */
export class Html {
	constructor(readonly value: string) {}
	toString(): string {
		return this.value;
	}
}

/** A template tag: interpolated strings and numbers are escaped, Html and arrays of Html are not. */
export function html(strings: TemplateStringsArray, ...values: Array<string | number | Html | Html[] | undefined>): Html {
	let out = strings[0]!;
	for (const [index, value] of values.entries()) {
		const part = value === undefined ? '' : value instanceof Html ? value.value : Array.isArray(value) ? value.map(item => item.value).join('') : escape(value);
		out += part + strings[index + 1]!;
	}

	return new Html(out);
}

/** One block of a page (a panel of the overview, a table of a detail page). */
export type Section = {id: string; title: string; body: Html};

export function section(part: Section): Html {
	return html`<section id="${part.id}"><h2>${part.title}</h2>${part.body}</section>`;
}

/** A link to another dashboard page: `path` below the dashboard root, with query parameters. */
export function href(base: string, path: string, query: Record<string, string | number | undefined> = {}): string {
	const parameters = new URLSearchParams();
	for (const [key, value] of Object.entries(query)) {
		if (value !== undefined && value !== '') {
			parameters.set(key, String(value));
		}
	}

	const search = parameters.toString();
	return `${base}${path}${search ? `?${search}` : ''}`;
}

export function table(headers: string[], rows: Html[][], empty: string, id?: string): Html {
	const head = headers.map(header => html`<th>${header}</th>`);
	const body = rows.length === 0 ? [html`<tr><td colspan="${headers.length}">${empty}</td></tr>`] : rows.map(row => html`<tr>${row.map(cell => html`<td>${cell}</td>`)}</tr>`);
	return html`<table${id ? new Html(` id="${escape(id)}"`) : undefined}><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

export const NAV = [
	{path: '/', title: 'Overview'},
	{path: '/dashboard/repositories', title: 'Repositories'},
] as const;

/** The page frame. `base` is the site prefix; `refresh` reloads the page every N seconds. */
export function page(options: {base: string; title: string; body: Html | Html[]; refresh?: number; user?: string | null}): string {
	const nav = NAV.map(entry => html`<a href="${options.base}${entry.path}">${entry.title}</a>`);
	return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${options.refresh ? `<meta http-equiv="refresh" content="${options.refresh}">` : ''}
<title>${escape(options.title)} · registry-mirror</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#222}
header{background:#1f3a5f;color:#fff;padding:.6rem 2rem;display:flex;gap:1.5rem;align-items:baseline}
header a{color:#fff;text-decoration:none} header b{font-size:1.1rem;margin-right:1rem} header .user{margin-left:auto;opacity:.8}
main{margin:1.5rem 2rem;max-width:80rem}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem}
.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:.8rem 1rem;min-width:12rem}
.card b{display:block;font-size:1.5rem}
.charts{display:flex;gap:1rem;flex-wrap:wrap}
.chart{border:1px solid #ddd;border-radius:6px;padding:.5rem}
table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #eee;padding:.3rem .5rem;text-align:left;vertical-align:top}
td.num,th.num{text-align:right}
code{font-size:.85em}
.ok{color:#186a3b}.bad{color:#b03a2e}.muted{color:#777}
form.inline{display:inline}
.pager{margin:1rem 0;display:flex;gap:1rem;align-items:center}
button.danger{background:#b03a2e;color:#fff;border:0;border-radius:4px;padding:.3rem .8rem;cursor:pointer}
.notice{border-left:4px solid #b03a2e;background:#fbeeee;padding:.6rem 1rem}
.done{border-left:4px solid #186a3b;background:#eef8f0;padding:.6rem 1rem}
</style>
</head>
<body>
<header><b>registry-mirror</b>${nav.map(link => link.value).join(' ')}${options.user ? `<span class="user">${escape(options.user)}</span>` : ''}</header>
<main>
<h1>${escape(options.title)}</h1>
${(Array.isArray(options.body) ? options.body : [options.body]).map(part => part.value).join('\n')}
</main>
</body>
</html>
`;
}

/** Sends a rendered page. */
export function sendPage(ctx: MirrorContext, body: string, status = 200): void {
	ctx.status = status;
	ctx.type = 'text/html; charset=utf-8';
	ctx.set('Cache-Control', 'no-store');
	ctx.body = body;
}

/** A non-negative integer query parameter, or the fallback. */
export function intParameter(value: unknown, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
	const text = typeof value === 'string' ? value : '';
	return /^\d{1,9}$/.test(text) ? Math.min(Number(text), max) : fallback;
}

export function stringParameter(value: unknown, maxLength = 300): string {
	return typeof value === 'string' ? value.slice(0, maxLength) : '';
}

export function when(at: number): string {
	return at > 0 ? new Date(at).toISOString().replace('T', ' ').slice(0, 19) : '–';
}
