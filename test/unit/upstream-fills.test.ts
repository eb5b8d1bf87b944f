import test, {type ExecutionContext} from 'ava';
import {type BlobRequest} from '../../src/fill/source.js';
import {StoredBlobs} from '../../src/fill/stored.js';
import {UpstreamFills, type UpstreamFillsDeps} from '../../src/fill/upstream-fills.js';
import {type RepoKey} from '../../src/store/metadata.js';
import {RegistryError} from '../../src/v2/errors.js';
import {type Digest} from '../../src/v2/grammar.js';
import {FakeAccess, FakeOrigin, ManualBody, type Stores, bytes, collect, digestOf, filesUnder, openStores, settle, storeBlob} from './fakes.js';

const nginx: RepoKey = {registry: 'docker.io', name: 'library/nginx'};
const redis: RepoKey = {registry: 'docker.io', name: 'library/redis'};
const ghcrTool: RepoKey = {registry: 'ghcr.io', name: 'org/tool'};
const NOW = 5000;

type Harness = Stores & {
	fills: UpstreamFills;
	/** What happened, in order: open, reserve, fetched chunks, putBlob, settle. */
	events: string[];
	/** Appended to the reserve event: what the test wants to know at that moment. */
	atReserve?: () => string;
};

async function harness(t: ExecutionContext, options: {quota?: boolean} = {}): Promise<Harness> {
	t.timeout(60_000); // generous: a hang fails in a minute, a loaded machine does not
	const stores = await openStores(t);
	const events: string[] = [];
	const access = new FakeAccess();
	const stored = new StoredBlobs({index: stores.metadata, content: stores.blobs, access});
	const index: UpstreamFillsDeps['index'] = {
		async putBlob(repo, blob) {
			// The file is committed (renamed into place after the digest checked) before the row is written.
			const onDisk = await stores.blobs.size({algorithm: 'sha256', hex: blob.digest.slice(7), value: blob.digest});
			events.push(`putBlob ${repo.registry}/${repo.name} ${blob.size} file=${String(onDisk)}`);
			await stores.metadata.putBlob(repo, blob);
		},
		linkBlob: async (repo, digest) => stores.metadata.linkBlob(repo, digest),
	};
	const fills = new UpstreamFills(stored, {
		content: stores.blobs,
		index,
		quota: options.quota
			? {
					async reserve(size) {
						events.push(`reserve ${size}${h.atReserve ? ` ${h.atReserve()}` : ''}`);
					},
					settle() {
						events.push('settle');
					},
				}
			: undefined,
		onFetched: (upstream, count) => events.push(`fetched ${upstream} ${count}`),
		onResume: (upstream, digest, from, error) => events.push(`resume ${upstream} ${digest.hex.slice(0, 6)} ${from}: ${error.message}`),
		now: () => NOW,
	});
	const h: Harness = {...stores, fills, events};
	return h;
}

function request(repo: RepoKey, digest: Digest, origin: FakeOrigin): BlobRequest {
	return {digest, repo, origin};
}

/** An origin whose body the test feeds; open() is logged into `events`. */
function manualOrigin(h: Harness, upstream: string, data: Uint8Array): {origin: FakeOrigin; body: ManualBody; digest: Digest} {
	const origin = new FakeOrigin(upstream);
	const digest = origin.add(data);
	const body = new ManualBody();
	origin.body = body;
	origin.onOpen = () => h.events.push(`open ${upstream}`);
	return {origin, body, digest};
}

test('many concurrent requests for one blob make one fill: one open, one miss, the rest joined, the exact bytes for all', async t => {
	const h = await harness(t);
	const data = bytes(200_000, 1);
	const {origin, body, digest} = manualOrigin(h, 'docker.io', data);

	const results = await Promise.all(Array.from({length: 6}, async () => h.fills.get(request(nginx, digest, origin))));
	t.deepEqual(origin.opens, [digest.value]);
	t.deepEqual(results.map(result => result.outcome).sort(), ['joined', 'joined', 'joined', 'joined', 'joined', 'miss']);
	t.true(results.every(result => result.size === 200_000 && result.stored === undefined));
	t.is(h.fills.size, 1);
	const fill = h.fills.running(digest);
	t.is(fill?.origin, 'docker.io');

	const streams = results.map(async result => collect(result.open()));
	body.send(data, 7);
	for (const received of await Promise.all(streams)) {
		t.true(received.equals(data));
	}

	await fill!.done;
	t.deepEqual(await h.metadata.getBlob(digest.value), {digest: digest.value, size: 200_000, pushed: false, lastAccess: NOW});
	t.true(await h.metadata.hasRepoBlob(nginx, digest.value));
	t.is(await h.blobs.size(digest), 200_000);

	// Landed: the next request is a hit from the store, and the upstream is not asked again.
	await settle();
	t.is(h.fills.size, 0);
	const again = await h.fills.get(request(nginx, digest, origin));
	t.is(again.outcome, 'hit');
	t.true(again.stored);
	t.true((await collect(again.open({start: 199_990, end: 199_999}))).equals(data.subarray(199_990)));
	t.deepEqual(origin.opens, [digest.value]);
});

test('a request of another repository of the same upstream joins the fill, and that repository is linked once it lands', async t => {
	const h = await harness(t);
	const data = bytes(4096, 2);
	const {origin, body, digest} = manualOrigin(h, 'docker.io', data);

	const first = await h.fills.get(request(nginx, digest, origin));
	const found = await h.fills.find(request(redis, digest, origin));
	t.is(first.outcome, 'miss');
	t.is(found?.outcome, 'joined');
	t.deepEqual(origin.heads, []); // same upstream: no HEAD needed to share

	const reading = collect(found!.open({start: 96, end: 4095}));
	body.send(data);
	t.true((await reading).equals(data.subarray(96)));
	await h.fills.running(digest)?.done;
	await settle();
	t.true(await h.metadata.hasRepoBlob(redis, digest.value));
	t.deepEqual(origin.opens, [digest.value]);
	t.deepEqual(h.events.filter(event => event.startsWith('putBlob')), [`putBlob docker.io/library/nginx 4096 file=4096`]);
});

test('find never starts a fill: nothing stored and nothing running is undefined', async t => {
	const h = await harness(t);
	const data = bytes(10, 3);
	const origin = new FakeOrigin('docker.io', [data]);
	t.is(await h.fills.find(request(nginx, digestOf(data), origin)), undefined);
	t.deepEqual(origin.opens, []);
	t.deepEqual(origin.heads, []);
	t.is(h.fills.size, 0);
});

test('an offline upstream: BLOB_UNKNOWN without asking it; a stored blob is still a hit', async t => {
	const h = await harness(t);
	const data = bytes(100, 4);
	const origin = new FakeOrigin('docker.io', [data]);
	origin.offline = true;

	const error = await t.throwsAsync(h.fills.get(request(nginx, digestOf(data), origin)), {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.is(error?.status, 404);
	t.deepEqual(error?.detail, {digest: digestOf(data).value, reason: 'upstream is offline and this blob is not cached'});
	t.deepEqual(origin.opens, []);
	t.deepEqual(origin.heads, []);

	const cached = bytes(100, 5);
	await storeBlob(h, nginx, cached);
	t.is((await h.fills.get(request(nginx, digestOf(cached), origin))).outcome, 'hit');
	t.deepEqual(origin.opens, []);
});

test('a fill another upstream runs is not shared with an upstream that does not vouch for the blob; it is with one that does', async t => {
	const h = await harness(t);
	const data = bytes(9000, 6);
	const {origin: hub, body, digest} = manualOrigin(h, 'docker.io', data);
	const first = await h.fills.get(request(nginx, digest, hub));
	t.is(first.outcome, 'miss');

	const without = new FakeOrigin('ghcr.io'); // 404 to the HEAD
	t.is(await h.fills.find(request(ghcrTool, digest, without)), undefined);
	const error = await t.throwsAsync(h.fills.get(request(ghcrTool, digest, without)), {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.deepEqual(error?.detail, {digest: digest.value, upstream: 'ghcr.io'});
	t.deepEqual(without.opens, []);
	t.deepEqual(without.heads, [digest.value, digest.value]);

	const vouching = new FakeOrigin('ghcr.io', [data]);
	const joined = await h.fills.get(request(ghcrTool, digest, vouching));
	t.is(joined.outcome, 'joined');
	t.deepEqual(vouching.opens, []);
	const reading = collect(joined.open());
	body.send(data);
	t.true((await reading).equals(data));
	t.deepEqual(hub.opens, [digest.value]);
	await h.fills.running(digest)?.done;
	await settle();
	t.true(await h.metadata.hasRepoBlob(ghcrTool, digest.value));
});

test('the quota reserves the announced size before any byte is written and settles after the row is written', async t => {
	const h = await harness(t, {quota: true});
	const data = bytes(3000, 7);
	const {origin, body, digest} = manualOrigin(h, 'docker.io', data);

	h.atReserve = () => `bodyRead=${body.iterations}`;
	const result = await h.fills.get(request(nginx, digest, origin));
	t.deepEqual(h.events, ['open docker.io', 'reserve 3000 bodyRead=0']);
	const fill = h.fills.running(digest)!;
	t.is(fill.temp?.written, 0);

	const reading = collect(result.open());
	body.send(data, 3);
	t.true((await reading).equals(data));
	await fill.done;
	t.deepEqual(h.events, [
		'open docker.io',
		'reserve 3000 bodyRead=0',
		'fetched docker.io 1000',
		'fetched docker.io 1000',
		'fetched docker.io 1000',
		'putBlob docker.io/library/nginx 3000 file=3000',
		'settle',
	]);
});

test('without a Content-Length nothing is reserved, the size is unknown until the end, and the bytes are right', async t => {
	const h = await harness(t, {quota: true});
	const data = bytes(100_000, 8);
	const origin = new FakeOrigin('docker.io');
	const digest = origin.add(data);
	origin.announcedSize = 'none';

	const result = await h.fills.get(request(nginx, digest, origin));
	t.is(result.size, undefined);
	t.true((await collect(result.open())).equals(data));
	await h.fills.running(digest)?.done;
	t.deepEqual(h.events.filter(event => !event.startsWith('fetched')), ['putBlob docker.io/library/nginx 100000 file=100000', 'settle']);
});

test('a digest mismatch fails the fill with DIGEST_INVALID 502 and leaves nothing stored', async t => {
	const h = await harness(t, {quota: true});
	const data = bytes(50_000, 9);
	const digest = digestOf(data);
	const origin = new FakeOrigin('docker.io');
	origin.add(bytes(50_000, 10), digest); // the right length, the wrong bytes

	const result = await h.fills.get(request(nginx, digest, origin));
	t.is(result.outcome, 'miss');
	const fill = h.fills.running(digest)!;
	const error = await t.throwsAsync(collect(result.open()), {instanceOf: RegistryError});
	t.is(error?.code, 'DIGEST_INVALID');
	t.is(error?.status, 502);
	t.deepEqual(error?.detail, {expected: digest.value, actual: digestOf(bytes(50_000, 10)).value});
	await t.throwsAsync(fill.done, {instanceOf: RegistryError});

	t.is(await h.metadata.getBlob(digest.value), undefined);
	t.is(await h.blobs.size(digest), undefined);
	t.deepEqual(await filesUnder(h.blobs.tmpDir), []);
	t.deepEqual(await filesUnder(h.blobs.blobsDir), []);
	t.deepEqual(h.events.filter(event => !event.startsWith('fetched')), ['reserve 50000']); // no row, no settle

	// A failed fill is not remembered: the next request asks the upstream again.
	await settle();
	t.is(h.fills.size, 0);
	await h.fills.get(request(nginx, digest, origin)).then(async retry => collect(retry.open())).catch(() => undefined);
	t.is(origin.opens.length, 2);
});

test('a body that ends early is resumed from the byte it reached; the client gets one continuous stream and the blob lands whole', async t => {
	const h = await harness(t);
	const data = bytes(2000, 11);
	const {origin, body, digest} = manualOrigin(h, 'docker.io', data);

	const result = await h.fills.get(request(nginx, digest, origin));
	const reading = collect(result.open());
	body.push(data.subarray(0, 1500));
	body.end(); // 1500 of the 2000 bytes it announced
	t.true((await reading).equals(data));
	await h.fills.running(digest)?.done;
	t.deepEqual(origin.froms, [0, 1500]);
	t.deepEqual(
		h.events.filter(event => !event.startsWith('fetched')),
		['open docker.io', `resume docker.io ${digest.hex.slice(0, 6)} 1500: upstream sent 1500 of 2000 bytes`, 'open docker.io', 'putBlob docker.io/library/nginx 2000 file=2000'],
	);
	t.is(await h.blobs.size(digest), 2000);
});

test('an upstream that keeps ending early without sending more fails the fill (BLOB_UNKNOWN 502); nothing stored', async t => {
	const h = await harness(t);
	const data = bytes(2000, 12);
	const {origin, body, digest} = manualOrigin(h, 'docker.io', data);
	origin.resumeBody = () => {
		const empty = new ManualBody();
		empty.end();
		return empty;
	};

	const result = await h.fills.get(request(nginx, digest, origin));
	const fill = h.fills.running(digest)!;
	const reading = collect(result.open());
	body.push(data.subarray(0, 1500));
	body.end();
	const error = await t.throwsAsync(reading, {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.is(error?.status, 502);
	t.is(error?.message, 'upstream sent 1500 of 2000 bytes');
	await t.throwsAsync(fill.done, {is: error});
	t.deepEqual(origin.froms, [0, 1500, 1500, 1500]); // two resumes in a row may bring nothing; the third gives up
	t.is(await h.metadata.getBlob(digest.value), undefined);
	t.is(await h.blobs.size(digest), undefined);
	t.deepEqual(await filesUnder(h.blobs.tmpDir), []);
});

test("the upstream's refusal to open reaches the client as its error; no temp file is left", async t => {
	const h = await harness(t);
	const data = bytes(10, 12);
	const digest = digestOf(data);
	const origin = new FakeOrigin('docker.io'); // does not have it

	const error = await t.throwsAsync(h.fills.get(request(nginx, digest, origin)), {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.deepEqual(error?.detail, {digest: digest.value, upstream: 'docker.io'});
	t.deepEqual(origin.opens, [digest.value]);
	await settle();
	t.is(h.fills.size, 0);
	t.deepEqual(await filesUnder(h.blobs.tmpDir), []);
});

test("mayShare is the stored layer's answer", async t => {
	const h = await harness(t);
	const data = bytes(10, 13);
	const without = new FakeOrigin('ghcr.io');
	const r: BlobRequest = request(ghcrTool, digestOf(data), without);
	t.true(await h.fills.mayShare(r, 'ghcr.io'));
	t.false(await h.fills.mayShare(r, 'docker.io'));
	t.deepEqual(without.heads, [digestOf(data).value]);
});
