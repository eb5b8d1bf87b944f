import test, {type ExecutionContext} from 'ava';
import {readdir, readFile} from 'node:fs/promises';
import {join} from 'node:path';
import {startDockerd} from '../helpers/dockerd.js';
import {buildImage, buildIndex, parseChallenge, pushImage, pushIndex, sha256} from '../helpers/images.js';
import {tempDir} from '../helpers/process.js';
import {type ReferenceRegistry, startReferenceRegistry} from '../helpers/reference-registry.js';
import {skopeoOk} from '../helpers/skopeo.js';
import {startTokenServer, type TokenServer} from '../helpers/token-server.js';

const users = {alice: 'secret'};
const alice = {username: 'alice', password: 'secret'};

async function stack(t: ExecutionContext): Promise<{tokens: TokenServer; registry: ReferenceRegistry; host: string}> {
	const tokens = await startTokenServer({users});
	t.teardown(async () => tokens.stop());
	const registry = await startReferenceRegistry({tokenServer: tokens});
	t.teardown(async () => registry.stop());
	return {tokens, registry, host: new URL(registry.url).host};
}

async function connectionError(url: string): Promise<string> {
	try {
		const response = await fetch(url);
		return `answered ${response.status}`;
	} catch (error) {
		const cause = error instanceof Error ? error.cause : undefined;
		return cause instanceof Error && 'code' in cause ? String(cause.code) : String(error);
	}
}

test('anonymous /v2/ gets a Bearer challenge; the token server grants pull to anonymous, 401 on a bad password', async (t) => {
	const {tokens, registry} = await stack(t);
	const response = await fetch(`${registry.url}/v2/`);
	t.is(response.status, 401);
	const challenge = parseChallenge(response.headers.get('www-authenticate') ?? '');
	t.is(challenge.scheme, 'bearer');
	t.is(challenge.params['realm'], tokens.realm);
	t.is(challenge.params['service'], tokens.service);
	t.like(registry.requests.at(-1), {method: 'GET', path: '/v2/', status: 401, authorized: false}); // and the bytes of its body
	t.is(registry.count({kind: 'ping'}), 1);

	const anonymous = await fetch(`${tokens.realm}?service=${tokens.service}&scope=repository:lib/x:pull,push`);
	const body = (await anonymous.json()) as {token: string; access_token: string; expires_in: number; issued_at: string};
	t.is(body.token, body.access_token);
	const [, claims] = body.token.split('.');
	t.deepEqual((JSON.parse(Buffer.from(claims ?? '', 'base64url').toString('utf8')) as {access: unknown}).access, [{type: 'repository', name: 'lib/x', actions: ['pull']}]);
	t.deepEqual(tokens.requests.at(-1), {scope: 'repository:lib/x:pull,push', account: null});

	const bad = await fetch(`${tokens.realm}?service=${tokens.service}`, {headers: {authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}`}});
	t.is(bad.status, 401);

	// The registry accepts a token for its /v2/ check.
	const ok = await fetch(`${registry.url}/v2/`, {headers: {authorization: `Bearer ${body.token}`}});
	t.is(ok.status, 200);
	t.like(registry.requests.at(-1), {method: 'GET', path: '/v2/', status: 200, authorized: true});
});

test('push a docker image; skopeo reads back the exact manifest and layers; the proxy counts', async (t) => {
	const {registry, host} = await stack(t);
	const image = await buildImage({layers: 2, label: 'harness'});
	await pushImage(registry.url, 'library/app', 'v1', image, alice);
	t.true(registry.count({method: 'PUT', kind: 'manifest'}) >= 2);

	const raw = await skopeoOk(['inspect', '--raw', '--tls-verify=false', `docker://${host}/library/app:v1`]);
	t.is(raw, image.manifest.toString('utf8'));

	registry.resetCounts();
	const dir = await tempDir('skopeo-copy-');
	await skopeoOk(['copy', '--tls-verify=false', `docker://${host}/library/app:v1`, `dir:${dir}`]);
	t.true(registry.count({method: 'GET', kind: 'blob'}) > 0);
	t.is(registry.count({method: 'GET', kind: 'blob', pathIncludes: image.layers[0]?.digest ?? '?'}), 1);
	const files = new Set(await readdir(dir));
	for (const blob of [image.config, ...image.layers]) {
		const hex = blob.digest.slice('sha256:'.length);
		t.true(files.has(hex), `missing ${hex}`);
		t.is(sha256(await readFile(join(dir, hex))), blob.digest);
	}

	// A push by skopeo (chunked PATCH uploads) streams through the counting proxy untouched.
	await skopeoOk(['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:secret', `dir:${dir}`, `docker://${host}/library/copy:v1`]);
	t.true(registry.count({method: 'PATCH', pathIncludes: '/library/copy/blobs/uploads/'}) > 0);
	t.is(await skopeoOk(['inspect', '--raw', '--tls-verify=false', `docker://${host}/library/copy:v1`]), raw);
});

test('push a two-platform OCI index; skopeo reads back the exact index', async (t) => {
	const {registry, host} = await stack(t);
	const images = await Promise.all([buildImage({arch: 'amd64', format: 'oci'}), buildImage({arch: 'arm64', format: 'oci'})]);
	const index = buildIndex(images, 'oci');
	await pushIndex(registry.url, 'multi/arch', 'latest', index, alice);

	const raw = await skopeoOk(['inspect', '--raw', '--tls-verify=false', `docker://${host}/multi/arch:latest`]);
	t.is(raw, index.manifest.toString('utf8'));
	const arm = await skopeoOk(['inspect', '--raw', '--tls-verify=false', `docker://${host}/multi/arch@${images[1]?.digest ?? ''}`]);
	t.is(arm, images[1]?.manifest.toString('utf8'));
	const config = JSON.parse(
		await skopeoOk(['inspect', '--config', '--tls-verify=false', '--override-arch', 'arm64', `docker://${host}/multi/arch:latest`]),
	) as {architecture: string};
	t.is(config.architecture, 'arm64');
});

test('stop() refuses connections, start() brings back the same data on the same port', async (t) => {
	const {registry, host} = await stack(t);
	const image = await buildImage();
	await pushImage(registry.url, 'keep/me', 'v1', image, alice);

	await registry.stop();
	t.is(await connectionError(`${registry.url}/v2/`), 'ECONNREFUSED');
	t.is(await connectionError(`${registry.directUrl}/v2/`), 'ECONNREFUSED');

	await registry.start();
	const raw = await skopeoOk(['inspect', '--raw', '--tls-verify=false', `docker://${host}/keep/me:v1`]);
	t.is(raw, image.manifest.toString('utf8'));
});

test('an isolated dockerd starts and answers; it can pull a harness image', async (t) => {
	const {registry, host} = await stack(t);
	const image = await buildImage({layers: 2});
	await pushImage(registry.url, 'pull/me', 'v1', image, alice);

	const dockerd = await startDockerd({mirrorUrl: registry.url});
	t.teardown(async () => dockerd.stop());
	const version = await dockerd.docker(['version', '--format', '{{.Server.Version}}']);
	t.is(version.code, 0, version.stderr);
	t.regex(version.stdout, /^\d+\.\d+/);

	// 127.0.0.0/8 is insecure by default: dockerd pulls over plain HTTP, with an anonymous pull token.
	const pull = await dockerd.docker(['pull', `${host}/pull/me:v1`]);
	t.is(pull.code, 0, `${pull.stdout}\n${pull.stderr}`);
	const inspect = await dockerd.docker(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', `${host}/pull/me:v1`]);
	const config = JSON.parse(image.config.bytes.toString('utf8')) as {rootfs: {diff_ids: string[]}};
	t.deepEqual(JSON.parse(inspect.stdout), config.rootfs.diff_ids);
});
