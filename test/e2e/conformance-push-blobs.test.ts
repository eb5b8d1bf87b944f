/**
 * OCI distribution-spec v1.1 conformance, workflow 2: Push — blobs
 * (spec.md "Pushing blobs", "POST then PUT", "Single POST", "Pushing a blob in
 * chunks", "Mounting a blob from another repository", "Cancel a blob upload";
 * the blob checks of conformance/02_push_test.go). Every Location header is
 * resolved against the URL of the request that returned it.
 */
import test from 'ava';
import {
	EMPTY_BLOB_DIGEST,
	EMPTY_JSON,
	EMPTY_JSON_DIGEST,
	SPEC_ERROR_CODES,
	UUID_PATTERN,
	blob,
	droppedPatch,
	errorCodes,
	localRegistry,
	location,
	randomBlob,
	sha256,
	unknownDigest,
	withQuery,
	type OciClient,
} from '../helpers/oci-client.js';
import {type Mirror, stopSharedStoreServers} from '../helpers/mirror.js';

// Run again on S3 + PostgreSQL with MIRROR_TEST_STORES=s3+postgres (see helpers/mirror.ts).
test.after.always(stopSharedStoreServers);

const REPO = 'private/conformance/a';
const CROSS = 'private/conformance/b';

async function expectBlob(client: OciClient, repo: string, entry: {bytes: Buffer; digest: string}): Promise<{status: number; same: boolean; digestHeader: string | null}> {
	const reply = await client.get(`/v2/${repo}/blobs/${entry.digest}`);
	return {status: reply.status, same: reply.body.equals(entry.bytes), digestHeader: reply.headers.get('docker-content-digest')};
}

/** Chunk sizes that honour OCI-Chunk-Min-Length when the registry announces one. */
function chunkSize(minimum: string | null, fallback: number): number {
	const min = minimum === null ? 0 : Number(minimum);
	return Math.max(min, fallback);
}

// --- setup blobs of the official suite ----------------------------------------------------------

test('the empty JSON blob has the digest the image-spec fixes, and uploads', async t => {
	const {client} = await localRegistry(t);
	t.is(sha256(EMPTY_JSON), EMPTY_JSON_DIGEST);
	const session = await client.mustStartUpload(REPO);
	const reply = await client.finishUpload(session, EMPTY_JSON_DIGEST, EMPTY_JSON);
	t.is(reply.status, 201);
	t.deepEqual(await expectBlob(client, REPO, {bytes: EMPTY_JSON, digest: EMPTY_JSON_DIGEST}), {status: 200, same: true, digestHeader: EMPTY_JSON_DIGEST});
});

// --- Blob Upload Streamed -------------------------------------------------------------------------

test('streamed: PATCH request with blob in body (no Content-Range) should yield 202, then PUT with digest 201', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(200 * 1024);
	const post = await client.startUpload(REPO);
	t.is(post.status, 202);
	const session = location(post);

	// A streamed body: chunked transfer encoding, no Content-Length, no Content-Range.
	const parts = [entry.bytes.subarray(0, 70_000), entry.bytes.subarray(70_000, 150_000), entry.bytes.subarray(150_000)];
	const stream = new ReadableStream<Uint8Array>({
		start(controller) {
			for (const part of parts) {
				controller.enqueue(part);
			}

			controller.close();
		},
	});
	const patch = await client.request('PATCH', session, {headers: {'content-type': 'application/octet-stream'}, body: stream});
	t.is(patch.status, 202);
	t.is(patch.headers.get('range'), `0-${entry.size - 1}`);
	const next = location(patch);

	const put = await client.finishUpload(next, entry.digest);
	t.is(put.status, 201);
	const blobUrl = location(put);
	const pulled = await client.get(blobUrl);
	t.is(pulled.status, 200, '<blob-location> is a pullable blob URL');
	t.true(pulled.body.equals(entry.bytes));
	t.deepEqual(await expectBlob(client, REPO, entry), {status: 200, same: true, digestHeader: entry.digest});
});

test('streamed: PATCH with a Content-Length body and no Content-Range appends, and a second streamed PATCH continues it', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(10_000);
	const session = await client.mustStartUpload(REPO);
	const first = await client.patchChunk(session, entry.bytes.subarray(0, 4000), undefined);
	t.is(first.status, 202);
	t.is(first.headers.get('range'), '0-3999');
	const second = await client.patchChunk(location(first), entry.bytes.subarray(4000), undefined);
	t.is(second.status, 202);
	t.is(second.headers.get('range'), `0-${entry.size - 1}`);
	const put = await client.finishUpload(location(second), entry.digest);
	t.is(put.status, 201);
	t.deepEqual(await expectBlob(client, REPO, entry), {status: 200, same: true, digestHeader: entry.digest});
});

// --- Blob Upload Monolithic -----------------------------------------------------------------------

test('monolithic: GET nonexistent blob should result in 404 response', async t => {
	const {client} = await localRegistry(t);
	const reply = await client.get(`/v2/${REPO}/blobs/${unknownDigest()}`);
	t.is(reply.status, 404);
	t.deepEqual(errorCodes(reply), ['BLOB_UNKNOWN']);
});

test('monolithic: POST request with digest and blob (single POST) should yield 201 with a pullable Location', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(3000);
	const reply = await client.request('POST', withQuery(client.url(`/v2/${REPO}/blobs/uploads/`), {digest: entry.digest}), {
		headers: {'content-type': 'application/octet-stream'},
		body: entry.bytes,
	});
	// The registry supports single-request uploads, so: "Successful completion of the request MUST return a 201 Created
	// and MUST include the following header: Location: <blob-location>"
	t.is(reply.status, 201);
	const pulled = await client.get(location(reply));
	t.is(pulled.status, 200);
	t.true(pulled.body.equals(entry.bytes));
	t.deepEqual(await expectBlob(client, REPO, entry), {status: 200, same: true, digestHeader: entry.digest});
});

test('monolithic: POST request should yield a session ID: 202 with a Location holding a UUID, unique per session', async t => {
	const {client} = await localRegistry(t);
	const first = await client.startUpload(REPO);
	const second = await client.startUpload(REPO);
	t.is(first.status, 202);
	t.is(second.status, 202);
	const a = location(first);
	const b = location(second);
	// "The <location> MUST contain a UUID representing a unique session ID for the upload to follow."
	t.regex(a, UUID_PATTERN);
	t.regex(b, UUID_PATTERN);
	t.not(a, b);
});

test('monolithic: PUT upload of a blob to the session should yield 201 with a pullable Location', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(5000);
	const session = await client.mustStartUpload(REPO);
	const reply = await client.finishUpload(session, entry.digest, entry.bytes);
	t.is(reply.status, 201);
	t.is(reply.headers.get('docker-content-digest'), entry.digest);
	const pulled = await client.get(location(reply));
	t.is(pulled.status, 200);
	t.true(pulled.body.equals(entry.bytes));
	t.deepEqual(await expectBlob(client, REPO, entry), {status: 200, same: true, digestHeader: entry.digest});
});

test('monolithic: PUT upload of a layer blob (2 MiB) should yield 201 and GET returns it', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(2 * 1024 * 1024);
	const session = await client.mustStartUpload(REPO);
	const reply = await client.finishUpload(session, entry.digest, entry.bytes);
	t.is(reply.status, 201);
	t.deepEqual(await expectBlob(client, REPO, entry), {status: 200, same: true, digestHeader: entry.digest});
	const head = await client.head(`/v2/${REPO}/blobs/${entry.digest}`);
	t.is(head.headers.get('content-length'), String(entry.size));
});

test('PUT with a digest that does not match the content is 400 DIGEST_INVALID, and nothing is stored', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(2000);
	const wrong = unknownDigest();
	const session = await client.mustStartUpload(REPO);
	const reply = await client.finishUpload(session, wrong, entry.bytes);
	t.is(reply.status, 400);
	t.deepEqual(errorCodes(reply), ['DIGEST_INVALID']);
	t.is((await client.get(`/v2/${REPO}/blobs/${wrong}`)).status, 404);
	t.is((await client.get(`/v2/${REPO}/blobs/${entry.digest}`)).status, 404);
});

test('single POST with a digest that does not match the content is 400 DIGEST_INVALID, and nothing is stored', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(2000);
	const wrong = unknownDigest();
	const reply = await client.request('POST', withQuery(client.url(`/v2/${REPO}/blobs/uploads/`), {digest: wrong}), {
		headers: {'content-type': 'application/octet-stream'},
		body: entry.bytes,
	});
	t.is(reply.status, 400);
	t.deepEqual(errorCodes(reply), ['DIGEST_INVALID']);
	t.is((await client.get(`/v2/${REPO}/blobs/${wrong}`)).status, 404);
	t.is((await client.get(`/v2/${REPO}/blobs/${entry.digest}`)).status, 404);
});

test('zero-length blob: POST then PUT with an empty body, then HEAD and GET it', async t => {
	const {client} = await localRegistry(t);
	const empty = blob(Buffer.alloc(0));
	t.is(empty.digest, EMPTY_BLOB_DIGEST);
	const session = await client.mustStartUpload(REPO);
	const put = await client.finishUpload(session, empty.digest);
	t.is(put.status, 201);
	const head = await client.head(`/v2/${REPO}/blobs/${empty.digest}`);
	t.is(head.status, 200);
	t.is(head.headers.get('content-length'), '0');
	t.is(head.headers.get('docker-content-digest'), empty.digest);
	const get = await client.get(`/v2/${REPO}/blobs/${empty.digest}`);
	t.is(get.status, 200);
	t.is(get.body.length, 0);
});

test('zero-length blob: single POST with an empty body', async t => {
	const {client} = await localRegistry(t);
	const reply = await client.request('POST', withQuery(client.url(`/v2/${CROSS}/blobs/uploads/`), {digest: EMPTY_BLOB_DIGEST}), {
		headers: {'content-type': 'application/octet-stream', 'content-length': '0'},
	});
	t.is(reply.status, 201);
	const get = await client.get(`/v2/${CROSS}/blobs/${EMPTY_BLOB_DIGEST}`);
	t.is(get.status, 200);
	t.is(get.body.length, 0);
});

// --- Blob Upload Chunked ----------------------------------------------------------------------------

test('chunked: out-of-order blob upload should return 416', async t => {
	const {client} = await localRegistry(t);
	const post = await client.startUpload(REPO);
	t.is(post.status, 202);
	const size = chunkSize(post.headers.get('oci-chunk-min-length'), 4096);
	const entry = randomBlob(size * 2);
	// The second chunk first: its range does not start at 0.
	const reply = await client.patchChunk(location(post), entry.bytes.subarray(size), size);
	t.is(reply.status, 416);
});

test('chunked: first chunk 202 with Range, retry 416, GET status 204, second chunk 202, PUT 201', async t => {
	const {client} = await localRegistry(t);
	const post = await client.startUpload(REPO);
	t.is(post.status, 202);
	const size = chunkSize(post.headers.get('oci-chunk-min-length'), 64 * 1024);
	const entry = randomBlob(size * 2 - 7);
	const chunk1 = entry.bytes.subarray(0, size);
	const chunk2 = entry.bytes.subarray(size);
	const firstLocation = location(post);

	// "PATCH request with first chunk should return 202"
	const first = await client.patchChunk(firstLocation, chunk1, 0);
	t.is(first.status, 202);
	t.is(first.headers.get('range'), `0-${size - 1}`);
	t.truthy(first.headers.get('location'));

	// "Retry previous blob chunk should return 416"
	const retry = await client.patchChunk(firstLocation, chunk1, 0);
	t.is(retry.status, 416);

	// "Get on stale blob upload should return 204 with a range and location"
	const status = await client.get(firstLocation);
	t.is(status.status, 204);
	t.is(status.headers.get('range'), `0-${size - 1}`);
	t.truthy(status.headers.get('location'));
	t.regex(status.headers.get('docker-upload-uuid') ?? '', UUID_PATTERN);
	t.is(status.body.length, 0);

	// "PATCH request with second chunk should return 202"
	const second = await client.patchChunk(location(status), chunk2, size);
	t.is(second.status, 202);
	t.is(second.headers.get('range'), `0-${entry.size - 1}`);

	// "PUT request with digest should return 201"
	const put = await client.finishUpload(location(second), entry.digest);
	t.is(put.status, 201);
	t.truthy(put.headers.get('location'));
	t.deepEqual(await expectBlob(client, REPO, entry), {status: 200, same: true, digestHeader: entry.digest});
});

test('chunked: the final chunk may come with the closing PUT', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(30_000);
	const session = await client.mustStartUpload(REPO);
	const first = await client.patchChunk(session, entry.bytes.subarray(0, 20_000), 0);
	t.is(first.status, 202);
	t.is(first.headers.get('range'), '0-19999');
	const last = entry.bytes.subarray(20_000);
	const put = await client.finishUpload(location(first), entry.digest, last, {'content-range': `20000-${entry.size - 1}`});
	t.is(put.status, 201);
	t.deepEqual(await expectBlob(client, REPO, entry), {status: 200, same: true, digestHeader: entry.digest});
});

test('chunked: three chunks, each at the location of the previous response', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(3 * 10_000);
	let session = await client.mustStartUpload(REPO);
	for (let offset = 0; offset < entry.size; offset += 10_000) {
		const reply = await client.patchChunk(session, entry.bytes.subarray(offset, offset + 10_000), offset);
		t.is(reply.status, 202);
		t.is(reply.headers.get('range'), `0-${offset + 10_000 - 1}`);
		session = location(reply);
	}

	const put = await client.finishUpload(session, entry.digest);
	t.is(put.status, 201);
	t.deepEqual(await expectBlob(client, REPO, entry), {status: 200, same: true, digestHeader: entry.digest});
});

test('chunked: a wrong digest at the closing PUT is 400 DIGEST_INVALID', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(8000);
	const session = await client.mustStartUpload(REPO);
	const patch = await client.patchChunk(session, entry.bytes, 0);
	t.is(patch.status, 202);
	const wrong = unknownDigest();
	const put = await client.finishUpload(location(patch), wrong);
	t.is(put.status, 400);
	t.deepEqual(errorCodes(put), ['DIGEST_INVALID']);
	t.is((await client.get(`/v2/${REPO}/blobs/${wrong}`)).status, 404);
	t.is((await client.get(`/v2/${REPO}/blobs/${entry.digest}`)).status, 404);
});

/**
 * Watches the next upload append (PATCH) of `mirror`: `consumed` resolves once
 * the mirror has taken in and written `bytes` bytes of its body, `settled` once
 * it is done with the request (it fails when the client went away).
 */
function watchNextAppend(mirror: Mirror, bytes: number): {consumed: Promise<void>; settled: Promise<unknown>} {
	const uploads = mirror.registry.uploads;
	const append = uploads.append.bind(uploads);
	let markConsumed!: () => void;
	const consumed = new Promise<void>(resolve => {
		markConsumed = resolve;
	});
	let markSettled!: (outcome: Promise<unknown>) => void;
	const settled = new Promise<unknown>(resolve => {
		markSettled = resolve;
	});
	uploads.append = async (repo, id, body, range) => {
		uploads.append = append;
		async function* counted(): AsyncGenerator<Uint8Array> {
			let taken = 0;
			for await (const chunk of body) {
				taken += chunk.length;
				yield chunk;
				// Back here, the mirror has written the chunk and asks for the next one.
				if (taken >= bytes) {
					markConsumed();
				}
			}
		}

		const run = append(repo, id, counted(), range);
		markSettled(run.then(() => 'completed', (error: unknown) => error));
		return run;
	};

	return {consumed, settled};
}

test('resumable push: after a connection drops mid-chunk, GET status tells where to resume (after the bytes that arrived) and the upload completes', async t => {
	const {mirror, client} = await localRegistry(t);
	const entry = randomBlob(256 * 1024);
	const first = 64 * 1024;
	const arrived = 32 * 1024;
	const session = await client.mustStartUpload(REPO);
	const patch = await client.patchChunk(session, entry.bytes.subarray(0, first), 0);
	t.is(patch.status, 202);

	// The next chunk announces 128 KiB, sends 32 KiB, and the connection drops. The timing is held fixed:
	// the drop comes once the mirror has written the 32 KiB, and the client asks where the upload stands
	// once the mirror is done with the dropped request (UploadService keeps what arrived for a resume).
	const watch = watchNextAppend(mirror, arrived);
	await droppedPatch(location(patch), entry.bytes.subarray(first, first + arrived), 128 * 1024, watch.consumed);
	t.true((await watch.settled) instanceof Error, 'the dropped request failed on the mirror');

	const status = await client.get(location(patch));
	t.is(status.status, 204);
	t.is(status.headers.get('range'), `0-${first + arrived - 1}`, 'the session holds the acknowledged chunk and the 32 KiB that arrived');
	const rest = await client.patchChunk(location(status), entry.bytes.subarray(first + arrived), first + arrived);
	t.is(rest.status, 202);
	t.is(rest.headers.get('range'), `0-${entry.size - 1}`);
	const put = await client.finishUpload(location(rest), entry.digest);
	t.is(put.status, 201);
	t.deepEqual(await expectBlob(client, REPO, entry), {status: 200, same: true, digestHeader: entry.digest});
});

// --- sessions ---------------------------------------------------------------------------------------

test('DELETE of an upload session cancels it: then GET, PATCH and PUT on it are 404 BLOB_UPLOAD_UNKNOWN', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(1000);
	const session = await client.mustStartUpload(REPO);
	const patch = await client.patchChunk(session, entry.bytes, 0);
	t.is(patch.status, 202);
	const cancel = await client.request('DELETE', location(patch), {headers: {'content-length': '0'}});
	// "If successful, the response SHOULD be a 204 No Content response code."
	t.is(cancel.status, 204);

	const status = await client.get(session);
	t.is(status.status, 404);
	t.deepEqual(errorCodes(status), ['BLOB_UPLOAD_UNKNOWN']);
	const more = await client.patchChunk(session, entry.bytes, 1000);
	t.is(more.status, 404);
	t.deepEqual(errorCodes(more), ['BLOB_UPLOAD_UNKNOWN']);
	const put = await client.finishUpload(session, entry.digest);
	t.is(put.status, 404);
	t.deepEqual(errorCodes(put), ['BLOB_UPLOAD_UNKNOWN']);
	t.is((await client.get(`/v2/${REPO}/blobs/${entry.digest}`)).status, 404);
});

test('an unknown upload id is 404 BLOB_UPLOAD_UNKNOWN on GET, PATCH, PUT and DELETE', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(100);
	const session = client.url(`/v2/${REPO}/blobs/uploads/0b7e8f9a-1c2d-4e5f-8a9b-0c1d2e3f4a5b`);
	const replies = [
		await client.get(session),
		await client.patchChunk(session, entry.bytes, 0),
		await client.finishUpload(session, entry.digest, entry.bytes),
		await client.request('DELETE', session),
	];
	for (const reply of replies) {
		t.is(reply.status, 404);
		t.deepEqual(errorCodes(reply), ['BLOB_UPLOAD_UNKNOWN']);
	}
});

test('a completed upload session is gone: GET on it is 404 BLOB_UPLOAD_UNKNOWN', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(100);
	const session = await client.mustStartUpload(REPO);
	t.is((await client.finishUpload(session, entry.digest, entry.bytes)).status, 201);
	const status = await client.get(session);
	t.is(status.status, 404);
	t.deepEqual(errorCodes(status), ['BLOB_UPLOAD_UNKNOWN']);
});

// --- Cross-Repository Blob Mount ----------------------------------------------------------------------

test('cross-mount: POST ?mount=&from= of a blob the source holds is 201 with a Location in the target repository', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(4000);
	await client.pushBlob(REPO, entry);
	t.is((await client.get(`/v2/${CROSS}/blobs/${entry.digest}`)).status, 404);

	const reply = await client.request('POST', withQuery(client.url(`/v2/${CROSS}/blobs/uploads/`), {mount: entry.digest, from: REPO}), {
		headers: {'content-length': '0'},
	});
	t.is(reply.status, 201);
	const blobUrl = new URL(location(reply));
	t.is(blobUrl.pathname, `/v2/${CROSS}/blobs/${entry.digest}`);
	t.is(reply.headers.get('docker-content-digest'), entry.digest);
	// "GET request to test digest within cross-mount namespace should return 200"
	const pulled = await client.get(blobUrl.toString());
	t.is(pulled.status, 200);
	t.true(pulled.body.equals(entry.bytes));
});

test('cross-mount: mounting a nonexistent blob falls back to an upload session (202 + Location) that works', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(3000);
	await client.pushBlob(REPO, randomBlob(10)); // the source repository exists, without this blob
	const reply = await client.request('POST', withQuery(client.url(`/v2/${CROSS}/blobs/uploads/`), {mount: entry.digest, from: REPO}), {
		headers: {'content-length': '0'},
	});
	// "if a registry does not support cross-repository mounting or is unable to mount the requested blob, it SHOULD return a 202"
	t.is(reply.status, 202);
	const session = location(reply);
	t.true(new URL(session).pathname.startsWith(`/v2/${CROSS}/blobs/uploads/`), session);
	const put = await client.finishUpload(session, entry.digest, entry.bytes);
	t.is(put.status, 201);
	t.deepEqual(await expectBlob(client, CROSS, entry), {status: 200, same: true, digestHeader: entry.digest});
	t.is((await client.get(`/v2/${REPO}/blobs/${entry.digest}`)).status, 404, 'the source repository did not get it');
});

test('cross-mount: from a repository that does not exist is 202 with an upload session', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(500);
	await client.pushBlob(REPO, entry); // exists in a, but the mount names another source
	const reply = await client.request('POST', withQuery(client.url(`/v2/${CROSS}/blobs/uploads/`), {mount: unknownDigest(), from: 'private/conformance/nothere'}), {
		headers: {'content-length': '0'},
	});
	t.is(reply.status, 202);
	t.true(new URL(location(reply)).pathname.startsWith(`/v2/${CROSS}/blobs/uploads/`));
});

test('cross-mount: a blob without the from argument should yield a session id (202)', async t => {
	const {client} = await localRegistry(t);
	const reply = await client.request('POST', withQuery(client.url(`/v2/${CROSS}/blobs/uploads/`), {mount: unknownDigest()}), {
		headers: {'content-length': '0'},
	});
	t.is(reply.status, 202);
	t.true(new URL(location(reply)).pathname.startsWith(`/v2/${CROSS}/blobs/uploads/`));
});

test('the JSON error body of a 416 for an out-of-order chunk is BLOB_UPLOAD_INVALID, a code from the spec table, with the session\'s Range', async t => {
	const {client} = await localRegistry(t);
	const session = await client.mustStartUpload(REPO);
	const reply = await client.patchChunk(session, randomBlob(10).bytes, 10);
	// UploadService.append: the chunk does not start where the session ends (ChunkRangeError).
	t.is(reply.status, 416);
	t.deepEqual(errorCodes(reply), ['BLOB_UPLOAD_INVALID']);
	t.true(SPEC_ERROR_CODES.includes('BLOB_UPLOAD_INVALID'));
	t.is(reply.headers.get('range'), '0-0');
});

test('uploads to a repository name outside the spec grammar are 400 NAME_INVALID', async t => {
	const {client} = await localRegistry(t);
	// "<name> MUST match the following regular expression: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*"
	for (const name of ['private/Conformance', 'private/conformance/-a', 'private/conformance/a.', 'private//a', 'private/a___b']) {
		const reply = await client.startUpload(name);
		t.is(reply.status, 400, name);
		t.deepEqual(errorCodes(reply), ['NAME_INVALID'], name);
	}
});

test('cross-mount without from of a blob another repository holds: 202 with a session, nothing mounted', async t => {
	const {client} = await localRegistry(t);
	const entry = randomBlob(700);
	await client.pushBlob(REPO, entry);
	const reply = await client.request('POST', withQuery(client.url(`/v2/${CROSS}/blobs/uploads/`), {mount: entry.digest}), {headers: {'content-length': '0'}});
	// "The registry MAY treat the from parameter as optional, and it MAY cross-mount the blob if it can be found."
	// This one does not: without `from`, LocalWriter.mount has no source and startUpload opens a session.
	t.is(reply.status, 202);
	const session = location(reply);
	t.true(new URL(session).pathname.startsWith(`/v2/${CROSS}/blobs/uploads/`), session);
	t.is((await client.get(`/v2/${CROSS}/blobs/${entry.digest}`)).status, 404, 'the 202 mounted nothing');
	t.is((await client.finishUpload(session, entry.digest, entry.bytes)).status, 201);
});
