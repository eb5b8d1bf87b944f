/** `n` / `last` pagination for tags/list and _catalog, as the distribution-spec describes it. */
import {RegistryError} from './errors.js';

export const MAX_PAGE = 10_000;

export function parsePage(query: Record<string, string | string[] | undefined>): {n?: number; last?: string} {
	const page: {n?: number; last?: string} = {};
	const n = query['n'];
	if (n !== undefined) {
		const value = Array.isArray(n) ? n[0] : n;
		if (value === undefined || !/^\d+$/.test(value)) {
			throw new RegistryError('PAGINATION_NUMBER_INVALID', {detail: {n: value}});
		}

		page.n = Math.min(Number(value), MAX_PAGE);
	}

	const last = query['last'];
	if (last !== undefined) {
		page.last = Array.isArray(last) ? last[0] : last;
	}

	return page;
}

/**
 * The spec's "lexical order (i.e. case-insensitive alphanumeric order)";
 * names that differ only in case fall back to code point order.
 */
export function lexical(a: string, b: string): number {
	const left = a.toLowerCase();
	const right = b.toLowerCase();
	if (left !== right) {
		return left < right ? -1 : 1;
	}

	return a < b ? -1 : a > b ? 1 : 0;
}

/** Sorted `items` after `last`, at most `n`; `next` is set when more remain. */
export function paginate(items: readonly string[], page: {n?: number; last?: string}): {tags: string[]; next?: string} {
	const sorted = [...items].sort(lexical);
	const after = page.last === undefined ? sorted : sorted.filter(item => lexical(item, page.last!) > 0);
	if (page.n === undefined || after.length <= page.n) {
		return {tags: after};
	}

	const tags = after.slice(0, page.n);
	return {tags, next: tags.at(-1)};
}
