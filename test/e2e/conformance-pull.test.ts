/**
 * OCI distribution-spec v1.1 conformance, workflow 1: Pull
 * (spec.md "Pulling manifests", "Pulling blobs", "Checking if content exists
 * in the registry", "Error Codes"; the checks of conformance/01_pull_test.go).
 * Content is pushed into a local namespace first, then pulled back.
 */
import {createServer} from 'node:http';
import test, {type ExecutionContext} from 'ava';
import {startMirror, stopSharedStoreServers} from '../helpers/mirror.js';
import {closeServer, listenLocal} from '../helpers/process.js';
import {
	EMPTY_JSON,
	MEDIA,
	SPEC_ERROR_CODES,
	blob,
	configBlob,
	errorCodes,
	errorsOf,
	OciClient,
	localRegistry,
	ociManifest,
	randomBlob,
	sha256,
	unknownDigest,
	type Reply,
} from '../helpers/oci-client.js';

// Run again on S3 + PostgreSQL with MIRROR_TEST_STORES=s3+postgres (see helpers/mirror.ts).
test.after.always(stopSharedStoreServers);

const REPO = 'private/conformance/a';
const TAG = 'tagtest0';

async function setup(t: ExecutionContext) {
	const {client} = await localRegistry(t);
	const config = configBlob('pull');
	const layer = randomBlob(64 * 1024);
	const manifest = ociManifest({config, layers: [layer]});
	await client.pushImage(REPO, TAG, {config, layers: [layer], manifest});
	return {client, config, layer, manifest};
}

function checkManifestHeaders(t: ExecutionContext, reply: Awaited<ReturnType<OciClient['get']>>, manifest: {digest: string; size: number; mediaType: string}) {
	t.is(reply.status, 200, reply.url);
	// "In a successful response, the Content-Type header will indicate the type of the returned manifest.
	//  The registry SHOULD NOT include parameters on the Content-Type header."
	t.is(reply.headers.get('content-type'), manifest.mediaType);
	// "A successful response SHOULD contain the digest of the uploaded blob in the header Docker-Content-Digest."
	t.is(reply.headers.get('docker-content-digest'), manifest.digest);
	// "A successful response SHOULD contain the size in bytes of the uploaded blob in the header Content-Length."
	t.is(reply.headers.get('content-length'), String(manifest.size));
}

test('GET /v2/ answers 200: the registry implements the specification', async t => {
	const {client} = await localRegistry(t);
	const reply = await client.get('/v2/');
	t.is(reply.status, 200);
});

test('HEAD request to nonexistent blob should result in 404 response', async t => {
	const {client} = await setup(t);
	const reply = await client.head(`/v2/${REPO}/blobs/${unknownDigest()}`);
	t.is(reply.status, 404);
	t.is(reply.body.length, 0);
});

test('HEAD request to existing blob should yield 200 with Docker-Content-Digest and Content-Length, and no body', async t => {
	const {client, config, layer} = await setup(t);
	for (const entry of [config, layer]) {
		const reply = await client.head(`/v2/${REPO}/blobs/${entry.digest}`);
		t.is(reply.status, 200);
		t.is(reply.headers.get('docker-content-digest'), entry.digest);
		t.is(reply.headers.get('content-length'), String(entry.size));
		t.is(reply.body.length, 0);
	}
});

test('GET nonexistent blob should result in 404 response with a BLOB_UNKNOWN error body', async t => {
	const {client} = await setup(t);
	const reply = await client.get(`/v2/${REPO}/blobs/${unknownDigest()}`);
	t.is(reply.status, 404);
	t.deepEqual(errorCodes(reply), ['BLOB_UNKNOWN']);
});

test('GET request to existing blob URL should yield 200 with the exact bytes and a matching Docker-Content-Digest', async t => {
	const {client, config, layer} = await setup(t);
	for (const entry of [config, layer]) {
		const reply = await client.get(`/v2/${REPO}/blobs/${entry.digest}`);
		t.is(reply.status, 200);
		t.true(reply.body.equals(entry.bytes), 'blob bytes differ');
		// "If present, the value of this header MUST be a digest matching that of the response body."
		t.is(reply.headers.get('docker-content-digest'), sha256(reply.body));
		t.is(reply.headers.get('content-length'), String(entry.size));
	}
});

test('GET blob with a Range header answers 206 with that part (SHOULD support Range, RFC 9110)', async t => {
	const {client, layer} = await setup(t);
	const reply = await client.get(`/v2/${REPO}/blobs/${layer.digest}`, {range: 'bytes=100-1123'});
	t.is(reply.status, 206);
	t.is(reply.headers.get('content-range'), `bytes 100-1123/${layer.size}`);
	t.true(reply.body.equals(layer.bytes.subarray(100, 1124)));
});

test('a blob is only served from the repository that holds it', async t => {
	const {client, layer} = await setup(t);
	// A repository that was never pushed to does not hold the blob.
	const reply = await client.get(`/v2/private/conformance/b/blobs/${layer.digest}`);
	t.is(reply.status, 404);
	t.deepEqual(errorCodes(reply), ['BLOB_UNKNOWN']);
});

test('HEAD request to nonexistent manifest should return 404', async t => {
	const {client} = await setup(t);
	const byTag = await client.head(`/v2/${REPO}/manifests/nonexistent`);
	t.is(byTag.status, 404);
	const byDigest = await client.head(`/v2/${REPO}/manifests/${unknownDigest()}`);
	t.is(byDigest.status, 404);
});

test('HEAD request to manifest path (digest) should yield 200 response with the manifest headers', async t => {
	const {client, manifest} = await setup(t);
	const reply = await client.head(`/v2/${REPO}/manifests/${manifest.digest}`, {accept: MEDIA.ociManifest});
	checkManifestHeaders(t, reply, manifest);
	t.is(reply.body.length, 0);
});

test('HEAD request to manifest path (tag) should yield 200 response with the manifest headers', async t => {
	const {client, manifest} = await setup(t);
	const reply = await client.head(`/v2/${REPO}/manifests/${TAG}`, {accept: MEDIA.ociManifest});
	checkManifestHeaders(t, reply, manifest);
	t.is(reply.body.length, 0);
});

test('GET nonexistent manifest should return 404 with a MANIFEST_UNKNOWN error body', async t => {
	const {client} = await setup(t);
	for (const reference of ['nonexistent', unknownDigest()]) {
		const reply = await client.get(`/v2/${REPO}/manifests/${reference}`, {accept: MEDIA.ociManifest});
		t.is(reply.status, 404, reference);
		t.deepEqual(errorCodes(reply), ['MANIFEST_UNKNOWN'], reference);
	}
});

test('GET a manifest of a repository that does not exist returns 404 MANIFEST_UNKNOWN', async t => {
	const {client} = await setup(t);
	// "An attempt to pull a nonexistent repository MUST return response code 404 Not Found."
	const reply = await client.get(`/v2/private/conformance/nothere/manifests/${TAG}`, {accept: MEDIA.ociManifest});
	t.is(reply.status, 404);
	// LocalService.getManifest: an unknown repository has no such tag; the error is about the manifest.
	t.deepEqual(errorCodes(reply), ['MANIFEST_UNKNOWN']);
});

test('GET request to manifest path (digest) should yield 200 response with the exact bytes', async t => {
	const {client, manifest} = await setup(t);
	const reply = await client.get(`/v2/${REPO}/manifests/${manifest.digest}`, {accept: MEDIA.ociManifest});
	checkManifestHeaders(t, reply, manifest);
	t.true(reply.body.equals(manifest.bytes), 'manifest bytes differ');
	t.is(sha256(reply.body), manifest.digest);
});

test('GET request to manifest path (tag) should yield 200 response with the exact bytes', async t => {
	const {client, manifest} = await setup(t);
	const reply = await client.get(`/v2/${REPO}/manifests/${TAG}`, {accept: MEDIA.ociManifest});
	checkManifestHeaders(t, reply, manifest);
	t.true(reply.body.equals(manifest.bytes), 'manifest bytes differ');
});

test('400 response body should contain OCI-conforming JSON message', async t => {
	const {client} = await setup(t);
	// The conformance suite PUTs an invalid manifest under a reference that is neither a tag nor a digest.
	const reply = await client.request('PUT', `/v2/${REPO}/manifests/sha256:totallywrong`, {
		headers: {'content-type': MEDIA.ociManifest},
		body: Buffer.from('{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {'),
	});
	// `sha256:totallywrong` has a colon, so it is parsed as a digest (parseReference) and refused before the body is read.
	t.is(reply.status, 400);
	t.deepEqual(errorCodes(reply), ['DIGEST_INVALID']);
});

test('error bodies of 4xx responses have the spec format', async t => {
	const {client} = await setup(t);
	const replies: Array<[Reply, number, string]> = [
		[await client.get(`/v2/${REPO}/manifests/nonexistent`), 404, 'MANIFEST_UNKNOWN'],
		[await client.get(`/v2/${REPO}/blobs/${unknownDigest()}`), 404, 'BLOB_UNKNOWN'],
		// `{}` has no schemaVersion 2 (LocalWriter.putManifest).
		[await client.request('PUT', `/v2/${REPO}/manifests/broken`, {headers: {'content-type': MEDIA.ociManifest}, body: EMPTY_JSON}), 400, 'MANIFEST_INVALID'],
		[await client.get(`/v2/${REPO}/blobs/uploads/00000000-0000-0000-0000-000000000000`), 404, 'BLOB_UPLOAD_UNKNOWN'],
	];
	for (const [reply, status, code] of replies) {
		t.is(reply.status, status, reply.url);
		// errorsOf checks {"errors":[{"code","message","detail"}]} with codes of [A-Z_]+
		t.deepEqual(errorsOf(reply).map(entry => entry.code), [code], reply.url);
		t.true(SPEC_ERROR_CODES.includes(code), `${code} is a code of the spec's table`);
	}
});

test('a manifest is only served from the repository it was pushed to', async t => {
	const {client, manifest} = await setup(t);
	const other = 'private/conformance/b';
	// b exists (it has another image) but never received this manifest.
	const config = configBlob('other');
	const layer = blob(Buffer.from('other layer'));
	await client.pushImage(other, TAG, {config, layers: [layer], manifest: ociManifest({config, layers: [layer]})});
	const reply = await client.get(`/v2/${other}/manifests/${manifest.digest}`, {accept: MEDIA.ociManifest});
	t.is(reply.status, 404);
	t.deepEqual(errorCodes(reply), ['MANIFEST_UNKNOWN']);
});

// --- Warnings (spec.md "Warnings"), on a pull through a cached namespace ----------------------------------

test('a Warning header on a pull has warn-code 299, warn-agent "-" and no warn-date', async t => {
	const config = configBlob('stale');
	const manifest = ociManifest({config, layers: []});
	const upstream = createServer((request, response) => {
		if (request.url === '/v2/' || request.url === '/v2') {
			response.writeHead(200, {'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0'});
			response.end('{}');
			return;
		}

		if (request.url?.startsWith('/v2/library/app/manifests/')) {
			response.writeHead(200, {'content-type': MEDIA.ociManifest, 'docker-content-digest': manifest.digest, 'content-length': String(manifest.size)});
			response.end(request.method === 'HEAD' ? undefined : manifest.bytes);
			return;
		}

		response.writeHead(404, {'content-type': 'application/json'});
		response.end('{"errors":[{"code":"NOT_FOUND","message":"not here"}]}');
	});
	const port = await listenLocal(upstream, 0);
	const mirror = await startMirror({
		upstreams: {'docker.io': {url: `http://127.0.0.1:${port}`, tag_ttl: '0s'}},
		namespaces: [{prefix: 'private/', local: true}, {prefix: '', upstream: 'docker.io'}],
	});
	t.teardown(async () => {
		upstream.closeAllConnections();
		await closeServer(upstream);
		await mirror.stop();
	});
	const client = new OciClient(mirror.url);

	const fresh = await client.getManifest('library/app', '1', MEDIA.ociManifest);
	t.is(fresh.status, 200);
	t.true(fresh.body.equals(manifest.bytes));

	// The upstream goes away; the cached copy is still served, now with a warning.
	upstream.closeAllConnections();
	await closeServer(upstream);
	const stale = await client.getManifest('library/app', '1', MEDIA.ociManifest);
	t.is(stale.status, 200);
	t.true(stale.body.equals(manifest.bytes));
	const warning = stale.headers.get('warning');
	// This mirror's documented behaviour: one warning, naming the failed upstream (ProxyManifests.#stale).
	t.is(warning, '299 - "stale: upstream docker.io failed (upstream docker.io unreachable); serving the cached copy"');
	for (const value of (warning ?? '').split(/,(?=\s*\d{3}\s)/)) {
		// warning-value = warn-code SP warn-agent SP warn-text [ SP warn-date ]  (RFC 7234 §5.5)
		t.regex(value.trim(), /^299 - "(?:[^"\\]|\\.)*"$/, value);
	}

	t.true(Buffer.byteLength(warning ?? '') <= 4096, '"A registry MUST NOT send more than 4096 bytes of warning data"');
});
