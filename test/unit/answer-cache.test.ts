/**
 * The memory cache of answers in a Koa app of its own: what it keeps, what it
 * answers again, and what ends an entry (freshness, the generation, size).
 */
import test, {type ExecutionContext} from 'ava';
import Koa from 'koa';
import {type AddressInfo} from 'node:net';
import {AnswerCache, type AnswerCacheOptions} from '../../src/http/answer-cache.js';
import {type MirrorContext, type RequestState} from '../../src/http/state.js';

type Harness = {
	url: string;
	/** How many requests reached the handler behind the cache. */
	handled: () => number;
	hits: string[];
	replays: number;
	clock: {now: number};
	generation: {n: number};
	announced: number;
};

async function harness(t: ExecutionContext, options: Partial<AnswerCacheOptions> & {freshFor?: number; body?: (path: string) => Buffer} = {}): Promise<Harness> {
	const state: Harness = {url: '', handled: () => handled, hits: [], replays: 0, clock: {now: 1000}, generation: {n: 1}, announced: 0};
	let handled = 0;
	const cache = new AnswerCache({
		maxBytes: 1024 * 1024,
		maxItemBytes: 1024,
		generation: () => state.generation.n,
		announce: async () => {
			state.announced++;
		},
		onHit: answer => state.hits.push(`${answer.kind} ${answer.digest}`),
		now: () => state.clock.now,
		...options,
	});
	const app = new Koa<RequestState>();
	app.use(cache.announcer());
	app.use(cache.middleware());
	app.use(async (ctx: MirrorContext) => {
		handled++;
		if (ctx.method === 'DELETE') {
			state.generation.n++;
			ctx.status = 202;
			return;
		}

		if (ctx.path === '/missing') {
			ctx.status = 404;
			return;
		}

		const body = options.body?.(ctx.path) ?? Buffer.from(`body of ${ctx.path} for ${ctx.get('accept')}`);
		ctx.status = 200;
		ctx.set('Content-Type', 'application/test');
		ctx.set('Docker-Content-Digest', `sha256:${ctx.path.slice(1)}`);
		if (ctx.path === '/stale') {
			ctx.set('Warning', '299 - "stale"');
		}

		ctx.body = body;
		ctx.state.answer = {
			kind: 'manifest',
			digest: `sha256:${ctx.path.slice(1)}`,
			upstream: 'up',
			freshUntil: state.clock.now + (options.freshFor ?? 60_000),
			body,
			size: body.length,
			replay: () => {
				state.replays++;
			},
		};
	});
	const server = app.listen(0, '127.0.0.1');
	await new Promise(resolve => server.once('listening', resolve));
	t.teardown(() => server.close());
	state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
	return state;
}

async function get(h: Harness, path: string, headers: Record<string, string> = {}, method = 'GET') {
	const response = await fetch(`${h.url}${path}`, {headers, method});
	return {status: response.status, body: await response.text(), digest: response.headers.get('docker-content-digest'), type: response.headers.get('content-type'), length: response.headers.get('content-length')};
}

test('a repeat is answered from memory with the same bytes and headers; the hit and the replay are recorded', async t => {
	const h = await harness(t);
	const first = await get(h, '/a', {accept: 'x'});
	const second = await get(h, '/a', {accept: 'x'});
	t.deepEqual(second, first);
	t.is(second.length, String(Buffer.byteLength(first.body)));
	t.is(h.handled(), 1);
	t.deepEqual(h.hits, ['manifest sha256:a']);
	t.is(h.replays, 1);
	const head = await get(h, '/a', {accept: 'x'}, 'HEAD');
	t.is(head.status, 200);
	t.is(head.body, '');
	t.is(head.length, first.length, 'HEAD from memory says the length of the body');
	t.is(h.handled(), 1);
});

test('entries are per Accept header and query; ranges and conditionals always go through', async t => {
	const h = await harness(t);
	await get(h, '/a', {accept: 'x'});
	t.is((await get(h, '/a', {accept: 'y'})).body, 'body of /a for y');
	await get(h, '/a?ns=other', {accept: 'x'});
	t.is(h.handled(), 3);
	await get(h, '/a', {accept: 'x', range: 'bytes=0-1'});
	await get(h, '/a', {accept: 'x', 'if-none-match': '"sha256:a"'});
	t.is(h.handled(), 5);
});

test('an answer ends when it is no longer fresh or the generation moves; a write that moves it is announced', async t => {
	const h = await harness(t, {freshFor: 5000});
	await get(h, '/a');
	h.clock.now += 4999;
	await get(h, '/a');
	t.is(h.handled(), 1);
	h.clock.now += 1;
	await get(h, '/a');
	t.is(h.handled(), 2, 'past freshUntil: asked again');

	t.is((await get(h, '/a', {}, 'DELETE')).status, 202);
	t.is(h.announced, 1, 'the delete moved the generation: the other workers are told');
	await get(h, '/a');
	t.is(h.handled(), 4, 'an entry of an older generation is not used');
});

test('errors, stale answers and bodies over the item size are not kept', async t => {
	const h = await harness(t, {body: path => (path === '/big' ? Buffer.alloc(1025, 1) : Buffer.from(path))});
	for (const path of ['/missing', '/stale', '/big']) {
		await get(h, path);
		await get(h, path);
	}

	t.is(h.handled(), 6);
	t.deepEqual(h.hits, []);
});

test('max_size 0 turns the cache off', async t => {
	const h = await harness(t, {maxBytes: 0});
	await get(h, '/a');
	await get(h, '/a');
	t.is(h.handled(), 2);
});
