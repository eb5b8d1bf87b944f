/**
 * OCI distribution-spec v1.1 conformance, workflow 4: Content Management
 * (spec.md "Deleting tags", "Deleting Manifests", "Deleting Blobs"; the checks
 * of conformance/04_management_test.go). This registry implements deletion,
 * so the strict outcome (202, then 404) is expected everywhere.
 */
import test, {type ExecutionContext} from 'ava';
import {
	EMPTY_JSON,
	MEDIA,
	blob,
	configBlob,
	errorCodes,
	jsonOf,
	localRegistry,
	ociManifest,
	randomBlob,
	unknownDigest,
	withQuery,
	type Descriptor,
	type OciClient,
} from '../helpers/oci-client.js';
import {stopSharedStoreServers} from '../helpers/mirror.js';

// Run again on S3 + PostgreSQL with MIRROR_TEST_STORES=s3+postgres (see helpers/mirror.ts).
test.after.always(stopSharedStoreServers);

const REPO = 'private/conformance/a';
const CROSS = 'private/conformance/b';
const TAG = 'tagtest0';

async function setup(t: ExecutionContext) {
	const {client} = await localRegistry(t);
	const config = configBlob('management');
	const layer = randomBlob(4096);
	const manifest = ociManifest({config, layers: [layer]});
	await client.pushImage(REPO, TAG, {config, layers: [layer], manifest});
	await client.pushManifest(REPO, 'keep', manifest);
	return {client, config, layer, manifest};
}

async function tagList(client: OciClient, repo: string): Promise<{status: number; tags: string[] | undefined}> {
	const reply = await client.tags(repo);
	return {status: reply.status, tags: reply.status === 200 ? jsonOf<{tags: string[]}>(reply).tags : undefined};
}

// --- Manifest delete ----------------------------------------------------------------------------------

test('DELETE request to manifest tag should return 202; the tag is gone, the manifest stays by digest', async t => {
	const {client, manifest} = await setup(t);
	t.deepEqual(await tagList(client, REPO), {status: 200, tags: ['keep', TAG]});
	const reply = await client.request('DELETE', `/v2/${REPO}/manifests/${TAG}`);
	t.is(reply.status, 202);
	// "Once deleted, a GET to /v2/<name>/manifests/<tag> will return a 404."
	const gone = await client.getManifest(REPO, TAG);
	t.is(gone.status, 404);
	t.deepEqual(errorCodes(gone), ['MANIFEST_UNKNOWN']);
	// "GET request to tags list should reflect manifest deletion"
	t.deepEqual(await tagList(client, REPO), {status: 200, tags: ['keep']});
	// Only the tag went: the manifest and its other tag are still served.
	t.is((await client.getManifest(REPO, manifest.digest)).status, 200);
	t.is((await client.getManifest(REPO, 'keep')).status, 200);
});

test('DELETE request to manifest (digest) should yield 202; GET by digest and by every tag pointing to it is then 404', async t => {
	const {client, manifest} = await setup(t);
	const reply = await client.request('DELETE', `/v2/${REPO}/manifests/${manifest.digest}`);
	t.is(reply.status, 202);
	// "Once deleted, a GET to /v2/<name>/manifests/<digest> and any tag pointing to that digest will return a 404."
	for (const reference of [manifest.digest, TAG, 'keep']) {
		const get = await client.getManifest(REPO, reference);
		t.is(get.status, 404, reference);
		t.deepEqual(errorCodes(get), ['MANIFEST_UNKNOWN'], reference);
		t.is((await client.head(`/v2/${REPO}/manifests/${reference}`)).status, 404, reference);
	}
});

test('GET request to tags list should reflect manifest deletion (by digest, while another manifest keeps the repository)', async t => {
	const {client, manifest} = await setup(t);
	const config = configBlob('other');
	await client.pushBlob(REPO, config);
	await client.pushManifest(REPO, 'other', ociManifest({config, layers: []}));
	t.deepEqual(await tagList(client, REPO), {status: 200, tags: ['keep', 'other', TAG]});
	t.is((await client.request('DELETE', `/v2/${REPO}/manifests/${manifest.digest}`)).status, 202);
	t.deepEqual(await tagList(client, REPO), {status: 200, tags: ['other']});
});

test('GET request to tags list after deleting the last tag is 200 with an empty list', async t => {
	const {client, manifest} = await setup(t);
	t.is((await client.request('DELETE', `/v2/${REPO}/manifests/${TAG}`)).status, 202);
	t.is((await client.request('DELETE', `/v2/${REPO}/manifests/keep`)).status, 202);
	t.is((await client.getManifest(REPO, manifest.digest)).status, 200, 'the repository still holds the manifest');
	t.deepEqual(await tagList(client, REPO), {status: 200, tags: []});
});

test('DELETE of a manifest digest the repository does not have is 404 MANIFEST_UNKNOWN', async t => {
	const {client} = await setup(t);
	const reply = await client.request('DELETE', `/v2/${REPO}/manifests/${unknownDigest()}`);
	t.is(reply.status, 404);
	t.deepEqual(errorCodes(reply), ['MANIFEST_UNKNOWN']);
});

test('DELETE of a tag that does not exist is 404 MANIFEST_UNKNOWN', async t => {
	const {client} = await setup(t);
	const reply = await client.request('DELETE', `/v2/${REPO}/manifests/nonexistent`);
	t.is(reply.status, 404);
	t.deepEqual(errorCodes(reply), ['MANIFEST_UNKNOWN']);
});

test('DELETE of a manifest in a repository that does not exist is 404 MANIFEST_UNKNOWN', async t => {
	const {client, manifest} = await setup(t);
	// "If the repository does not exist, the response MUST return 404 Not Found."
	const reply = await client.request('DELETE', `/v2/private/conformance/nothere/manifests/${manifest.digest}`);
	t.is(reply.status, 404);
	// LocalWriter.deleteManifest: no such repository is no such manifest (deleteRepoManifest finds nothing).
	t.deepEqual(errorCodes(reply), ['MANIFEST_UNKNOWN']);
});

test('DELETE of a manifest in one repository leaves the same manifest in another', async t => {
	const {client, config, layer, manifest} = await setup(t);
	await client.pushImage(CROSS, TAG, {config, layers: [layer], manifest});
	t.is((await client.request('DELETE', `/v2/${REPO}/manifests/${manifest.digest}`)).status, 202);
	t.is((await client.getManifest(REPO, manifest.digest)).status, 404);
	const other = await client.getManifest(CROSS, TAG);
	t.is(other.status, 200);
	t.true(other.body.equals(manifest.bytes));
});

test('a deleted manifest can be pushed again', async t => {
	const {client, manifest} = await setup(t);
	t.is((await client.request('DELETE', `/v2/${REPO}/manifests/${manifest.digest}`)).status, 202);
	t.is((await client.putManifest(REPO, TAG, manifest)).status, 201);
	const get = await client.getManifest(REPO, TAG);
	t.is(get.status, 200);
	t.true(get.body.equals(manifest.bytes));
});

test('a deleted referrer is no longer listed by the referrers API', async t => {
	const {client, manifest} = await setup(t);
	const empty = blob(EMPTY_JSON, MEDIA.ociEmpty);
	await client.pushBlob(REPO, empty);
	const subject: Descriptor = {mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size};
	const keep = ociManifest({config: empty, layers: [], artifactType: 'application/vnd.example.keep', subject});
	const drop = ociManifest({config: empty, layers: [], artifactType: 'application/vnd.example.drop', subject});
	await client.pushManifest(REPO, keep.digest, keep);
	await client.pushManifest(REPO, drop.digest, drop);
	const before = jsonOf<{manifests: Descriptor[]}>(await client.get(`/v2/${REPO}/referrers/${manifest.digest}`));
	t.deepEqual(before.manifests.map(entry => entry.digest).sort(), [keep.digest, drop.digest].sort());

	t.is((await client.request('DELETE', `/v2/${REPO}/manifests/${drop.digest}`)).status, 202);
	// The referrers list holds manifests "in the same <name> namespace with a subject field": a deleted one is not.
	const reply = await client.get(`/v2/${REPO}/referrers/${manifest.digest}`);
	t.is(reply.status, 200);
	t.deepEqual(jsonOf<{manifests: Descriptor[]}>(reply).manifests.map(entry => entry.digest), [keep.digest]);
});

// --- Blob delete ----------------------------------------------------------------------------------------

test('DELETE request to blob URL should yield 202; GET and HEAD of the deleted blob are then 404 BLOB_UNKNOWN', async t => {
	const {client, config, layer, manifest} = await setup(t);
	// The manifest goes first, as a client tearing an image down would do it.
	t.is((await client.request('DELETE', `/v2/${REPO}/manifests/${manifest.digest}`)).status, 202);
	for (const entry of [config, layer]) {
		const reply = await client.request('DELETE', `/v2/${REPO}/blobs/${entry.digest}`);
		t.is(reply.status, 202, entry.digest);
		const get = await client.get(`/v2/${REPO}/blobs/${entry.digest}`);
		t.is(get.status, 404);
		t.deepEqual(errorCodes(get), ['BLOB_UNKNOWN']);
		t.is((await client.head(`/v2/${REPO}/blobs/${entry.digest}`)).status, 404);
	}
});

test('DELETE of a blob that is not found is 404 BLOB_UNKNOWN (also a second DELETE of the same blob)', async t => {
	const {client, layer} = await setup(t);
	const missing = await client.request('DELETE', `/v2/${REPO}/blobs/${unknownDigest()}`);
	// "If the blob is not found, a 404 Not Found code MUST be returned."
	t.is(missing.status, 404);
	t.deepEqual(errorCodes(missing), ['BLOB_UNKNOWN']);
	t.is((await client.request('DELETE', `/v2/${REPO}/blobs/${layer.digest}`)).status, 202);
	const again = await client.request('DELETE', `/v2/${REPO}/blobs/${layer.digest}`);
	t.is(again.status, 404);
	t.deepEqual(errorCodes(again), ['BLOB_UNKNOWN']);
});

test('DELETE of a blob in one repository leaves it in a repository it was mounted into', async t => {
	const {client, layer} = await setup(t);
	const mount = await client.request('POST', withQuery(client.url(`/v2/${CROSS}/blobs/uploads/`), {mount: layer.digest, from: REPO}), {headers: {'content-length': '0'}});
	t.is(mount.status, 201);
	t.is((await client.request('DELETE', `/v2/${REPO}/blobs/${layer.digest}`)).status, 202);
	t.is((await client.get(`/v2/${REPO}/blobs/${layer.digest}`)).status, 404);
	const other = await client.get(`/v2/${CROSS}/blobs/${layer.digest}`);
	t.is(other.status, 200);
	t.true(other.body.equals(layer.bytes));
});

test('a deleted blob can be uploaded again', async t => {
	const {client, layer} = await setup(t);
	t.is((await client.request('DELETE', `/v2/${REPO}/blobs/${layer.digest}`)).status, 202);
	await client.pushBlob(REPO, layer);
	const get = await client.get(`/v2/${REPO}/blobs/${layer.digest}`);
	t.is(get.status, 200);
	t.true(get.body.equals(layer.bytes));
});
