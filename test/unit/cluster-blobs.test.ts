import {Readable} from 'node:stream';
import test, {type ExecutionContext} from 'ava';
import {ClusterBlobs} from '../../src/cluster/cluster-blobs.js';
import {type Coordinator} from '../../src/cluster/coordinator.js';
import {type Peers} from '../../src/cluster/peers.js';
import {type BlobRequest} from '../../src/fill/source.js';
import {StoredBlobs} from '../../src/fill/stored.js';
import {UpstreamFills} from '../../src/fill/upstream-fills.js';
import {type ByteRange} from '../../src/store/blob-store.js';
import {type RepoKey} from '../../src/store/metadata.js';
import {silentLogger} from '../../src/util/log.js';
import {RegistryError} from '../../src/v2/errors.js';
import {type Digest} from '../../src/v2/grammar.js';
import {FakeAccess, FakeOrigin, ManualBody, type Stores, bytes, collect, deferred, digestOf, openStores, settle, storeBlob} from './fakes.js';

const nginx: RepoKey = {registry: 'docker.io', name: 'library/nginx'};
const ghcrTool: RepoKey = {registry: 'ghcr.io', name: 'org/tool'};
const SELF = 'http://replica-a:5000';
const OTHER = 'http://replica-b:5000';

/** The coordinator's fill lock and hand-over, scripted: answers are taken in order, the last one repeats. */
class FakeCoordinator {
	readonly self = SELF;
	readonly clusterKey = 'cluster-key';
	readonly calls: string[] = [];
	locks: boolean[] = [false];
	owners: Array<string | undefined> = [undefined];
	acquireError: Error | undefined;
	/** Appended to the release call: the state of things when the lock is given back. */
	atRelease: (() => string) | undefined;
	readonly released = deferred();

	async tryAcquireFill(digest: Digest): Promise<boolean> {
		this.calls.push(`tryAcquire ${digest.hex.slice(0, 6)}`);
		if (this.acquireError) {
			throw this.acquireError;
		}

		return this.locks.length > 1 ? this.locks.shift()! : this.locks[0]!;
	}

	async fillOwner(_digest: Digest): Promise<string | undefined> {
		this.calls.push('fillOwner');
		return this.owners.length > 1 ? this.owners.shift() : this.owners[0];
	}

	async releaseFill(digest: Digest): Promise<void> {
		this.calls.push(`release ${digest.hex.slice(0, 6)}${this.atRelease ? ` ${this.atRelease()}` : ''}`);
		this.released.resolve();
	}

	async waitForFill(_digest: Digest, ms: number): Promise<void> {
		this.calls.push(`wait ${ms}`);
	}
}

type Source = (range: ByteRange) => Readable;

/** Other replicas' fills: what `size` answers, and the streams `read` hands out in order (the last repeats). */
class FakePeers {
	answer: {size: number; origin: string | undefined} | undefined;
	/** Resolved by the test to let size() answer. */
	gate: Promise<void> | undefined;
	readonly sizeCalls: string[] = [];
	readonly reads: Array<{owner: string; start: number; end: number}> = [];
	sources: Source[] = [];

	async size(owner: string, _digest: Digest): Promise<{size: number; origin: string | undefined} | undefined> {
		this.sizeCalls.push(owner);
		await this.gate;
		return this.answer;
	}

	async read(owner: string, _digest: Digest, range: ByteRange): Promise<Readable> {
		this.reads.push({owner, start: range.start, end: range.end});
		const source = this.sources.length > 1 ? this.sources.shift()! : this.sources[0]!;
		return source(range);
	}
}

/** A peer that serves `data` whole. */
function serving(data: Buffer): Source {
	return range => Readable.from([data.subarray(range.start, range.end + 1)]);
}

/** A peer whose connection breaks after `count` bytes of the range (after `before` ran). */
function breaking(data: Buffer, count: number, before?: () => Promise<unknown>): Source {
	return range =>
		Readable.from(
			(async function* () {
				yield data.subarray(range.start, Math.min(range.start + count, range.end + 1));
				await before?.();
				throw new Error('peer connection reset');
			})(),
		);
}

type Harness = Stores & {cluster: ClusterBlobs; fills: UpstreamFills; coordinator: FakeCoordinator; peers: FakePeers};

async function harness(t: ExecutionContext): Promise<Harness> {
	t.timeout(60_000); // generous: a hang fails in a minute, a loaded machine does not
	const stores = await openStores(t);
	const stored = new StoredBlobs({index: stores.metadata, content: stores.blobs, access: new FakeAccess()});
	const fills = new UpstreamFills(stored, {content: stores.blobs, index: stores.metadata, now: () => 1000});
	const coordinator = new FakeCoordinator();
	const peers = new FakePeers();
	const cluster = new ClusterBlobs(fills, {
		coordinator: coordinator as unknown as Coordinator,
		peers: peers as unknown as Peers,
		content: stores.blobs,
		log: silentLogger(),
	});
	return {...stores, cluster, fills, coordinator, peers};
}

function request(repo: RepoKey, digest: Digest, origin: FakeOrigin): BlobRequest {
	return {digest, repo, origin};
}

test('a stored blob is served from the store without asking the coordinator', async t => {
	const h = await harness(t);
	const data = bytes(1234, 1);
	const digest = await storeBlob(h, nginx, data);
	const origin = new FakeOrigin('docker.io');

	const result = await h.cluster.get(request(nginx, digest, origin));
	t.is(result.outcome, 'hit');
	t.true(result.stored);
	t.true((await collect(result.open())).equals(data));
	t.deepEqual(h.coordinator.calls, []);
	t.deepEqual(origin.opens, []);
});

test('an offline upstream is never fetched and the coordinator is not asked: BLOB_UNKNOWN', async t => {
	const h = await harness(t);
	const data = bytes(10, 2);
	const origin = new FakeOrigin('docker.io', [data]);
	origin.offline = true;

	const error = await t.throwsAsync(h.cluster.get(request(nginx, digestOf(data), origin)), {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.deepEqual(h.coordinator.calls, []);
	t.deepEqual(origin.opens, []);
});

test('with the lock taken the blob is filled here, and the lock is released once the fill is done', async t => {
	const h = await harness(t);
	const data = bytes(70_000, 3);
	const origin = new FakeOrigin('docker.io');
	const digest = origin.add(data);
	const body = new ManualBody();
	origin.body = body;
	h.coordinator.locks = [true];

	const result = await h.cluster.get(request(nginx, digest, origin));
	t.is(result.outcome, 'miss');
	t.is(result.size, 70_000);
	t.is(result.stored, undefined);
	const fill = h.fills.running(digest)!;
	h.coordinator.atRelease = () => fill.state; // 'done' only once the row is written
	t.deepEqual(h.coordinator.calls, [`tryAcquire ${digest.hex.slice(0, 6)}`]);
	t.deepEqual(origin.opens, [digest.value]);

	const reading = collect(result.open());
	body.send(data, 5);
	t.true((await reading).equals(data));
	await h.coordinator.released.promise;
	t.deepEqual(h.coordinator.calls, [`tryAcquire ${digest.hex.slice(0, 6)}`, `release ${digest.hex.slice(0, 6)} done`]);
	t.is((await h.metadata.getBlob(digest.value))?.size, 70_000);
	t.deepEqual(h.peers.sizeCalls, []);
});

test('another replica owns the fill: the bytes come from that peer, a range as asked; nothing is fetched here', async t => {
	const h = await harness(t);
	const data = bytes(5000, 4);
	const origin = new FakeOrigin('docker.io', [data]);
	const digest = digestOf(data);
	h.coordinator.owners = [OTHER];
	h.peers.answer = {size: 5000, origin: 'docker.io'};
	h.peers.sources = [serving(data)];

	const result = await h.cluster.get(request(nginx, digest, origin));
	t.is(result.outcome, 'joined');
	t.is(result.size, 5000);
	t.false(result.stored);
	t.true((await collect(result.open())).equals(data));
	t.true((await collect(result.open({start: 10, end: 99}))).equals(data.subarray(10, 100)));
	t.deepEqual(h.peers.reads, [
		{owner: OTHER, start: 0, end: 4999},
		{owner: OTHER, start: 10, end: 99},
	]);
	t.deepEqual(h.coordinator.calls, [`tryAcquire ${digest.hex.slice(0, 6)}`, 'fillOwner']);
	t.deepEqual(origin.opens, []);
	t.deepEqual(origin.heads, []); // the peer fills from the same upstream
});

test('concurrent requests for a blob another replica fills share one claim: the coordinator and the peer are asked once', async t => {
	const h = await harness(t);
	const data = bytes(800, 5);
	const origin = new FakeOrigin('docker.io', [data]);
	const digest = digestOf(data);
	h.coordinator.owners = [OTHER];
	h.peers.answer = {size: 800, origin: 'docker.io'};
	h.peers.sources = [serving(data)];
	const gate = deferred();
	h.peers.gate = gate.promise;

	const pending = [h.cluster.get(request(nginx, digest, origin)), h.cluster.get(request(nginx, digest, origin))];
	await settle();
	gate.resolve();
	const results = await Promise.all(pending);
	t.deepEqual(results.map(result => result.outcome), ['joined', 'joined']);
	t.deepEqual(h.coordinator.calls, [`tryAcquire ${digest.hex.slice(0, 6)}`, 'fillOwner']);
	t.deepEqual(h.peers.sizeCalls, [OTHER]);
});

test("a peer's fill from another upstream is refused when this upstream does not vouch for the blob; served when it does", async t => {
	const h = await harness(t);
	const data = bytes(600, 6);
	const digest = digestOf(data);
	h.coordinator.owners = [OTHER];
	h.peers.answer = {size: 600, origin: 'docker.io'};
	h.peers.sources = [serving(data)];

	const without = new FakeOrigin('ghcr.io'); // 404 to the HEAD
	const error = await t.throwsAsync(h.cluster.get(request(ghcrTool, digest, without)), {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.deepEqual(error?.detail, {digest: digest.value, upstream: 'ghcr.io'});
	t.deepEqual(without.heads, [digest.value]);
	t.deepEqual(without.opens, []);
	t.deepEqual(h.peers.reads, []);

	const vouching = new FakeOrigin('ghcr.io', [data]);
	const result = await h.cluster.get(request(ghcrTool, digest, vouching));
	t.is(result.outcome, 'joined');
	t.true((await collect(result.open())).equals(data));
	t.deepEqual(vouching.opens, []);
});

test('when the coordinator cannot be reached the blob is filled here, and no lock is released', async t => {
	const h = await harness(t);
	const data = bytes(3000, 7);
	const origin = new FakeOrigin('docker.io', [data]);
	const digest = digestOf(data);
	h.coordinator.acquireError = new Error('connect ECONNREFUSED 127.0.0.1:5432');

	const result = await h.cluster.get(request(nginx, digest, origin));
	t.is(result.outcome, 'miss');
	t.true((await collect(result.open())).equals(data));
	await h.fills.running(digest)?.done;
	t.deepEqual(origin.opens, [digest.value]);
	t.deepEqual(h.coordinator.calls, [`tryAcquire ${digest.hex.slice(0, 6)}`]);
	t.is((await h.metadata.getBlob(digest.value))?.size, 3000);
});

test('nobody owns the fill yet: wait for it, then take the lock and fill here', async t => {
	const h = await harness(t);
	const data = bytes(100, 8);
	const origin = new FakeOrigin('docker.io', [data]);
	const digest = digestOf(data);
	h.coordinator.locks = [false, true];
	h.coordinator.owners = [undefined];

	const result = await h.cluster.get(request(nginx, digest, origin));
	t.true((await collect(result.open())).equals(data));
	await h.coordinator.released.promise;
	const short = digest.hex.slice(0, 6);
	t.deepEqual(h.coordinator.calls, [`tryAcquire ${short}`, 'fillOwner', 'wait 100', `tryAcquire ${short}`, `release ${short}`]);
	t.deepEqual(origin.opens, [digest.value]);
});

test('a peer stream that breaks midway carries on from the store once the blob landed there: exact bytes', async t => {
	const h = await harness(t);
	const data = bytes(10_000, 9);
	const origin = new FakeOrigin('docker.io', [data]);
	const digest = digestOf(data);
	h.coordinator.owners = [OTHER];
	h.peers.answer = {size: 10_000, origin: 'docker.io'};
	// The peer's fill lands in the shared store, then the connection to it breaks.
	h.peers.sources = [breaking(data, 4321, async () => storeBlob(h, {registry: 'docker.io', name: 'library/other'}, data))];

	const result = await h.cluster.get(request(nginx, digest, origin));
	const received = await collect(result.open({start: 1000, end: 9999}));
	t.is(received.length, 9000);
	t.true(received.equals(data.subarray(1000)));
	t.deepEqual(h.peers.reads, [{owner: OTHER, start: 1000, end: 9999}]);
	t.deepEqual(origin.opens, []);
	t.deepEqual(h.coordinator.calls, [`tryAcquire ${digest.hex.slice(0, 6)}`, 'fillOwner']);
});

test('a peer stream that breaks midway carries on from a fill here when the owner is gone: exact bytes', async t => {
	const h = await harness(t);
	const data = bytes(50_000, 10);
	const origin = new FakeOrigin('docker.io', [data]);
	const digest = digestOf(data);
	h.coordinator.locks = [false, true];
	h.coordinator.owners = [OTHER];
	h.peers.answer = {size: 50_000, origin: 'docker.io'};
	h.peers.sources = [breaking(data, 20_000)];

	const result = await h.cluster.get(request(nginx, digest, origin));
	const received = await collect(result.open());
	t.true(received.equals(data));
	t.deepEqual(h.peers.reads, [{owner: OTHER, start: 0, end: 49_999}]);
	t.deepEqual(origin.opens, [digest.value]);
	await h.coordinator.released.promise;
	const short = digest.hex.slice(0, 6);
	t.deepEqual(h.coordinator.calls, [`tryAcquire ${short}`, 'fillOwner', `tryAcquire ${short}`, `release ${short}`]);
});

test('a stream whose sources keep breaking gives up after four, each resumed from the byte reached', async t => {
	const h = await harness(t);
	const data = bytes(10_000, 11);
	const origin = new FakeOrigin('docker.io', [data]);
	const digest = digestOf(data);
	h.coordinator.owners = [OTHER];
	h.peers.answer = {size: 10_000, origin: 'docker.io'};
	h.peers.sources = [breaking(data, 1000)];

	const result = await h.cluster.get(request(nginx, digest, origin));
	const error = await t.throwsAsync(collect(result.open()));
	t.is(error?.message, 'peer connection reset');
	t.deepEqual(
		h.peers.reads.map(read => [read.start, read.end]),
		[
			[0, 9999],
			[1000, 9999],
			[2000, 9999],
			[3000, 9999],
		],
	);
	t.deepEqual(origin.opens, []);
});

test('forPeer: a fill running here with its origin, the stored blob once it landed, nothing for an unknown digest', async t => {
	const h = await harness(t);
	const data = bytes(40_000, 12);
	const origin = new FakeOrigin('docker.io');
	const digest = origin.add(data);
	const body = new ManualBody();
	origin.body = body;
	h.coordinator.locks = [true];

	await h.cluster.get(request(nginx, digest, origin));
	const running = await h.cluster.forPeer(digest);
	t.is(running?.size, 40_000);
	t.is(running?.origin, 'docker.io');
	const reading = collect(running!.open({start: 30_000, end: 39_999}));
	body.send(data);
	t.true((await reading).equals(data.subarray(30_000)));
	await h.coordinator.released.promise;
	await settle();

	const landed = await h.cluster.forPeer(digest);
	t.is(landed?.size, 40_000);
	t.is(landed?.origin, undefined);
	t.true((await collect(landed!.open({start: 0, end: 9}))).equals(data.subarray(0, 10)));

	t.is(await h.cluster.forPeer(digestOf(bytes(5, 13))), undefined);
});
