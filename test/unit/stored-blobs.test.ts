import {rm} from 'node:fs/promises';
import test, {type ExecutionContext} from 'ava';
import {type BlobRequest} from '../../src/fill/source.js';
import {StoredBlobs} from '../../src/fill/stored.js';
import {type RepoKey} from '../../src/store/metadata.js';
import {RegistryError, UpstreamError} from '../../src/v2/errors.js';
import {FakeAccess, FakeOrigin, type Stores, bytes, collect, digestOf, openStores, storeBlob} from './fakes.js';

const nginx: RepoKey = {registry: 'docker.io', name: 'library/nginx'};
const redis: RepoKey = {registry: 'docker.io', name: 'library/redis'};
const ghcrTool: RepoKey = {registry: 'ghcr.io', name: 'org/tool'};

type Harness = Stores & {stored: StoredBlobs; access: FakeAccess};

async function harness(t: ExecutionContext): Promise<Harness> {
	const stores = await openStores(t);
	const access = new FakeAccess();
	return {...stores, access, stored: new StoredBlobs({index: stores.metadata, content: stores.blobs, access})};
}

function request(repo: RepoKey, data: Uint8Array, origin: FakeOrigin, anyCopy?: boolean): BlobRequest {
	return {digest: digestOf(data), repo, origin, ...(anyCopy === undefined ? {} : {anyCopy})};
}

test('a blob the repository links is a hit: size, bytes, ranges, an access touch; the upstream is not asked', async t => {
	const h = await harness(t);
	const data = bytes(5000);
	const digest = await storeBlob(h, nginx, data);
	const origin = new FakeOrigin('docker.io');

	const found = await h.stored.find(request(nginx, data, origin));
	t.truthy(found);
	t.is(found!.size, 5000);
	t.is(found!.outcome, 'hit');
	t.true(found!.stored);
	t.true((await collect(found!.open())).equals(data));
	t.true((await collect(found!.open({start: 100, end: 199}))).equals(data.subarray(100, 200)));
	t.deepEqual(h.access.touched, [['blob', digest.value]]);
	t.deepEqual(origin.heads, []);
	t.deepEqual(origin.opens, []);

	const got = await h.stored.get(request(nginx, data, origin));
	t.is(got.size, 5000);
	t.is(got.outcome, 'hit');
});

test('an unknown blob is not found, and get answers BLOB_UNKNOWN 404', async t => {
	const h = await harness(t);
	const data = bytes(10);
	const origin = new FakeOrigin('docker.io', [data]);

	t.is(await h.stored.find(request(nginx, data, origin)), undefined);
	const error = await t.throwsAsync(h.stored.get(request(nginx, data, origin)), {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.is(error?.status, 404);
	t.deepEqual(error?.detail, {digest: digestOf(data).value});
	t.deepEqual(h.access.touched, []);
	t.deepEqual(origin.opens, []);
});

test('a blob another repository of the same upstream links is served and linked, without asking the upstream', async t => {
	const h = await harness(t);
	const data = bytes(300, 2);
	const digest = await storeBlob(h, nginx, data);
	const origin = new FakeOrigin('docker.io');

	t.false(await h.metadata.hasRepoBlob(redis, digest.value));
	const found = await h.stored.find(request(redis, data, origin));
	t.is(found?.size, 300);
	t.true((await collect(found!.open())).equals(data));
	t.true(await h.metadata.hasRepoBlob(redis, digest.value));
	t.deepEqual(origin.heads, []);
});

test('a blob only another upstream brought in is not served when this upstream does not have it', async t => {
	const h = await harness(t);
	const data = bytes(300, 3);
	const digest = await storeBlob(h, nginx, data);
	const ghcr = new FakeOrigin('ghcr.io'); // answers 404 to the HEAD

	t.is(await h.stored.find(request(ghcrTool, data, ghcr)), undefined);
	t.deepEqual(ghcr.heads, [digest.value]);
	t.false(await h.metadata.hasRepoBlob(ghcrTool, digest.value));
	const error = await t.throwsAsync(h.stored.get(request(ghcrTool, data, ghcr)), {instanceOf: RegistryError});
	t.is(error?.code, 'BLOB_UNKNOWN');
	t.deepEqual(h.access.touched, []);
});

test('a blob another upstream brought in is served once this upstream confirms it with a HEAD, and linked', async t => {
	const h = await harness(t);
	const data = bytes(300, 4);
	const digest = await storeBlob(h, nginx, data);
	const ghcr = new FakeOrigin('ghcr.io', [data]);

	const found = await h.stored.find(request(ghcrTool, data, ghcr));
	t.is(found?.size, 300);
	t.true((await collect(found!.open())).equals(data));
	t.deepEqual(ghcr.heads, [digest.value]);
	t.true(await h.metadata.hasRepoBlob(ghcrTool, digest.value));

	// Linked now: the next request needs no HEAD.
	await h.stored.find(request(ghcrTool, data, ghcr));
	t.deepEqual(ghcr.heads, [digest.value]);
	t.deepEqual(ghcr.opens, []);
});

test('when the upstream cannot answer the HEAD the verified bytes are served; an authoritative refusal is not', async t => {
	const h = await harness(t);
	const data = bytes(64, 5);
	const digest = await storeBlob(h, nginx, data);

	// First the refusal: nothing of ghcr.io links the blob yet.
	const denied = new FakeOrigin('ghcr.io');
	denied.headError = new RegistryError('NAME_UNKNOWN', {message: 'the upstream denied access to this repository'});
	const deniedRepo = {registry: 'ghcr.io', name: 'org/private'};
	t.is(await h.stored.find(request(deniedRepo, data, denied)), undefined);
	t.false(await h.metadata.hasRepoBlob(deniedRepo, digest.value));
	t.deepEqual(denied.heads, [digest.value]);

	const down = new FakeOrigin('ghcr.io');
	down.headError = new UpstreamError('UNAVAILABLE', {message: 'upstream ghcr.io answered 503'});
	t.is((await h.stored.find(request(ghcrTool, data, down)))?.size, 64);
	t.true(await h.metadata.hasRepoBlob(ghcrTool, digest.value));

	const limited = new FakeOrigin('quay.io');
	limited.headError = new RegistryError('TOOMANYREQUESTS');
	t.is((await h.stored.find(request({registry: 'quay.io', name: 'org/other'}, data, limited)))?.size, 64);
	t.deepEqual(limited.heads, [digest.value]);
});

test('an offline upstream is not asked: a stored blob is served under its name', async t => {
	const h = await harness(t);
	const data = bytes(64, 6);
	await storeBlob(h, nginx, data);
	const offline = new FakeOrigin('ghcr.io');
	offline.offline = true;

	t.is((await h.stored.find(request(ghcrTool, data, offline)))?.size, 64);
	t.deepEqual(offline.heads, []);
});

test('a row whose file is gone is forgotten and not served', async t => {
	const h = await harness(t);
	const data = bytes(1000, 7);
	const digest = await storeBlob(h, nginx, data);
	await rm(h.blobs.pathOf(digest));
	const origin = new FakeOrigin('docker.io', [data]);

	t.is(await h.stored.find(request(nginx, data, origin)), undefined);
	t.is(await h.metadata.getBlob(digest.value), undefined);
	t.false(await h.metadata.hasRepoBlob(nginx, digest.value));
	t.deepEqual(h.access.touched, []);
	t.deepEqual(origin.heads, []);
});

test('anyCopy: any stored copy is served, whichever upstream brought it, without a HEAD or a link', async t => {
	const h = await harness(t);
	const data = bytes(777, 8);
	const digest = await storeBlob(h, nginx, data);
	const ghcr = new FakeOrigin('ghcr.io'); // would answer 404

	const found = await h.stored.find(request(ghcrTool, data, ghcr, true));
	t.is(found?.size, 777);
	t.is(found?.outcome, 'hit');
	t.true((await collect(found!.open({start: 700, end: 776}))).equals(data.subarray(700)));
	t.deepEqual(ghcr.heads, []);
	t.false(await h.metadata.hasRepoBlob(ghcrTool, digest.value));

	// A row without its file is no copy (and anyCopy leaves the row alone).
	const lost = bytes(10, 9);
	const lostDigest = await storeBlob(h, nginx, lost);
	await rm(h.blobs.pathOf(lostDigest));
	t.is(await h.stored.find(request(ghcrTool, lost, ghcr, true)), undefined);
	t.truthy(await h.metadata.getBlob(lostDigest.value));
});

test('mayShare: the same upstream, an unknown origin or anyCopy share at once; another upstream only if this one vouches', async t => {
	const h = await harness(t);
	const data = bytes(50, 10);
	const digest = digestOf(data);
	const without = new FakeOrigin('ghcr.io');
	const withIt = new FakeOrigin('ghcr.io', [data]);

	t.true(await h.stored.mayShare(request(ghcrTool, data, without), 'ghcr.io'));
	t.true(await h.stored.mayShare(request(ghcrTool, data, without), undefined));
	t.true(await h.stored.mayShare(request(ghcrTool, data, without, true), 'docker.io'));
	t.deepEqual(without.heads, []);

	t.false(await h.stored.mayShare(request(ghcrTool, data, without), 'docker.io'));
	t.deepEqual(without.heads, [digest.value]);
	t.true(await h.stored.mayShare(request(ghcrTool, data, withIt), 'docker.io'));
	t.deepEqual(withIt.heads, [digest.value]);

	// Another repository of ghcr.io links it: vouched without a HEAD.
	await storeBlob(h, {registry: 'ghcr.io', name: 'org/other'}, data);
	const fresh = new FakeOrigin('ghcr.io');
	t.true(await h.stored.mayShare(request(ghcrTool, data, fresh), 'docker.io'));
	t.deepEqual(fresh.heads, []);
});
