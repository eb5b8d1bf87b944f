import {type IncomingHttpHeaders} from 'node:http';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {Readable} from 'node:stream';
import test, {type ExecutionContext} from 'ava';
import {parseConfig} from '../../src/config/load.js';
import {StoredBlobs} from '../../src/fill/stored.js';
import {UpstreamFills} from '../../src/fill/upstream-fills.js';
import {ProxyBlobs} from '../../src/proxy/blobs.js';
import {type CachedTarget, NamespaceRouter} from '../../src/service/namespaces.js';
import {type UpstreamClient} from '../../src/upstream/client.js';
import {RegistryError} from '../../src/v2/errors.js';
import {FakeAccess, ManualBody, type Stores, bytes, collect, digestOf, openStores, storeBlob} from './fakes.js';

const BASE = path.join(tmpdir(), 'proxy-blobs-test-base');

/** An upstream registry's blob endpoints, as UpstreamClient answers them; every call is logged. */
class FakeUpstream {
	readonly calls: string[] = [];
	readonly blobs = new Map<string, Buffer>();
	/** A status to answer instead of 200/404. */
	status: number | undefined;
	/** The body stream() hands out, fed by the test; by default the whole blob at once. */
	body: ManualBody | undefined;

	constructor(readonly name: string) {}

	async request(method: 'GET' | 'HEAD', path: string, options: {scope: string; kind: string}): Promise<{status: number; headers: IncomingHttpHeaders; body: Buffer}> {
		this.calls.push(`${method} ${path} ${options.scope} ${options.kind}`);
		const data = this.#lookup(path);
		const status = this.status ?? (data ? 200 : 404);
		return {status, headers: status === 200 && data ? {'content-length': String(data.length)} : {}, body: Buffer.alloc(0)};
	}

	async stream(path: string, options: {scope: string; kind: string}): Promise<{status: number; headers: IncomingHttpHeaders; body: AsyncIterable<Uint8Array> & {destroy(): void}}> {
		this.calls.push(`STREAM ${path} ${options.scope} ${options.kind}`);
		const data = this.#lookup(path);
		const status = this.status ?? (data ? 200 : 404);
		if (status !== 200 || !data) {
			return {status, headers: {}, body: Readable.from([])};
		}

		return {status, headers: {'content-length': String(data.length)}, body: this.body ?? Readable.from([data.subarray(0, 100), data.subarray(100)])};
	}

	#lookup(path: string): Buffer | undefined {
		return this.blobs.get(path.slice(path.lastIndexOf('/') + 1));
	}
}

type Harness = Stores & {
	proxy: ProxyBlobs;
	upstreams: Map<string, FakeUpstream>;
	asked: string[];
	results: string[];
	target(name: string, ns?: string): CachedTarget;
};

async function harness(t: ExecutionContext, offline = false): Promise<Harness> {
	t.timeout(60_000); // generous: a hang fails in a minute, a loaded machine does not
	const stores = await openStores(t);
	const config = parseConfig(
		{
			upstreams: {
				'docker.io': {url: 'https://registry-1.docker.io', offline},
				'ghcr.io': {url: 'https://ghcr.io'},
			},
			namespaces: [{prefix: '', upstream: 'docker.io'}],
		},
		BASE,
	);
	const router = new NamespaceRouter(config);
	const upstreams = new Map([...config.upstreams.keys()].map(name => [name, new FakeUpstream(name)]));
	const asked: string[] = [];
	const results: string[] = [];
	const stored = new StoredBlobs({index: stores.metadata, content: stores.blobs, access: new FakeAccess()});
	const source = new UpstreamFills(stored, {content: stores.blobs, index: stores.metadata});
	const proxy = new ProxyBlobs({
		source,
		upstream(name) {
			asked.push(name);
			return upstreams.get(name) as unknown as UpstreamClient;
		},
		onResult: (upstream, outcome) => results.push(`${upstream} ${outcome}`),
	});
	return {
		...stores,
		proxy,
		upstreams,
		asked,
		results,
		target(name, ns) {
			const target = router.resolve(name, ns);
			if (target.kind !== 'cached') {
				throw new Error('expected a cached target');
			}

			return target;
		},
	};
}

test('stat of a stored blob answers from the store; the upstream is not asked', async t => {
	const h = await harness(t);
	const data = bytes(2048, 1);
	const target = h.target('nginx');
	const digest = await storeBlob(h, target.repo, data);
	t.is(await h.proxy.stat(target, digest), 2048);
	t.deepEqual(h.upstreams.get('docker.io')!.calls, []);
});

test('stat of an uncached blob asks the upstream with a HEAD under its remote name and stores nothing', async t => {
	const h = await harness(t);
	const data = bytes(999, 2);
	const digest = digestOf(data);
	const hub = h.upstreams.get('docker.io')!;
	hub.blobs.set(digest.value, data);

	t.is(await h.proxy.stat(h.target('nginx'), digest), 999);
	t.deepEqual(hub.calls, [`HEAD /v2/library/nginx/blobs/${digest.value} repository:library/nginx:pull blob`]);
	t.deepEqual(h.asked, ['docker.io']);
	t.is(await h.metadata.getBlob(digest.value), undefined);
	t.is(await h.blobs.size(digest), undefined);
});

test('stat of a blob the upstream does not have: BLOB_UNKNOWN 404 naming the upstream', async t => {
	const h = await harness(t);
	const digest = digestOf(bytes(10, 3));
	const error = await t.throwsAsync(h.proxy.stat(h.target('nginx'), digest), {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.is(error?.status, 404);
	t.deepEqual(error?.detail, {digest: digest.value, upstream: 'docker.io'});
	t.is(h.upstreams.get('docker.io')!.calls.length, 1);
});

test('stat maps the upstream refusing access to NAME_UNKNOWN and its failures to UNAVAILABLE 502', async t => {
	const h = await harness(t);
	const digest = digestOf(bytes(10, 4));
	const hub = h.upstreams.get('docker.io')!;

	hub.status = 401;
	const denied = await t.throwsAsync(h.proxy.stat(h.target('nginx'), digest), {instanceOf: RegistryError});
	t.is(denied?.code, 'NAME_UNKNOWN');
	t.is(denied?.status, 404);
	t.deepEqual(denied?.detail, {upstream: 'docker.io', repository: 'library/nginx', status: 401});

	hub.status = 500;
	const failed = await t.throwsAsync(h.proxy.stat(h.target('nginx'), digest), {instanceOf: RegistryError});
	t.is(failed?.code, 'UNAVAILABLE');
	t.is(failed?.status, 502);
	t.is(failed?.message, 'upstream docker.io answered 500');
});

test('offline: stat and get of an uncached blob answer BLOB_UNKNOWN without asking the upstream; stored blobs are served', async t => {
	const h = await harness(t, true);
	const digest = digestOf(bytes(10, 5));
	const target = h.target('nginx');
	const reason = {digest: digest.value, reason: 'upstream is offline and this blob is not cached'};

	const statError = await t.throwsAsync(h.proxy.stat(target, digest), {instanceOf: RegistryError});
	t.is(statError?.code, 'BLOB_UNKNOWN');
	t.deepEqual(statError?.detail, reason);
	const getError = await t.throwsAsync(h.proxy.get(target, digest), {instanceOf: RegistryError});
	t.is(getError?.code, 'BLOB_UNKNOWN');
	t.deepEqual(getError?.detail, reason);

	const data = bytes(77, 6);
	const stored = await storeBlob(h, target.repo, data);
	t.is(await h.proxy.stat(target, stored), 77);
	const result = await h.proxy.get(target, stored);
	t.true((await collect(result.open())).equals(data));
	t.deepEqual(h.upstreams.get('docker.io')!.calls, []);
	t.deepEqual(h.results, ['docker.io hit']);
});

test('get of an uncached blob streams it from the upstream once (a miss), then serves it from the store (a hit)', async t => {
	const h = await harness(t);
	const data = bytes(30_000, 7);
	const digest = digestOf(data);
	const hub = h.upstreams.get('docker.io')!;
	hub.blobs.set(digest.value, data);
	const target = h.target('docker.io/nginx');

	const first = await h.proxy.get(target, digest);
	t.is(first.outcome, 'miss');
	t.is(first.size, 30_000);
	t.true((await collect(first.open())).equals(data));
	const second = await h.proxy.get(target, digest);
	t.is(second.outcome, 'hit');
	t.true(second.stored);
	t.true((await collect(second.open({start: 29_000, end: 29_999}))).equals(data.subarray(29_000)));

	t.deepEqual(hub.calls, [`STREAM /v2/library/nginx/blobs/${digest.value} repository:library/nginx:pull blob`]);
	t.deepEqual(h.results, ['docker.io miss', 'docker.io hit']);
	t.is((await h.metadata.getBlob(digest.value))?.size, 30_000);
	t.true(await h.metadata.hasRepoBlob({registry: 'docker.io', name: 'library/nginx'}, digest.value));
});

test('stat during a fill in progress answers from the fill, without a HEAD', async t => {
	const h = await harness(t);
	const data = bytes(5000, 8);
	const digest = digestOf(data);
	const hub = h.upstreams.get('docker.io')!;
	hub.blobs.set(digest.value, data);
	const body = new ManualBody();
	hub.body = body;
	const target = h.target('nginx');

	const result = await h.proxy.get(target, digest);
	t.is(await h.proxy.stat(target, digest), 5000);
	const reading = collect(result.open());
	body.send(data);
	t.true((await reading).equals(data));
	t.deepEqual(hub.calls, [`STREAM /v2/library/nginx/blobs/${digest.value} repository:library/nginx:pull blob`]);
});

test('get of a blob the upstream does not have: BLOB_UNKNOWN, no result recorded', async t => {
	const h = await harness(t);
	const digest = digestOf(bytes(10, 9));
	const error = await t.throwsAsync(h.proxy.get(h.target('ghcr.io/org/tool'), digest), {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.deepEqual(error?.detail, {digest: digest.value, upstream: 'ghcr.io'});
	t.deepEqual(h.upstreams.get('ghcr.io')!.calls, [`STREAM /v2/org/tool/blobs/${digest.value} repository:org/tool:pull blob`]);
	t.deepEqual(h.upstreams.get('docker.io')!.calls, []);
	t.deepEqual(h.results, []);
});

test('a blob docker.io brought in is not handed out under ghcr.io when ghcr.io does not have it', async t => {
	const h = await harness(t);
	const data = bytes(10, 10);
	const digest = await storeBlob(h, h.target('nginx').repo, data);
	const ghcr = h.upstreams.get('ghcr.io')!;

	const statError = await t.throwsAsync(h.proxy.stat(h.target('ghcr.io/org/tool'), digest), {instanceOf: RegistryError});
	t.is(statError?.code, 'BLOB_UNKNOWN');
	const getError = await t.throwsAsync(h.proxy.get(h.target('ghcr.io/org/tool'), digest), {instanceOf: RegistryError});
	t.is(getError?.code, 'BLOB_UNKNOWN');
	t.deepEqual(getError?.detail, {digest: digest.value, upstream: 'ghcr.io'});
	const head = `HEAD /v2/org/tool/blobs/${digest.value} repository:org/tool:pull blob`;
	// stat: the stored layer's HEAD to vouch, then stat's own; get: the vouching HEAD, then a fetch of its own, which 404s.
	t.deepEqual(ghcr.calls, [head, head, head, `STREAM /v2/org/tool/blobs/${digest.value} repository:org/tool:pull blob`]);
	t.false(await h.metadata.hasRepoBlob({registry: 'ghcr.io', name: 'org/tool'}, digest.value));
});
