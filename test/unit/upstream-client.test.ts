/**
 * UpstreamClient against a scripted HTTP server on the loopback: the token
 * flow, Basic auth, where credentials may go, retries, 429, refused
 * connections, the circuit breaker and streamed GETs. Every request that
 * reaches a server is recorded, so the counts are exact.
 */
import {type IncomingMessage, type Server, type ServerResponse, createServer} from 'node:http';
import {setTimeout as sleep} from 'node:timers/promises';
import test, {type ExecutionContext} from 'ava';
import {type UpstreamConfig} from '../../src/config/load.js';
import {UpstreamClient, pullScope} from '../../src/upstream/client.js';
import {RegistryError, UpstreamError} from '../../src/v2/errors.js';
import {closeServer} from '../helpers/process.js';

type Seen = {method: string; path: string; query: URLSearchParams; authorization: string | undefined};
type Handler = (seen: Seen, response: ServerResponse, request: IncomingMessage) => void;

type Scripted = {url: string; seen: Seen[]; count: (path: string) => number};

/** A server that records every request and answers with `handler`; closed when the test ends. */
async function scripted(t: ExecutionContext, handler: Handler, host = '127.0.0.1'): Promise<Scripted> {
	const seen: Seen[] = [];
	const server: Server = createServer((request, response) => {
		const url = new URL(request.url ?? '/', 'http://scripted');
		const entry = {method: request.method ?? '', path: url.pathname, query: url.searchParams, authorization: request.headers.authorization};
		seen.push(entry);
		handler(entry, response, request);
	});
	await new Promise<void>((resolve, reject) => {
		server.once('error', reject);
		server.listen(0, host, resolve);
	});
	t.teardown(async () => closeServer(server));
	const address = server.address();
	if (address === null || typeof address === 'string') {
		throw new Error('no port');
	}

	return {url: `http://${host}:${address.port}`, seen, count: path => seen.filter(entry => entry.path === path).length};
}

function reply(response: ServerResponse, status: number, body: string | object = '', headers: Record<string, string> = {}): void {
	const text = typeof body === 'string' ? body : JSON.stringify(body);
	response.writeHead(status, {'content-length': String(Buffer.byteLength(text)), ...headers});
	response.end(text);
}

type Event = {method: string; kind: string; status: number};

function client(url: string, credentials?: {username: string; password: string}, extra: Partial<UpstreamConfig> = {}) {
	const events: Event[] = [];
	const warnings: Array<{message: string; fields: Record<string, unknown>}> = [];
	const config: UpstreamConfig = {name: 'up', url, tagTtlMs: 60_000, timeoutMs: 5000, revalidateTimeoutMs: 3000, ratelimitReserve: 0, offline: false, libraryPrefix: false, ...extra};
	if (credentials) {
		config.credentials = credentials;
	}

	const upstream = new UpstreamClient(config, {
		onRequest: (_name, method, kind, status) => events.push({method, kind, status}),
		onWarning: (message, fields) => warnings.push({message, fields}),
	});
	return {upstream, events, warnings};
}

const MANIFEST = '/v2/app/manifests/1';
const BLOB = '/v2/app/blobs/sha256:abc';
const scope = pullScope('app');
const basic = (username: string, password: string) => `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;

async function manifest(upstream: UpstreamClient) {
	return upstream.request('GET', MANIFEST, {scope, kind: 'manifest'});
}

async function text(body: AsyncIterable<Uint8Array>): Promise<string> {
	const chunks: Buffer[] = [];
	for await (const chunk of body) {
		chunks.push(chunk as Buffer);
	}

	return Buffer.concat(chunks).toString('utf8');
}

/**
 * A Bearer upstream whose token endpoint (its own, or a server on `realmHost`)
 * issues t1, t2, … and whose manifests accept only the latest token.
 */
async function bearerUpstream(t: ExecutionContext, options: {expiresIn?: number; realmHost?: string} = {}) {
	const state = {issued: 0, valid: '', realm: ''};
	const issue = (response: ServerResponse) => {
		state.valid = `t${++state.issued}`;
		reply(response, 200, {token: state.valid, expires_in: options.expiresIn ?? 300});
	};

	const registry = await scripted(t, (seen, response) => {
		if (seen.path === '/token') {
			issue(response);
		} else if (seen.path === '/v2/' || seen.authorization !== `Bearer ${state.valid}`) {
			reply(response, 401, {errors: [{code: 'UNAUTHORIZED'}]}, {'www-authenticate': `Bearer realm="${state.realm}/token",service="svc"`});
		} else {
			reply(response, 200, 'manifest');
		}
	});
	const realm = options.realmHost ? await scripted(t, (_seen, response) => issue(response), options.realmHost) : registry;
	state.realm = realm.url;
	const tokens = () => realm.seen.filter(entry => entry.path === '/token');
	return {registry, realm, state, tokens};
}

test('token flow: one ping and one token fetch for concurrent requests, the token cached per scope, renewed once after a 401', async t => {
	const {registry, state, tokens} = await bearerUpstream(t);
	const {upstream, events} = client(registry.url);

	const first = await Promise.all(Array.from({length: 5}, async () => manifest(upstream)));
	t.deepEqual(
		first.map(response => response.status),
		[200, 200, 200, 200, 200],
	);
	t.is(registry.count('/v2/'), 1, 'one ping for five concurrent requests');
	t.is(tokens().length, 1, 'one token fetch for five concurrent requests');
	t.is(tokens()[0]?.query.get('scope'), scope);
	t.is(tokens()[0]?.query.get('service'), 'svc');
	t.is(tokens()[0]?.authorization, undefined, 'no credentials configured, none sent');
	t.is(registry.count(MANIFEST), 5);

	t.is((await manifest(upstream)).status, 200);
	t.is(tokens().length, 1, 'the cached token is used');

	state.valid = 'revoked';
	t.is((await manifest(upstream)).status, 200, 'renewed and retried');
	t.is(tokens().length, 2, 'one renewal');
	t.is(registry.count(MANIFEST), 8, 'the 401 and its retry');
	t.is(registry.seen.at(-1)?.authorization, 'Bearer t2', 'the retry carries the new token');

	await upstream.request('GET', '/v2/other/manifests/1', {scope: pullScope('other'), kind: 'manifest'});
	t.is(tokens().length, 3, 'another scope, another token');
	t.is(tokens()[2]?.query.get('scope'), pullScope('other'));
	t.is(registry.count('/v2/'), 1, 'the challenge is remembered');
	t.deepEqual(
		events.filter(event => event.kind !== 'manifest').map(event => `${event.kind} ${event.status}`),
		['ping 401', 'token 200', 'token 200', 'token 200'],
	);
});

test('a token is cached until shortly before it expires', async t => {
	const {registry, tokens} = await bearerUpstream(t, {expiresIn: 1});
	const {upstream} = client(registry.url);
	await manifest(upstream);
	await manifest(upstream);
	t.is(tokens().length, 1);
	await sleep(1100);
	t.is((await manifest(upstream)).status, 200);
	t.is(tokens().length, 2, 'expired, fetched again');
	t.is(registry.count(MANIFEST), 3, 'no 401 on the way');
});

test('Basic challenge: the credentials go with every request; without credentials none, and the 401 is the answer after one renewal', async t => {
	const registry = await scripted(t, (seen, response) => {
		if (seen.path !== '/v2/' && seen.authorization === basic('user', 'secret')) {
			reply(response, 200, 'manifest');
		} else {
			reply(response, 401, '', {'www-authenticate': 'Basic realm="Registry Realm"'});
		}
	});
	const {upstream} = client(registry.url, {username: 'user', password: 'secret'});
	const responses = await Promise.all([manifest(upstream), manifest(upstream), manifest(upstream)]);
	t.deepEqual(
		responses.map(response => response.body.toString()),
		['manifest', 'manifest', 'manifest'],
	);
	t.is(registry.count('/v2/'), 1);
	t.is(registry.count(MANIFEST), 3);

	const {upstream: anonymous} = client(registry.url);
	t.is((await manifest(anonymous)).status, 401);
	t.is(registry.count(MANIFEST), 5, 'one try, one renewal');
	t.is(registry.seen.at(-1)?.authorization, undefined);
});

test('credentials go to a token realm on the upstream\'s own host, with the account', async t => {
	const {registry, tokens} = await bearerUpstream(t);
	const {upstream, warnings} = client(registry.url, {username: 'user', password: 'secret'});
	t.is((await manifest(upstream)).status, 200);
	t.is(tokens()[0]?.authorization, basic('user', 'secret'));
	t.is(tokens()[0]?.query.get('account'), 'user');
	t.is(registry.seen.find(entry => entry.path === MANIFEST)?.authorization, 'Bearer t1', 'the registry gets the token, not the password');
	t.deepEqual(warnings, []);
});

test('credentials go to the realm the upstream\'s /v2/ challenge names, on another host too (auth.docker.io for registry-1.docker.io)', async t => {
	const {registry, tokens} = await bearerUpstream(t, {realmHost: '127.0.0.2'});
	const {upstream, warnings} = client(registry.url, {username: 'user', password: 'secret'});
	t.is((await manifest(upstream)).status, 200);
	t.is(tokens().length, 1);
	t.is(tokens()[0]?.authorization, basic('user', 'secret'));
	t.is(tokens()[0]?.query.get('account'), 'user');
	t.is(registry.count('/token'), 0);
	t.deepEqual(warnings, []);
});

test('a later 401 naming a realm on another port of the upstream\'s host gets no credentials: an anonymous token and a warning', async t => {
	const other = await scripted(t, (_seen, response) => reply(response, 200, {token: 'foreign', expires_in: 300}));
	const registry = await scripted(t, (seen, response) => {
		if (seen.path === '/token') {
			reply(response, 200, {token: 'own', expires_in: 300});
		} else if (seen.path === '/v2/') {
			reply(response, 401, '', {'www-authenticate': `Bearer realm="${registry.url}/token",service="svc"`});
		} else if (seen.authorization === 'Bearer foreign') {
			reply(response, 200, 'manifest');
		} else {
			reply(response, 401, '', {'www-authenticate': `Bearer realm="${other.url}/token",service="svc"`});
		}
	});
	const {upstream, warnings} = client(registry.url, {username: 'user', password: 'secret'});
	t.is((await manifest(upstream)).status, 200);
	t.is(registry.count('/token'), 1, 'the own realm first, with the credentials');
	t.is(registry.seen.find(entry => entry.path === '/token')?.authorization, basic('user', 'secret'));
	t.is(other.seen.length, 1, 'then the realm the 401 named');
	t.is(other.seen[0]?.authorization, undefined, 'without the credentials');
	t.false(other.seen[0]?.query.has('account'));
	t.deepEqual(warnings, [
		{
			message: 'token realm is not the one the upstream named for itself; requesting an anonymous token',
			fields: {upstream: 'up', realm: `${other.url}/token`, trusted: new URL(registry.url).origin},
		},
	]);
});

test('a configured token_realm is the only realm that gets the credentials', async t => {
	const {registry, realm, tokens} = await bearerUpstream(t, {realmHost: '127.0.0.2'});
	const {upstream, warnings} = client(registry.url, {username: 'user', password: 'secret'}, {tokenRealm: `${registry.url}/token`});
	t.is((await manifest(upstream)).status, 200);
	t.is(tokens().length, 1);
	t.is(tokens()[0]?.authorization, undefined, 'the challenge named another realm than the configured one');
	t.is(warnings.length, 1);
	t.is(warnings[0]?.fields['realm'], `${realm.url}/token`);
});

test('a redirect to another host is followed without the Authorization header', async t => {
	const cdn = await scripted(t, (_seen, response) => reply(response, 200, 'blob-bytes'), '127.0.0.2');
	const registry = await scripted(t, (seen, response) => {
		if (seen.path === '/v2/') {
			reply(response, 401, '', {'www-authenticate': 'Basic realm="r"'});
		} else {
			reply(response, 307, '', {location: `${cdn.url}/blob`});
		}
	});
	const {upstream} = client(registry.url, {username: 'user', password: 'secret'});
	const response = await upstream.stream(BLOB, {scope, kind: 'blob'});
	t.is(response.status, 200);
	t.is(await text(response.body), 'blob-bytes');
	t.is(registry.seen.at(-1)?.authorization, basic('user', 'secret'));
	t.is(cdn.seen.length, 1);
	t.is(cdn.seen[0]?.authorization, undefined);
});

/** An upstream without auth whose `path` answers with the statuses in `script` (then 200); other paths are 404. */
async function statusScript(t: ExecutionContext, path: string, script: number[], body = 'ok') {
	return scripted(t, (seen, response) => {
		if (seen.path === path) {
			const status = script.shift() ?? 200;
			reply(response, status, status === 200 ? body : {errors: [{code: 'UNAVAILABLE'}]});
		} else {
			reply(response, seen.path === '/v2/' ? 200 : 404, '{}');
		}
	});
}

test('503, 503, then 200: retried with backoff, the third answer is the response', async t => {
	const registry = await statusScript(t, MANIFEST, [503, 503]);
	const {upstream, events} = client(registry.url);
	const response = await manifest(upstream);
	t.is(response.status, 200);
	t.is(response.body.toString(), 'ok');
	t.is(registry.count(MANIFEST), 3);
	t.deepEqual(
		events.map(event => `${event.kind} ${event.status}`),
		['ping 200', 'manifest 503', 'manifest 503', 'manifest 200'],
	);
	t.is(upstream.breaker.state, 'closed');
});

test('three 503s: UNAVAILABLE with status 502 after two retries', async t => {
	const registry = await statusScript(t, MANIFEST, [503, 503, 503, 503]);
	const {upstream} = client(registry.url);
	const error = await t.throwsAsync(manifest(upstream), {instanceOf: UpstreamError});
	t.is(error.code, 'UNAVAILABLE');
	t.is(error.status, 502);
	t.deepEqual(error.detail, {upstream: 'up', status: 503});
	t.is(registry.count(MANIFEST), 3, 'MAX_RETRIES is 2');
});

test('a 500 is not retried', async t => {
	const registry = await statusScript(t, MANIFEST, [500]);
	const {upstream} = client(registry.url);
	const error = await t.throwsAsync(manifest(upstream), {instanceOf: UpstreamError});
	t.is(error.status, 502);
	t.is(registry.count(MANIFEST), 1);
});

test('a connection dropped before the response is retried', async t => {
	let dropped = 0;
	const registry = await scripted(t, (seen, response, request) => {
		if (seen.path === MANIFEST && dropped++ === 0) {
			request.socket.destroy();
		} else {
			reply(response, 200, 'ok');
		}
	});
	const {upstream, events} = client(registry.url);
	t.is((await manifest(upstream)).status, 200);
	t.is(registry.count(MANIFEST), 2);
	t.deepEqual(
		events.map(event => `${event.kind} ${event.status}`),
		['ping 200', 'manifest 0', 'manifest 200'],
	);
});

test('429: TOOMANYREQUESTS with the upstream\'s Retry-After, not retried', async t => {
	const registry = await scripted(t, (seen, response) => {
		if (seen.path === MANIFEST) {
			reply(response, 429, {errors: [{code: 'TOOMANYREQUESTS'}]}, {'retry-after': '17', 'ratelimit-remaining': '0;w=21600'});
		} else {
			reply(response, 200, '{}');
		}
	});
	const {upstream} = client(registry.url);
	const error = await t.throwsAsync(manifest(upstream), {instanceOf: RegistryError});
	t.is(error.code, 'TOOMANYREQUESTS');
	t.is(error.status, 429);
	t.deepEqual(error.headers, {'Retry-After': '17'});
	t.like(upstream.rateLimit.snapshot, {remaining: 0, windowSeconds: 21_600});
	t.true(upstream.rateLimit.retryAfterSeconds() > 15, 'the Retry-After is remembered');
	t.true(upstream.rateLimit.isShort(0), 'a running Retry-After makes the budget short');
	t.is(registry.count(MANIFEST), 1);
	t.is(upstream.breaker.state, 'closed');
});

/** A port on the loopback where nothing listens. */
async function closedPort(): Promise<number> {
	const server = createServer();
	await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
	const address = server.address();
	await closeServer(server);
	return typeof address === 'object' && address ? address.port : 1;
}

test('a refused connection: UNAVAILABLE with status 502 and the error code, after two retries', async t => {
	const {upstream, events} = client(`http://127.0.0.1:${await closedPort()}`);
	const error = await t.throwsAsync(manifest(upstream), {instanceOf: UpstreamError});
	t.is(error.code, 'UNAVAILABLE');
	t.is(error.status, 502);
	t.deepEqual(error.detail, {upstream: 'up', error: 'ECONNREFUSED'});
	t.deepEqual(
		events.map(event => `${event.kind} ${event.status}`),
		['ping 0', 'ping 0', 'ping 0'],
		'the ping is tried three times and the request goes no further',
	);
});

test('the breaker hears once per request (retries included), opens after five failed requests, then refuses without reaching the upstream', async t => {
	const registry = await statusScript(t, MANIFEST, Array.from({length: 15}, () => 503));
	const {upstream, events} = client(registry.url);
	const failing = async () => t.throwsAsync(manifest(upstream), {instanceOf: UpstreamError});
	await Promise.all([failing(), failing(), failing(), failing()]);
	t.is(registry.count(MANIFEST), 12, 'each of four requests tried three times');
	t.is(upstream.breaker.state, 'closed', 'four failures, not twelve');

	await failing();
	t.is(registry.count(MANIFEST), 15);
	t.is(upstream.breaker.state, 'open');

	const refused = await t.throwsAsync(manifest(upstream), {instanceOf: RegistryError});
	t.false(refused instanceof UpstreamError);
	t.is(refused.code, 'UNAVAILABLE');
	t.is(refused.status, 503);
	t.deepEqual(refused.detail, {upstream: 'up', circuit: 'open'});
	await t.throwsAsync(upstream.stream(BLOB, {scope, kind: 'blob'}), {instanceOf: RegistryError, message: /not asking it again/});
	t.is(registry.seen.length, 16, 'the ping and fifteen manifest GETs; nothing once open');
	t.is(events.length, 16);
});

test('stream(): a 503 is retried and the body of the 200 returned; a 404 comes back as such, its body discarded', async t => {
	const registry = await statusScript(t, BLOB, [503], 'blob-bytes');
	const {upstream, events} = client(registry.url);
	const response = await upstream.stream(BLOB, {scope, kind: 'blob'});
	t.is(response.status, 200);
	t.is(response.headers['content-length'], '10');
	t.is(await text(response.body), 'blob-bytes');
	t.is(registry.count(BLOB), 2);
	t.deepEqual(
		events.map(event => `${event.method} ${event.kind} ${event.status}`),
		['GET ping 200', 'GET blob 503', 'GET blob 200'],
	);

	const missing = await upstream.stream('/v2/app/blobs/sha256:missing', {scope, kind: 'blob'});
	t.is(missing.status, 404);
	t.true(missing.body.destroyed);
	t.is(registry.count('/v2/app/blobs/sha256:missing'), 1);
});

test('stream(): a connection dropped before the response is retried; a 401 renews the token once', async t => {
	const {registry, state, tokens} = await bearerUpstream(t);
	let dropped = 0;
	const blobs = await scripted(t, (seen, response, request) => {
		if (seen.path === '/v2/') {
			reply(response, 401, '', {'www-authenticate': `Bearer realm="${registry.url}/token"`});
		} else if (dropped++ === 0) {
			request.socket.destroy();
		} else if (seen.authorization === `Bearer ${state.valid}`) {
			reply(response, 200, 'blob-bytes');
		} else {
			reply(response, 401);
		}
	});
	const {upstream, events} = client(blobs.url);
	const response = await upstream.stream(BLOB, {scope, kind: 'blob'});
	t.is(await text(response.body), 'blob-bytes');
	t.is(blobs.count(BLOB), 2);

	state.valid = 'revoked';
	const renewed = await upstream.stream(BLOB, {scope, kind: 'blob'});
	t.is(renewed.status, 200);
	t.is(await text(renewed.body), 'blob-bytes');
	t.is(blobs.count(BLOB), 4);
	t.is(tokens().length, 2);
	t.deepEqual(
		events.map(event => `${event.kind} ${event.status}`),
		['ping 401', 'token 200', 'blob 0', 'blob 200', 'blob 401', 'token 200', 'blob 200'],
	);
});
