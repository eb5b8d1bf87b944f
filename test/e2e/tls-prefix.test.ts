/**
 * TLS served natively (`tls.cert`/`tls.key`, the mirror as a child process as
 * people run it), the API under a path `prefix`, `public_url` for Location
 * headers, and Debian's nginx in front at /registry/.
 *
 * Clients and what each one can do here:
 * - skopeo and containerd verify the mirror's certificate against the test CA
 *   (`--cert-dir DIR` with DIR/ca.crt; hosts.toml `ca = ...`), and refuse it
 *   without.
 * - dockerd always treats 127.0.0.0/8 as an insecure registry (moby's
 *   LoadInsecureRegistries appends it to every config), and for an insecure
 *   registry it skips verification and never reads
 *   /etc/docker/certs.d/HOST:PORT/; the dockerd helper lists the mirror under
 *   insecure-registries too. So on loopback a docker pull proves that docker
 *   pulls through a TLS-only mirror port (there is no plain-HTTP fallback
 *   to reach), not that it checks the CA; nothing is written under /etc/docker.
 *   dockerd 20.10 has no option for another certs dir (only rootless mode
 *   moves it to $XDG_CONFIG_HOME/docker/certs.d).
 * - Docker, skopeo and podman references have no place for a path prefix
 *   (`HOST/registry/team/app` means repository `registry/team/app` at
 *   `/v2/registry/team/app/...`). containerd does: hosts.toml
 *   `override_path = true` with a host URL ending in `/registry/v2`. So the
 *   prefix tests push and pull with the V2 API (fetch, following Location as
 *   a client must) and with `ctr`.
 */
import test, {type ExecutionContext} from 'ava';
import {mkdir, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {type Containerd, hostsToml, imageDigest, startContainerd, writeHostsDir} from '../helpers/containerd.js';
import {startDockerd} from '../helpers/dockerd.js';
import {type Blob, type BuiltImage, buildImage, pushImage, sha256} from '../helpers/images.js';
import {startMirror} from '../helpers/mirror.js';
import {startMirrorChild} from '../helpers/mirror-child.js';
import {startNginx} from '../helpers/nginx.js';
import {freePort, tempDir} from '../helpers/process.js';
import {type ReferenceRegistry, startReferenceRegistry} from '../helpers/reference-registry.js';
import {skopeo, skopeoOk} from '../helpers/skopeo.js';
import {assertCopied} from '../helpers/stack.js';
import {makeTestCa, rawFetch} from '../helpers/tls.js';
import {startTokenServer} from '../helpers/token-server.js';

const manifestAccept = [
	'application/vnd.docker.distribution.manifest.v2+json',
	'application/vnd.oci.image.manifest.v1+json',
].join(', ');

/** A token-auth reference registry as `docker.io`, holding library/app:1. */
async function upstreamWithImage(t: ExecutionContext, layers = 2): Promise<{upstream: ReferenceRegistry; image: BuiltImage}> {
	const tokens = await startTokenServer();
	t.teardown(async () => tokens.stop());
	const upstream = await startReferenceRegistry({tokenServer: tokens});
	t.teardown(async () => upstream.stop());
	const image = await buildImage({layers, layerSize: 512 * 1024, label: 'tls-prefix'});
	await pushImage(upstream.url, 'library/app', '1', image);
	upstream.resetCounts();
	return {upstream, image};
}

function mirrorUpstreams(upstream: ReferenceRegistry): {upstreams: Record<string, Record<string, unknown>>; namespaces: Array<Record<string, unknown>>} {
	return {
		upstreams: {'docker.io': {url: upstream.url}},
		namespaces: [{prefix: 'private/', local: true}, {prefix: '', upstream: 'docker.io'}],
	};
}

test('TLS: skopeo and ctr trust the mirror through the test CA and refuse it without; docker pulls through the https mirror', async t => {
	const {upstream, image} = await upstreamWithImage(t);
	const ca = await makeTestCa();
	const mirror = await startMirrorChild({config: {...mirrorUpstreams(upstream), tls: {cert: ca.certPath, key: ca.keyPath}}, ca: ca.caCert});
	t.teardown(async () => mirror.stop());
	t.true(mirror.url.startsWith('https://'));

	// The API answers over TLS, verified against the CA (a wrong cert would fail the handshake here).
	const ping = await rawFetch(`${mirror.url}/v2/`, {ca: ca.caCert});
	t.is(ping.status, 200);
	t.is(ping.headers['docker-distribution-api-version'], 'registry/2.0');
	// Plain HTTP on the TLS port gets no answer at all: Node's TLS server fails the handshake and drops the connection.
	const plain = await rawFetch(`http://${mirror.host}/v2/`, {timeoutMs: 5000}).then(
		response => `HTTP ${response.status}`,
		(error: unknown) => `error: ${error instanceof Error ? error.message : String(error)}`,
	);
	t.is(plain, 'error: socket hang up', 'plain HTTP on the TLS port');

	const ref = `docker://${mirror.host}/library/app:1`;
	const refused = await skopeo(['inspect', '--raw', ref]);
	t.not(refused.code, 0, 'skopeo without the CA must refuse the certificate');
	t.regex(refused.stderr, /x509|certificate/i);
	t.is(upstream.count({kind: 'manifest'}), 0, 'the refused pull never reached the upstream');

	const raw = await skopeoOk(['inspect', '--raw', '--cert-dir', ca.certDir, ref]);
	t.is(sha256(Buffer.from(raw)), image.digest);
	const dir = await tempDir('tls-copy-');
	await skopeoOk(['copy', '--src-cert-dir', ca.certDir, ref, `dir:${dir}`]);
	await assertCopied(t, dir, image);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 3, 'config + 2 layers, once each');

	// containerd: hosts.toml with `ca` (and without it, the same pull fails on the certificate).
	const containerd = await startContainerd();
	t.teardown(async () => containerd.stop());
	const untrusted = await writeHostsDir({'docker.io': {server: 'https://registry-1.docker.io', hosts: [{url: mirror.url}]}});
	const refusedPull = await containerd.ctr(['images', 'pull', '--hosts-dir', untrusted, 'docker.io/library/app:1'], 60_000);
	t.not(refusedPull.code, 0, 'ctr without the CA must fail');
	t.regex(refusedPull.stderr, /x509|certificate/i);
	const trusted = await writeHostsDir({'docker.io': {server: 'https://registry-1.docker.io', hosts: [{url: mirror.url, ca: ca.caCertPath}]}});
	const pulled = await containerd.ctr(['images', 'pull', '--hosts-dir', trusted, 'docker.io/library/app:1']);
	t.is(pulled.code, 0, `${pulled.stdout}\n${pulled.stderr}`);
	t.is(await imageDigest(containerd, 'docker.io/library/app:1'), image.digest);
	await containerd.stop();

	// Docker through `registry-mirrors: ["https://127.0.0.1:PORT"]` (see the header comment on verification).
	const dockerd = await startDockerd({mirrorUrl: mirror.url});
	t.teardown(async () => dockerd.stop());
	const dockerPull = await dockerd.docker(['pull', 'app:1'], 180_000);
	t.is(dockerPull.code, 0, dockerPull.stderr);
	const inspected = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', 'app:1']);
	t.is(inspected.stdout.trim(), image.config.digest);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 3, 'ctr and docker were served from the cache');
	t.regex(mirror.log(), /"path":"\/v2\/library\/app\/manifests\/1"/, 'the mirror logged the pulls');
});

// --- the V2 push protocol, as a client does it (no helper that assumes /v2/ at the root) -----------------

type Exchange = {status: number; headers: Headers; body: Buffer};

async function send(method: string, url: string, init: {body?: Buffer; headers?: Record<string, string>} = {}): Promise<Exchange> {
	const response = await fetch(url, {
		method,
		headers: init.headers,
		body: init.body === undefined ? undefined : new Uint8Array(init.body),
		redirect: 'manual',
	});
	return {status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer())};
}

/** Resolves a Location header against the URL it answered, as clients do (absolute or path-only). */
function follow(location: string | null, base: string): string {
	if (location === null) {
		throw new Error(`no Location header (request to ${base})`);
	}

	return new URL(location, base).href;
}

/**
 * Pushes `image` to `apiBase/NAME` (apiBase like http://host/registry/v2) with a
 * chunked upload for each blob (two PATCHes then the closing PUT), following
 * every Location; returns every Location header seen, for the caller to check.
 */
async function pushChunked(t: ExecutionContext, apiBase: string, name: string, tag: string, image: BuiltImage): Promise<string[]> {
	const locations: string[] = [];
	const pushBlob = async (blob: Blob): Promise<void> => {
		const started = await send('POST', `${apiBase}/${name}/blobs/uploads/`);
		t.is(started.status, 202, `POST upload: ${started.body.toString('utf8')}`);
		locations.push(started.headers.get('location') ?? '');
		let url = follow(started.headers.get('location'), `${apiBase}/${name}/blobs/uploads/`);
		const half = Math.ceil(blob.bytes.length / 2);
		let offset = 0;
		for (const chunk of [blob.bytes.subarray(0, half), blob.bytes.subarray(half)]) {
			const patched = await send('PATCH', url, {
				body: chunk,
				headers: {'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + chunk.length - 1}`},
			});
			t.is(patched.status, 202, `PATCH: ${patched.body.toString('utf8')}`);
			t.is(patched.headers.get('range'), `0-${offset + chunk.length - 1}`);
			locations.push(patched.headers.get('location') ?? '');
			url = follow(patched.headers.get('location'), url);
			offset += chunk.length;
		}

		const closing = new URL(url);
		closing.searchParams.set('digest', blob.digest);
		const put = await send('PUT', closing.href);
		t.is(put.status, 201, `PUT upload: ${put.body.toString('utf8')}`);
		t.is(put.headers.get('docker-content-digest'), blob.digest);
		locations.push(put.headers.get('location') ?? '');
	};

	for (const blob of [image.config, ...image.layers]) {
		await pushBlob(blob);
	}

	const manifest = await send('PUT', `${apiBase}/${name}/manifests/${tag}`, {body: image.manifest, headers: {'content-type': image.mediaType}});
	t.is(manifest.status, 201, `PUT manifest: ${manifest.body.toString('utf8')}`);
	t.is(manifest.headers.get('docker-content-digest'), image.digest);
	locations.push(manifest.headers.get('location') ?? '');
	return locations;
}

/** GETs the manifest and every blob of `image` from `apiBase/NAME`, checking bytes. */
async function pullBack(t: ExecutionContext, apiBase: string, name: string, reference: string, image: BuiltImage): Promise<void> {
	const manifest = await send('GET', `${apiBase}/${name}/manifests/${reference}`, {headers: {accept: manifestAccept}});
	t.is(manifest.status, 200, `GET ${name}:${reference}: ${manifest.body.toString('utf8').slice(0, 300)}`);
	t.is(sha256(manifest.body), image.digest, `${name}:${reference}: manifest bytes`);
	for (const blob of [image.config, ...image.layers]) {
		const got = await send('GET', `${apiBase}/${name}/blobs/${blob.digest}`);
		t.is(got.status, 200);
		t.is(sha256(got.body), blob.digest, `${name}: blob ${blob.digest}`);
	}
}

test('prefix /registry: the whole API (pull through and push to a local namespace) lives under /registry/v2, and Location headers carry the prefix', async t => {
	const {upstream, image} = await upstreamWithImage(t);
	const mirror = await startMirror({...mirrorUpstreams(upstream), extra: {prefix: '/registry'}});
	t.teardown(async () => mirror.stop());
	const api = `${mirror.url}/registry/v2`;

	const ping = await send('GET', `${api}/`);
	t.is(ping.status, 200);
	t.is(ping.headers.get('docker-distribution-api-version'), 'registry/2.0');
	const outside = await send('GET', `${mirror.url}/v2/library/app/manifests/1`);
	t.is(outside.status, 404, 'nothing is served at /v2/ outside the prefix');
	t.is(upstream.count({kind: 'manifest'}), 0);

	await pullBack(t, api, 'library/app', '1', image);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 3, 'pulled through from the upstream under the prefix');

	const pushed = await buildImage({layers: 2, layerSize: 300 * 1024, label: 'pushed-under-prefix'});
	const locations = await pushChunked(t, api, 'private/app', '1', pushed);
	for (const location of locations) {
		t.true(location.startsWith('/registry/v2/private/app/'), `Location carries the prefix: ${location}`);
	}

	t.true(locations.includes(`/registry/v2/private/app/manifests/${pushed.digest}`));
	await pullBack(t, api, 'private/app', '1', pushed);
	await pullBack(t, api, 'private/app', pushed.digest, pushed);
	const tags = await send('GET', `${api}/private/app/tags/list`);
	t.deepEqual(JSON.parse(tags.body.toString('utf8')), {name: 'private/app', tags: ['1']});
});

test('nginx at /registry/ in front of the mirror (prefix /registry, public_url = nginx): push and pull through it with the V2 API and ctr', async t => {
	const {upstream, image} = await upstreamWithImage(t);
	const nginxPort = await freePort();
	const publicUrl = `http://127.0.0.1:${nginxPort}`;
	const mirror = await startMirror({...mirrorUpstreams(upstream), extra: {prefix: '/registry', public_url: publicUrl}});
	t.teardown(async () => mirror.stop());
	const nginx = await startNginx({backend: mirror.url, location: '/registry', port: nginxPort});
	t.teardown(async () => nginx.stop());
	const api = `${nginx.url}/registry/v2`;

	// Push through nginx: a chunked upload with a multi-megabyte layer (no body limit, streamed both ways).
	const pushed = await buildImage({layers: 2, layerSize: 3 * 1024 * 1024, label: 'through-nginx'});
	const locations = await pushChunked(t, api, 'private/app', '1', pushed);
	for (const location of locations) {
		t.true(location.startsWith(`${publicUrl}/registry/v2/private/app/`), `Location is built from public_url and the prefix: ${location}`);
	}

	await pullBack(t, api, 'private/app', '1', pushed);
	const direct = await send('GET', `${mirror.url}/registry/v2/private/app/manifests/1`, {headers: {accept: manifestAccept}});
	t.is(sha256(direct.body), pushed.digest, 'the same content straight from the mirror');

	// Pull-through content through nginx too.
	await pullBack(t, api, 'library/app', '1', image);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 3);
	t.regex(await nginx.accessLog(), /PATCH \/registry\/v2\/private\/app\/blobs\/uploads\//, 'the upload went through nginx');

	// containerd through nginx: override_path lets a host URL carry the /registry/v2 prefix.
	const containerd: Containerd = await startContainerd();
	t.teardown(async () => containerd.stop());
	const hostsDir = await writeHostsDir({
		// Docker Hub images through the mirror behind nginx (containerd adds ?ns=docker.io).
		'docker.io': {server: 'https://registry-1.docker.io', hosts: [{url: `${api}`, overridePath: true}]},
	});
	// The mirror's own local namespaces, by its public name.
	await mkdir(join(hostsDir, nginx.url.slice('http://'.length)));
	await writeFile(join(hostsDir, nginx.url.slice('http://'.length), 'hosts.toml'), hostsToml(publicUrl, [{url: api, overridePath: true, capabilities: ['pull', 'resolve', 'push']}]));

	const hubPull = await containerd.ctr(['images', 'pull', '--hosts-dir', hostsDir, 'docker.io/library/app:1']);
	t.is(hubPull.code, 0, `${hubPull.stdout}\n${hubPull.stderr}`);
	t.is(await imageDigest(containerd, 'docker.io/library/app:1'), image.digest);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 3, 'served from the cache');

	const localRef = `127.0.0.1:${nginxPort}/private/app:1`;
	const localPull = await containerd.ctr(['images', 'pull', '--hosts-dir', hostsDir, localRef]);
	t.is(localPull.code, 0, `${localPull.stdout}\n${localPull.stderr}`);
	t.is(await imageDigest(containerd, localRef), pushed.digest);

	// And a real client's push through nginx: ctr pushes the docker.io image to a local namespace.
	const pushRef = `127.0.0.1:${nginxPort}/private/copied:2`;
	t.is((await containerd.ctr(['images', 'tag', 'docker.io/library/app:1', pushRef])).code, 0);
	const ctrPush = await containerd.ctr(['images', 'push', '--hosts-dir', hostsDir, pushRef]);
	t.is(ctrPush.code, 0, `${ctrPush.stdout}\n${ctrPush.stderr}`);
	await pullBack(t, api, 'private/copied', '2', image);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 3, 'the push and pull-back of a local copy touch no upstream blob');
	const accessLog = await nginx.accessLog();
	t.regex(accessLog, /"GET \/registry\/v2\/library\/app\/blobs\/sha256:[0-9a-f]{64}\?ns=docker\.io HTTP\/1\.1" 200 .*containerd/, 'containerd pulled through nginx, with ?ns=');
	t.regex(accessLog, /"PUT \/registry\/v2\/private\/copied\/manifests\/2 HTTP\/1\.1" 201 .*containerd/, 'containerd pushed through nginx');
});
