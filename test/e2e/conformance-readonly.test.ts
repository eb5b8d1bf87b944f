/**
 * Cached (pull-through) namespaces are read-only (issue 4: "a push or delete
 * there gets a clear V2 error (UNSUPPORTED or DENIED), never a 500 and never a
 * write"). In the spec's terms: "If tag deletion is disabled, the registry MUST
 * respond with either a 400 Bad Request or a 405 Method Not Allowed" (likewise
 * manifest and blob deletion). This mirror answers every such write with 405
 * and the spec's code `UNSUPPORTED` ("the operation is unsupported").
 *
 * The upstream is a local HTTP server that counts requests and has nothing:
 * a refused write must neither reach it nor leave a file in the mirror's storage.
 */
import {createServer, type Server} from 'node:http';
import {readdir} from 'node:fs/promises';
import {join, relative} from 'node:path';
import test, {type ExecutionContext} from 'ava';
import {startMirror, type Mirror} from '../helpers/mirror.js';
import {closeServer, listenLocal} from '../helpers/process.js';
import {
	MEDIA,
	OciClient,
	configBlob,
	errorCodes,
	jsonOf,
	location,
	ociManifest,
	randomBlob,
	withQuery,
	type Reply,
} from '../helpers/oci-client.js';

const LOCAL = 'private/conformance/a';

type Upstream = {url: string; requests: string[]};

async function fakeUpstream(t: ExecutionContext): Promise<Upstream> {
	const requests: string[] = [];
	const server: Server = createServer((request, response) => {
		requests.push(`${request.method} ${request.url}`);
		request.resume();
		response.writeHead(404, {'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0'});
		response.end('{"errors":[{"code":"NAME_UNKNOWN","message":"nothing here"}]}');
	});
	const port = await listenLocal(server, 0);
	t.teardown(async () => {
		server.closeAllConnections();
		await closeServer(server);
	});
	return {url: `http://127.0.0.1:${port}`, requests};
}

async function filesUnder(root: string): Promise<string[]> {
	const entries = await readdir(root, {recursive: true, withFileTypes: true});
	return entries
		.filter(entry => entry.isFile())
		.map(entry => relative(root, join((entry as {parentPath?: string}).parentPath ?? (entry as {path: string}).path, entry.name))) // parentPath: Node >= 20.12
		.filter(file => !/^mirror\.db(?:-wal|-shm|-journal)?$/.test(file))
		.sort();
}

async function setup(t: ExecutionContext): Promise<{mirror: Mirror; client: OciClient; upstream: Upstream}> {
	const upstream = await fakeUpstream(t);
	const mirror = await startMirror({
		upstreams: {'docker.io': {url: upstream.url}},
		namespaces: [{prefix: 'private/', local: true}, {prefix: '', upstream: 'docker.io'}],
	});
	t.teardown(async () => mirror.stop());
	return {mirror, client: new OciClient(mirror.url), upstream};
}

/** writableTargetOf refuses every write to a cached namespace, before it looks at anything else: 405 UNSUPPORTED. */
function refused(t: ExecutionContext, reply: Reply, what: string): void {
	t.is(reply.status, 405, `${what}: ${reply.body.toString().slice(0, 200)}`);
	t.deepEqual(errorCodes(reply), ['UNSUPPORTED'], what);
}

/** Every write a client can attempt on `name`, a repository of the cached namespace. */
async function attemptWrites(t: ExecutionContext, client: OciClient, name: string, query = ''): Promise<{blobFiles: string[]; sessionId: string}> {
	// Content that does exist in the local namespace, so nothing fails for want of blobs.
	const config = configBlob(`readonly-${name}`);
	const layer = randomBlob(1000);
	const manifest = ociManifest({config, layers: [layer]});
	await client.pushImage(LOCAL, 'v1', {config, layers: [layer], manifest});
	const localSession = await client.mustStartUpload(LOCAL);
	const sessionId = new URL(localSession).pathname.split('/').pop()!;
	const path = (suffix: string) => client.url(`/v2/${name}/${suffix}${query}`);
	const q = (url: string, params: Record<string, string>) => withQuery(url, params);

	refused(t, await client.request('POST', path('blobs/uploads/'), {headers: {'content-length': '0'}}), `POST ${name} upload`);
	refused(t, await client.request('POST', q(path('blobs/uploads/'), {digest: layer.digest}), {headers: {'content-type': 'application/octet-stream'}, body: layer.bytes}), `POST ${name} ?digest=`);
	refused(t, await client.request('POST', q(path('blobs/uploads/'), {mount: layer.digest, from: LOCAL}), {headers: {'content-length': '0'}}), `POST ${name} ?mount=&from=`);
	const session = path(`blobs/uploads/${sessionId}`);
	refused(t, await client.patchChunk(session, layer.bytes, 0), `PATCH ${name} upload`);
	refused(t, await client.finishUpload(session, layer.digest, layer.bytes), `PUT ${name} upload`);
	refused(t, await client.request('DELETE', session), `DELETE ${name} upload`);
	// Upload sessions exist only in local namespaces: asking one through a cached name is refused like a write.
	refused(t, await client.get(session), `GET ${name} upload status`);

	refused(t, await client.request('PUT', path('manifests/latest'), {headers: {'content-type': MEDIA.ociManifest}, body: manifest.bytes}), `PUT ${name} manifest by tag`);
	refused(t, await client.request('PUT', path(`manifests/${manifest.digest}`), {headers: {'content-type': MEDIA.ociManifest}, body: manifest.bytes}), `PUT ${name} manifest by digest`);
	refused(t, await client.request('DELETE', path('manifests/latest')), `DELETE ${name} tag`);
	refused(t, await client.request('DELETE', path(`manifests/${manifest.digest}`)), `DELETE ${name} manifest`);
	refused(t, await client.request('DELETE', path(`blobs/${layer.digest}`)), `DELETE ${name} blob`);

	// The local session was not touched by any of it.
	const local = await client.get(localSession);
	t.is(local.status, 204);
	t.is(new URL(location(local)).pathname, `/v2/${LOCAL}/blobs/uploads/${sessionId}`);
	// What the local pushes wrote: the two blobs (at `storage.dir/blobs/sha256/xx/<hex>`, the README's layout) and the open session.
	const hex = (digest: string) => digest.slice('sha256:'.length);
	const blobFiles = [config.digest, layer.digest].map(digest => `blobs/sha256/${hex(digest).slice(0, 2)}/${hex(digest)}`);
	return {blobFiles, sessionId};
}

test('writes to a cached repository are refused with 405 UNSUPPORTED, reach no upstream and write nothing', async t => {
	const {mirror, client, upstream} = await setup(t);
	const before = await filesUnder(mirror.dataDir);
	const requestsBefore = upstream.requests.length;
	const {blobFiles, sessionId} = await attemptWrites(t, client, 'library/x');
	t.deepEqual(upstream.requests.slice(requestsBefore), [], 'no write was forwarded to the upstream');

	// Only the local image (config, layer) and the local session were written.
	const after = await filesUnder(mirror.dataDir);
	const added = after.filter(file => !before.includes(file));
	t.deepEqual(added.filter(file => !file.includes(sessionId)), [...blobFiles].sort());
	const catalog = jsonOf<{repositories: string[]}>(await client.get('/v2/_catalog'));
	t.deepEqual(catalog.repositories, [LOCAL]);
});

test('writes to a cached repository named with Docker Hub shorthand, the upstream prefix, or ?ns= are refused', async t => {
	const {client, upstream} = await setup(t);
	await attemptWrites(t, client, 'x'); // library/x on Docker Hub
	await attemptWrites(t, client, 'docker.io/library/x'); // a leading segment naming the upstream
	await attemptWrites(t, client, 'library/x', '?ns=docker.io'); // containerd's mirror routing
	t.deepEqual(upstream.requests, []);
	const catalog = jsonOf<{repositories: string[]}>(await client.get('/v2/_catalog'));
	t.deepEqual(catalog.repositories, [LOCAL]);
});

test('reads of a cached repository still go to the upstream (the namespace is read-only, not disabled)', async t => {
	const {client, upstream} = await setup(t);
	const reply = await client.getManifest('library/x', 'latest');
	t.is(reply.status, 404);
	t.true(upstream.requests.some(entry => entry.includes('/library/x/manifests/latest')), upstream.requests.join('\n'));
});
