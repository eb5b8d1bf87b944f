import test from 'ava';
import {RegistryError} from '../../src/v2/errors.js';
import {MAX_PAGE, paginate, parsePage} from '../../src/v2/pagination.js';

test('parsePage with nothing', t => {
	t.deepEqual(parsePage({}), {});
});

test('parsePage reads n and last', t => {
	t.deepEqual(parsePage({n: '10'}), {n: 10});
	t.deepEqual(parsePage({n: '0'}), {n: 0});
	t.deepEqual(parsePage({n: '007'}), {n: 7});
	t.deepEqual(parsePage({last: 'v1'}), {last: 'v1'});
	t.deepEqual(parsePage({n: '2', last: 'b'}), {n: 2, last: 'b'});
	t.deepEqual(parsePage({n: ['3', '4'], last: ['x', 'y']}), {n: 3, last: 'x'});
	t.deepEqual(parsePage({last: ''}), {last: ''});
});

test('n must be digits', t => {
	for (const n of ['', 'abc', '-1', '1.5', '1e3', ' 5', '+5', '0x10']) {
		const error = t.throws(() => parsePage({n}), {instanceOf: RegistryError});
		t.is(error?.code, 'PAGINATION_NUMBER_INVALID', JSON.stringify(n));
		t.is(error?.status, 400);
		t.is(error?.message, 'invalid number of results requested');
		t.deepEqual(error?.detail, {n});
	}

	const empty = t.throws(() => parsePage({n: []}), {instanceOf: RegistryError});
	t.is(empty?.code, 'PAGINATION_NUMBER_INVALID');
});

test('n is capped at MAX_PAGE', t => {
	t.is(MAX_PAGE, 10_000);
	t.deepEqual(parsePage({n: '10000'}), {n: 10_000});
	t.deepEqual(parsePage({n: '10001'}), {n: MAX_PAGE});
	t.deepEqual(parsePage({n: '99999999999999999999999'}), {n: MAX_PAGE});
});

const ITEMS = ['c', 'a', 'e', 'b', 'd'];

test('paginate with no page returns everything sorted', t => {
	t.deepEqual(paginate(ITEMS, {}), {tags: ['a', 'b', 'c', 'd', 'e']});
	t.deepEqual(paginate([], {}), {tags: []});
	t.deepEqual(ITEMS, ['c', 'a', 'e', 'b', 'd'], 'input not mutated');
});

test('paginate sorts case-insensitively, code units breaking ties, and last follows the same order', t => {
	t.deepEqual(paginate(['v10', 'V2', 'v2', '1.0', 'latest', 'Beta'], {}), {tags: ['1.0', 'Beta', 'latest', 'v10', 'V2', 'v2']});
	t.deepEqual(paginate(['v10', 'V2', 'v2', '1.0', 'latest', 'Beta'], {last: 'beta', n: 2}), {tags: ['latest', 'v10'], next: 'v10'});
});

test('next only when more remain', t => {
	t.deepEqual(paginate(ITEMS, {n: 2}), {tags: ['a', 'b'], next: 'b'});
	t.deepEqual(paginate(ITEMS, {n: 4}), {tags: ['a', 'b', 'c', 'd'], next: 'd'});
	t.deepEqual(paginate(ITEMS, {n: 5}), {tags: ['a', 'b', 'c', 'd', 'e']});
	t.deepEqual(paginate(ITEMS, {n: 50}), {tags: ['a', 'b', 'c', 'd', 'e']});
	t.false('next' in paginate(ITEMS, {n: 5}));
});

test('last filters strictly after, whether or not it exists', t => {
	t.deepEqual(paginate(ITEMS, {last: 'b'}), {tags: ['c', 'd', 'e']});
	t.deepEqual(paginate(ITEMS, {last: 'bb'}), {tags: ['c', 'd', 'e']});
	t.deepEqual(paginate(ITEMS, {last: 'e'}), {tags: []});
	t.deepEqual(paginate(ITEMS, {last: ''}), {tags: ['a', 'b', 'c', 'd', 'e']});
	t.deepEqual(paginate(ITEMS, {last: 'b', n: 2}), {tags: ['c', 'd'], next: 'd'});
	t.deepEqual(paginate(ITEMS, {last: 'c', n: 2}), {tags: ['d', 'e']});
});

test('walking pages with next visits every item once', t => {
	const items = Array.from({length: 23}, (_, index) => `t${String(index).padStart(2, '0')}`);
	const seen: string[] = [];
	let last: string | undefined;
	for (let pages = 0; pages < 10; pages++) {
		const page = paginate(items, last === undefined ? {n: 5} : {n: 5, last});
		seen.push(...page.tags);
		if (page.next === undefined) {
			break;
		}

		t.is(page.tags.at(-1), page.next);
		last = page.next;
	}

	t.deepEqual(seen, items);
});

test('n=0 returns no tags and no next', t => {
	const page = paginate(ITEMS, {n: 0});
	t.deepEqual(page.tags, []);
	t.is(page.next, undefined);
});
