/**
 * The memory cache of answers in a Koa app of its own: what it keeps, what it
 * answers again, and what ends an entry (freshness, the generation, size).
 * Every test runs twice: hits answered by the Koa middleware (as with auth),
 * and before Koa by the HTTP server's early path (as without).
 */
import test, {type ExecutionContext} from 'ava';
import Koa from 'koa';
import http from 'node:http';
import {type AddressInfo} from 'node:net';
import {AnswerCache, type AnswerCacheOptions} from '../../src/http/answer-cache.js';
import {createServer} from '../../src/http/server.js';
import {type MirrorContext, type RequestState} from '../../src/http/state.js';
import {Metrics} from '../../src/ops/metrics.js';
import {silentLogger} from '../../src/util/log.js';

type Harness = {
	url: string;
	metrics: Metrics;
	/** How many requests reached the handler behind the cache. */
	handled: () => number;
	hits: string[];
	replays: number;
	clock: {now: number};
	generation: {n: number};
	announced: number;
};

type Path = 'koa' | 'early';
type HarnessOptions = Partial<AnswerCacheOptions> & {freshFor?: number; body?: (path: string) => Buffer};

async function harness(t: ExecutionContext, path: Path, options: HarnessOptions = {}): Promise<Harness> {
	const metrics = new Metrics({fillsInFlight: () => 0, storeBytes: async () => ({cached: 0, pushed: 0}), maxSize: undefined, upstreams: () => []});
	const state: Harness = {url: '', metrics, handled: () => handled, hits: [], replays: 0, clock: {now: 1000}, generation: {n: 1}, announced: 0};
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
			replay: () => {
				state.replays++;
			},
		};
	});
	const server = createServer({koa: app, early: path === 'early' ? cache.early(silentLogger(), metrics) : undefined}, {tls: undefined}).listen(0, '127.0.0.1');
	await new Promise(resolve => server.once('listening', resolve));
	t.teardown(() => server.close());
	state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
	return state;
}

async function get(h: Harness, path: string, headers: Record<string, string> = {}, method = 'GET') {
	const response = await fetch(`${h.url}${path}`, {headers, method});
	return {status: response.status, body: await response.text(), digest: response.headers.get('docker-content-digest'), type: response.headers.get('content-type'), length: response.headers.get('content-length')};
}

for (const path of ['koa', 'early'] as const) {
	test(`${path}: a repeat is answered from memory with the same bytes and headers; the hit and the replay are recorded`, async t => {
		const h = await harness(t, path);
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

	test(`${path}: entries are per Accept header and query; ranges and conditionals always go through`, async t => {
		const h = await harness(t, path);
		await get(h, '/a', {accept: 'x'});
		t.is((await get(h, '/a', {accept: 'y'})).body, 'body of /a for y');
		await get(h, '/a?ns=other', {accept: 'x'});
		t.is(h.handled(), 3);
		await get(h, '/a', {accept: 'x', range: 'bytes=0-1'});
		await get(h, '/a', {accept: 'x', 'if-none-match': '"sha256:a"'});
		t.is(h.handled(), 5);
	});

	test(`${path}: an answer ends when it is no longer fresh or the generation moves; a write that moves it is announced`, async t => {
		const h = await harness(t, path, {freshFor: 5000});
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

	test(`${path}: errors, stale answers and bodies over the item size are not kept`, async t => {
		const h = await harness(t, path, {body: path => (path === '/big' ? Buffer.alloc(1025, 1) : Buffer.from(path))});
		for (const path of ['/missing', '/stale', '/big']) {
			await get(h, path);
			await get(h, path);
		}

		t.is(h.handled(), 6);
		t.deepEqual(h.hits, []);
	});

	test(`${path}: max_size 0 turns the cache off`, async t => {
		const h = await harness(t, path, {maxBytes: 0});
		await get(h, '/a');
		await get(h, '/a');
		t.is(h.handled(), 2);
	});

	test(`${path}: a repeat spells its headers as the first answer did`, async t => {
		const h = await harness(t, path);
		const names = async () =>
			new Promise<string[]>((resolve, reject) => {
				http.get(`${h.url}/a`, response => {
					response.resume();
					resolve(response.rawHeaders.filter((_, index) => index % 2 === 0).filter(name => !/^(date|x-request-id|connection|keep-alive)$/i.test(name)).sort());
				}).on('error', reject);
			});
		const first = await names();
		t.deepEqual(await names(), first);
		t.true(first.includes('Docker-Content-Digest'), first.join(' '));
		t.is(h.handled(), 1);
	});

	test(`${path}: a hit carries its own request id and is counted as a request`, async t => {
		const h = await harness(t, path);
		await get(h, '/a');
		const response = await fetch(`${h.url}/a`, {headers: {'x-request-id': 'client-id.1'}});
		t.is(await response.text(), 'body of /a for */*');
		t.is(response.headers.get('x-request-id'), path === 'early' ? 'client-id.1' : null, 'without the request log middleware only the early path sets it');
		const metrics = await h.metrics.registry.metrics();
		const line = metrics.split('\n').find(text => text.startsWith('registry_mirror_http_requests_total{'));
		t.is(line, path === 'early' ? 'registry_mirror_http_requests_total{route="unmatched",method="GET",status="200"} 1' : undefined);
	});
}
