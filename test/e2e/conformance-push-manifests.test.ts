/**
 * OCI distribution-spec v1.1 conformance, workflow 2: Push — manifests
 * (spec.md "Pushing Manifests", "Pushing Manifests with Subject"; the
 * "Manifest Upload" checks of conformance/02_push_test.go), for the four
 * manifest media types this registry stores: OCI image manifest, OCI image
 * index, Docker schema 2 manifest and Docker manifest list.
 */
import test, {type ExecutionContext} from 'ava';
import {
	EMPTY_JSON,
	MEDIA,
	blob,
	configBlob,
	dockerManifest,
	errorCodes,
	imageIndex,
	localRegistry,
	location,
	ociManifest,
	randomBlob,
	sha256,
	unknownDigest,
	type Blob,
	type Manifest,
	type OciClient,
	type Reply,
} from '../helpers/oci-client.js';
import {stopSharedStoreServers} from '../helpers/mirror.js';

// Run again on S3 + PostgreSQL with MIRROR_TEST_STORES=s3+postgres (see helpers/mirror.ts).
test.after.always(stopSharedStoreServers);

const REPO = 'private/conformance/a';
const MAX_MANIFEST = 4 * 1024 * 1024;

/** The checks every successful manifest PUT gets: 201, a pullable Location, Docker-Content-Digest equal to the body's digest. */
async function checkCreated(t: ExecutionContext, client: OciClient, reply: Reply, manifest: Manifest): Promise<void> {
	t.is(reply.status, 201, reply.body.toString());
	// "The Docker-Content-Digest header returns the canonical digest of the uploaded blob, and MUST be equal to the client provided digest."
	t.is(reply.headers.get('docker-content-digest'), manifest.digest);
	// "The <location> is a pullable manifest URL."
	const pulled = await client.get(location(reply), {accept: manifest.mediaType});
	t.is(pulled.status, 200);
	t.true(pulled.body.equals(manifest.bytes), 'the Location serves the pushed bytes');
}

/** GET by reference: 200, the pushed Content-Type, the exact bytes, their digest. */
async function checkStored(t: ExecutionContext, client: OciClient, repo: string, reference: string, manifest: Manifest): Promise<void> {
	const reply = await client.getManifest(repo, reference, manifest.mediaType);
	t.is(reply.status, 200, `${repo}:${reference}`);
	t.is(reply.headers.get('content-type'), manifest.mediaType);
	t.is(reply.headers.get('docker-content-digest'), manifest.digest);
	// "The registry MUST store the manifest in the exact byte representation provided by the client."
	t.true(reply.body.equals(manifest.bytes), `${repo}:${reference}: bytes differ`);
}

async function image(client: OciClient, repo: string, label: string): Promise<{config: Blob; layer: Blob; manifest: Manifest}> {
	const config = configBlob(label);
	const layer = randomBlob(2048);
	await client.pushBlobs(repo, [config, layer]);
	return {config, layer, manifest: ociManifest({config, layers: [layer]})};
}

test('GET nonexistent manifest should return 404', async t => {
	const {client} = await localRegistry(t);
	const reply = await client.getManifest(REPO, 'nonexistent');
	t.is(reply.status, 404);
	t.deepEqual(errorCodes(reply), ['MANIFEST_UNKNOWN']);
});

test('PUT should accept an OCI manifest upload under four tags; GET by digest and by each tag returns it', async t => {
	const {client} = await localRegistry(t);
	const {manifest} = await image(client, REPO, 'four-tags');
	for (let i = 0; i < 4; i++) {
		const reply = await client.putManifest(REPO, `test${i}`, manifest);
		await checkCreated(t, client, reply, manifest);
	}

	await checkStored(t, client, REPO, manifest.digest, manifest);
	for (let i = 0; i < 4; i++) {
		await checkStored(t, client, REPO, `test${i}`, manifest);
	}
});

test('the Location of a manifest PUT by tag is a pullable manifest URL in the same repository', async t => {
	const {client} = await localRegistry(t);
	const {manifest} = await image(client, REPO, 'location');
	const reply = await client.putManifest(REPO, 'v1', manifest);
	t.is(reply.status, 201);
	const url = new URL(location(reply));
	t.true(url.pathname.startsWith(`/v2/${REPO}/manifests/`), url.pathname);
	await checkCreated(t, client, reply, manifest);
});

test('manifest PUT by digest: 201, Location, Docker-Content-Digest; GET by that digest returns the bytes', async t => {
	const {client} = await localRegistry(t);
	const {manifest} = await image(client, REPO, 'by-digest');
	const reply = await client.putManifest(REPO, manifest.digest, manifest);
	await checkCreated(t, client, reply, manifest);
	await checkStored(t, client, REPO, manifest.digest, manifest);
});

test('manifest PUT by a digest that is not the digest of the body is refused and stores nothing', async t => {
	const {client} = await localRegistry(t);
	const {manifest} = await image(client, REPO, 'wrong-digest');
	const wrong = unknownDigest();
	const reply = await client.putManifest(REPO, wrong, manifest);
	// The registry must answer with the digest of the body, which "MUST be equal to the client provided digest": it cannot accept this.
	t.is(reply.status, 400);
	// LocalWriter.putManifest: the body is a valid manifest, only its digest differs from the reference.
	t.deepEqual(errorCodes(reply), ['DIGEST_INVALID']);
	t.is((await client.getManifest(REPO, wrong)).status, 404);
	t.is((await client.getManifest(REPO, manifest.digest)).status, 404);
});

test('the manifest is stored byte for byte: unusual whitespace, key order and escapes survive', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('bytes');
	const layer = randomBlob(100);
	await client.pushBlobs(REPO, [config, layer]);
	const text =
		`{\r\n  "layers" : [ {"size": ${layer.size}, "digest": "${layer.digest}", "mediaType": "${MEDIA.ociLayer}"} ],` +
		`\n\t"config":{"digest":"${config.digest}","mediaType":"${MEDIA.ociConfig}","size":${config.size}},` +
		`"annotations": {"org.example.note": "caf\\u00e9 \u00e9t\u00e9 \\/ \\"q\\""},  "mediaType": "${MEDIA.ociManifest}", "schemaVersion":2 }\n\n`;
	const bytes = Buffer.from(text, 'utf8');
	const manifest: Manifest = {bytes, digest: sha256(bytes), mediaType: MEDIA.ociManifest, size: bytes.length, json: {}};
	const reply = await client.putManifest(REPO, 'bytes', manifest);
	await checkCreated(t, client, reply, manifest);
	await checkStored(t, client, REPO, 'bytes', manifest);
	await checkStored(t, client, REPO, manifest.digest, manifest);
});

test('Registry should accept a manifest upload with no layers', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('no-layers');
	await client.pushBlob(REPO, config);
	const manifest = ociManifest({config, layers: []});
	const reply = await client.putManifest(REPO, 'emptylayer', manifest);
	// "The uploaded manifest MUST reference any blobs that make up the object. However, the list of blobs MAY be empty."
	await checkCreated(t, client, reply, manifest);
	await checkStored(t, client, REPO, 'emptylayer', manifest);
});

test('Registry should accept a manifest upload with custom config mediaType (as artifact type)', async t => {
	const {client} = await localRegistry(t);
	const config = blob(Buffer.from('{"kind":"example"}'), 'application/vnd.example.config.v1+json');
	const layer = randomBlob(300, 'application/vnd.example.data.v1');
	await client.pushBlobs(REPO, [config, layer]);
	const manifest = ociManifest({config, layers: [layer]});
	const reply = await client.putManifest(REPO, manifest.digest, manifest);
	await checkCreated(t, client, reply, manifest);
	await checkStored(t, client, REPO, manifest.digest, manifest);
});

test('Registry should accept a manifest upload with custom artifactType and the empty JSON config', async t => {
	const {client} = await localRegistry(t);
	const empty = blob(EMPTY_JSON, MEDIA.ociEmpty);
	const layer = randomBlob(300, 'application/vnd.example.sbom.v1+json');
	await client.pushBlobs(REPO, [empty, layer]);
	const manifest = ociManifest({config: empty, layers: [layer], artifactType: 'application/vnd.example.sbom.v1'});
	const reply = await client.putManifest(REPO, manifest.digest, manifest);
	await checkCreated(t, client, reply, manifest);
	await checkStored(t, client, REPO, manifest.digest, manifest);
});

test('Registry should accept an OCI image index whose children exist, and serve it as an index', async t => {
	const {client} = await localRegistry(t);
	const amd = await image(client, REPO, 'amd64');
	const arm = await image(client, REPO, 'arm64');
	await client.pushManifest(REPO, amd.manifest.digest, amd.manifest);
	await client.pushManifest(REPO, arm.manifest.digest, arm.manifest);
	const index = imageIndex({
		manifests: [
			{...amd.manifest, platform: {architecture: 'amd64', os: 'linux'}},
			{...arm.manifest, platform: {architecture: 'arm64', os: 'linux'}},
		],
	});
	const reply = await client.putManifest(REPO, 'multi', index);
	await checkCreated(t, client, reply, index);
	await checkStored(t, client, REPO, 'multi', index);
	await checkStored(t, client, REPO, index.digest, index);
});

test('Registry should accept a nested image index (an index of an index)', async t => {
	const {client} = await localRegistry(t);
	const child = await image(client, REPO, 'nested');
	await client.pushManifest(REPO, child.manifest.digest, child.manifest);
	const inner = imageIndex({manifests: [child.manifest], artifactType: 'application/vnd.example.index.v1', annotations: {'org.example': 'inner'}});
	await client.pushManifest(REPO, inner.digest, inner);
	const outer = imageIndex({manifests: [{...inner, mediaType: MEDIA.ociIndex}], artifactType: 'application/vnd.example.index.v1'});
	const reply = await client.putManifest(REPO, outer.digest, outer);
	await checkCreated(t, client, reply, outer);
	await checkStored(t, client, REPO, outer.digest, outer);
});

test('an OCI index whose child manifest is not in the repository is 400 MANIFEST_BLOB_UNKNOWN, and nothing is stored', async t => {
	const {client} = await localRegistry(t);
	const child = await image(client, REPO, 'missing-child'); // blobs pushed, the child manifest itself is not
	const index = imageIndex({manifests: [child.manifest]});
	const reply = await client.putManifest(REPO, 'broken', index);
	// "When a manifest is rejected for this reason, it MUST result in one or more MANIFEST_BLOB_UNKNOWN errors."
	t.is(reply.status, 400);
	t.deepEqual(errorCodes(reply), ['MANIFEST_BLOB_UNKNOWN']);
	t.is((await client.getManifest(REPO, 'broken')).status, 404);
	t.is((await client.getManifest(REPO, index.digest)).status, 404);
});

test('an OCI manifest referencing a blob the repository does not have is 400 MANIFEST_BLOB_UNKNOWN, and nothing is stored', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('missing-layer');
	const layer = randomBlob(1000); // never pushed
	await client.pushBlob(REPO, config);
	const manifest = ociManifest({config, layers: [layer]});
	const reply = await client.putManifest(REPO, 'broken', manifest);
	t.is(reply.status, 400);
	t.deepEqual(errorCodes(reply), ['MANIFEST_BLOB_UNKNOWN']);
	t.is((await client.getManifest(REPO, 'broken')).status, 404);
	t.is((await client.getManifest(REPO, manifest.digest)).status, 404);
});

test('a manifest whose config blob is missing is 400 MANIFEST_BLOB_UNKNOWN', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('missing-config'); // never pushed
	const layer = randomBlob(1000);
	await client.pushBlob(REPO, layer);
	const reply = await client.putManifest(REPO, 'broken', ociManifest({config, layers: [layer]}));
	t.is(reply.status, 400);
	t.deepEqual(errorCodes(reply), ['MANIFEST_BLOB_UNKNOWN']);
});

test('Dangling subject: a manifest whose subject does not exist is accepted, with the OCI-Subject header', async t => {
	const {client} = await localRegistry(t);
	const empty = blob(EMPTY_JSON, MEDIA.ociEmpty);
	const layer = randomBlob(100, 'application/vnd.example.signature.v1');
	await client.pushBlobs(REPO, [empty, layer]);
	const subject = {mediaType: MEDIA.ociManifest, digest: unknownDigest(), size: 1234};
	const manifest = ociManifest({config: empty, layers: [layer], artifactType: 'application/vnd.example.signature.v1', subject});
	const reply = await client.putManifest(REPO, manifest.digest, manifest);
	// "A registry MUST initially accept an otherwise valid manifest with a subject field that references a manifest that does not exist"
	await checkCreated(t, client, reply, manifest);
	// "a registry implementation that supports the referrers API MUST respond with the response header OCI-Subject: <subject digest>"
	t.is(reply.headers.get('oci-subject'), subject.digest);
});

test('a manifest without a subject gets no OCI-Subject header', async t => {
	const {client} = await localRegistry(t);
	const {manifest} = await image(client, REPO, 'no-subject');
	const reply = await client.putManifest(REPO, 'plain', manifest);
	t.is(reply.status, 201);
	t.is(reply.headers.get('oci-subject'), null);
});

test('Docker schema 2 manifest: PUT 201, GET returns it with its Docker media type', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('docker', MEDIA.dockerConfig);
	const layer = randomBlob(5000, MEDIA.dockerLayer);
	await client.pushBlobs(REPO, [config, layer]);
	const manifest = dockerManifest(config, [layer]);
	const reply = await client.putManifest(REPO, 'docker', manifest);
	await checkCreated(t, client, reply, manifest);
	await checkStored(t, client, REPO, 'docker', manifest);
	await checkStored(t, client, REPO, manifest.digest, manifest);
});

test('Docker manifest list whose children exist: PUT 201, GET returns it with its media type', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('docker-list', MEDIA.dockerConfig);
	const layer = randomBlob(500, MEDIA.dockerLayer);
	await client.pushBlobs(REPO, [config, layer]);
	const child = dockerManifest(config, [layer]);
	await client.pushManifest(REPO, child.digest, child);
	const list = imageIndex({mediaType: MEDIA.dockerList, manifests: [{...child, platform: {architecture: 'amd64', os: 'linux'}}]});
	const reply = await client.putManifest(REPO, 'list', list);
	await checkCreated(t, client, reply, list);
	await checkStored(t, client, REPO, 'list', list);
});

test('a Docker manifest list whose child is missing is 400 MANIFEST_BLOB_UNKNOWN', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('docker-list-missing', MEDIA.dockerConfig);
	const child = dockerManifest(config, []); // never pushed
	const list = imageIndex({mediaType: MEDIA.dockerList, manifests: [{...child, platform: {architecture: 'amd64', os: 'linux'}}]});
	const reply = await client.putManifest(REPO, 'list', list);
	t.is(reply.status, 400);
	t.deepEqual(errorCodes(reply), ['MANIFEST_BLOB_UNKNOWN']);
});

test('a body that is not JSON is 400 MANIFEST_INVALID, and nothing is stored', async t => {
	const {client} = await localRegistry(t);
	const bytes = Buffer.from('{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": ');
	const reply = await client.putManifest(REPO, 'invalid', {bytes, mediaType: MEDIA.ociManifest});
	t.is(reply.status, 400);
	t.deepEqual(errorCodes(reply), ['MANIFEST_INVALID']);
	t.is((await client.getManifest(REPO, 'invalid')).status, 404);
});

test('JSON that is not a manifest (no config, no layers) is 400 MANIFEST_INVALID', async t => {
	const {client} = await localRegistry(t);
	const bytes = Buffer.from(JSON.stringify({schemaVersion: 2, mediaType: MEDIA.ociManifest, config: 'nope'}));
	const reply = await client.putManifest(REPO, 'invalid', {bytes, mediaType: MEDIA.ociManifest});
	t.is(reply.status, 400);
	t.deepEqual(errorCodes(reply), ['MANIFEST_INVALID']);
	t.is((await client.getManifest(REPO, 'invalid')).status, 404);
});

test('a manifest of exactly 4 MiB is accepted ("SHOULD expect to be able to support manifest pushes of at least 4 megabytes")', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('large');
	await client.pushBlob(REPO, config);
	const manifest = paddedManifest(config, MAX_MANIFEST);
	t.is(manifest.size, MAX_MANIFEST);
	const reply = await client.putManifest(REPO, 'large', manifest);
	t.is(reply.status, 201);
	t.is(reply.headers.get('docker-content-digest'), manifest.digest);
	await checkStored(t, client, REPO, 'large', manifest);
});

test('a manifest over 4 MiB is refused with 413 MANIFEST_INVALID, and nothing is stored', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('too-large');
	await client.pushBlob(REPO, config);
	const manifest = paddedManifest(config, MAX_MANIFEST + 1);
	t.is(manifest.size, MAX_MANIFEST + 1);
	const reply = await client.putManifest(REPO, 'toolarge', manifest);
	// "A registry that enforces this limit SHOULD respond to a request to push a manifest over this limit with a response code 413"
	// The Content-Length is over MAX_MANIFEST_BYTES: refused before the body is read (readBody throws TooLargeError).
	t.is(reply.status, 413);
	t.deepEqual(errorCodes(reply), ['MANIFEST_INVALID']);

	t.is((await client.getManifest(REPO, 'toolarge')).status, 404);
	t.is((await client.getManifest(REPO, manifest.digest)).status, 404);
});

test('Content-Type parameters on a manifest PUT are ignored, and the GET Content-Type has none', async t => {
	const {client} = await localRegistry(t);
	const {manifest} = await image(client, REPO, 'params');
	// "The registry SHOULD ignore parameters on the Content-Type header."
	const reply = await client.putManifest(REPO, 'params', manifest, `${MEDIA.ociManifest}; charset=utf-8`);
	await checkCreated(t, client, reply, manifest);
	// "The registry SHOULD NOT include parameters on the Content-Type header."
	await checkStored(t, client, REPO, 'params', manifest);
});

test('a manifest without a mediaType field is served with the Content-Type it was pushed with', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('no-media-type');
	const layer = randomBlob(100);
	await client.pushBlobs(REPO, [config, layer]);
	const bytes = Buffer.from(JSON.stringify({schemaVersion: 2, config: {mediaType: MEDIA.ociConfig, digest: config.digest, size: config.size}, layers: [{mediaType: MEDIA.ociLayer, digest: layer.digest, size: layer.size}]}));
	const manifest: Manifest = {bytes, digest: sha256(bytes), mediaType: MEDIA.ociManifest, size: bytes.length, json: {}};
	const reply = await client.putManifest(REPO, 'untyped', manifest);
	await checkCreated(t, client, reply, manifest);
	// "The Content-Type header SHOULD match what the client pushed as the manifest's Content-Type."
	await checkStored(t, client, REPO, 'untyped', manifest);
});

test('pushing a tag again moves it to the new manifest; the old one stays by digest', async t => {
	const {client} = await localRegistry(t);
	const first = await image(client, REPO, 'first');
	const second = await image(client, REPO, 'second');
	await client.pushManifest(REPO, 'moving', first.manifest);
	await client.pushManifest(REPO, 'moving', second.manifest);
	await checkStored(t, client, REPO, 'moving', second.manifest);
	await checkStored(t, client, REPO, first.manifest.digest, first.manifest);
});

/** An OCI manifest of exactly `size` bytes, padded with an annotation. */
function paddedManifest(config: Blob, size: number): Manifest {
	const base = ociManifest({config, layers: [], annotations: {'org.example.padding': ''}, indent: ''});
	const padding = 'x'.repeat(size - base.size);
	const result = ociManifest({config, layers: [], annotations: {'org.example.padding': padding}, indent: ''});
	return result;
}

test('a tag of 128 characters is accepted; 129 characters or a tag outside the grammar is refused with 400 TAG_INVALID', async t => {
	const {client} = await localRegistry(t);
	const {manifest} = await image(client, REPO, 'tag-grammar');
	// "<reference> as a tag MUST be at most 128 characters in length and MUST match the following regular expression:
	//  [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
	const longest = `_${'a'.repeat(126)}Z`;
	t.is(longest.length, 128);
	await checkCreated(t, client, await client.putManifest(REPO, longest, manifest), manifest);
	await checkStored(t, client, REPO, longest, manifest);
	for (const tag of [`a${'b'.repeat(128)}`, '-leading-dash', '.leading-dot']) {
		const reply = await client.putManifest(REPO, tag, manifest);
		t.is(reply.status, 400, tag);
		// TAG_INVALID is a legacy Docker code the spec says clients may meet ("Legacy Docker support error codes");
		// parseReference refuses the tag before the body is read.
		t.deepEqual(errorCodes(reply), ['TAG_INVALID'], tag);
	}

	const tags = await client.tags(REPO);
	t.deepEqual((JSON.parse(tags.body.toString()) as {tags: string[]}).tags, [longest]);
});
