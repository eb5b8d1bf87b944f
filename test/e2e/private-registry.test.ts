import test from 'ava';
import {writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import bcrypt from 'bcryptjs';
import {startDockerd} from '../helpers/dockerd.js';
import {buildImage, pushImage, sha256} from '../helpers/images.js';
import {run, tempDir} from '../helpers/process.js';
import {skopeoOk, skopeo} from '../helpers/skopeo.js';
import {assertCopied, startStack} from '../helpers/stack.js';
import {stopSharedStoreServers} from '../helpers/mirror.js';

// Run again on S3 + PostgreSQL with MIRROR_TEST_STORES=s3+postgres (see helpers/mirror.ts).
test.after.always(stopSharedStoreServers);

async function htpasswdFile(users: Record<string, string>): Promise<string> {
	const dir = await tempDir('auth-');
	const file = join(dir, 'htpasswd');
	await writeFile(file, Object.entries(users).map(([user, password]) => `${user}:${bcrypt.hashSync(password, 4)}`).join('\n') + '\n');
	return file;
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

test('docker login, push to a local namespace, rmi, pull back; skopeo copies in with --dest-creds and out again', async t => {
	const htpasswd = await htpasswdFile({alice: 'wonderland'});
	const {upstream, mirror} = await startStack(t, {mirror: {extra: {auth: {htpasswd, anonymous_pull: true}}}});
	const image = await buildImage({layers: 2, layerSize: 512 * 1024, label: 'private'});
	await pushImage(upstream.url, 'library/base', '1', image);
	const dockerd = await startDockerd({mirrorUrl: mirror.url});
	t.teardown(async () => dockerd.stop());

	// An image to push: pulled (anonymously) through the mirror.
	const pulled = await dockerd.docker(['pull', 'base:1'], 120_000);
	t.is(pulled.code, 0, pulled.stderr);
	const privateRef = `${mirror.host}/private/team/app:1`;
	t.is((await dockerd.docker(['tag', 'base:1', privateRef])).code, 0);

	const denied = await dockerd.docker(['push', privateRef], 120_000);
	t.not(denied.code, 0, 'push without login is refused');
	t.regex(denied.stderr + denied.stdout, /unauthorized|authentication required|no basic auth/i);

	const wrongLogin = await dockerd.docker(['login', mirror.host, '-u', 'alice', '-p', 'nope']);
	t.not(wrongLogin.code, 0, 'a wrong password does not log in');
	const login = await dockerd.docker(['login', mirror.host, '-u', 'alice', '-p', 'wonderland']);
	t.is(login.code, 0, login.stderr);
	const pushed = await dockerd.docker(['push', privateRef], 120_000);
	t.is(pushed.code, 0, pushed.stderr);

	t.is((await dockerd.docker(['rmi', privateRef, 'base:1'])).code, 0);
	upstream.resetCounts();
	const back = await dockerd.docker(['pull', privateRef], 120_000);
	t.is(back.code, 0, back.stderr);
	t.is(upstream.requests.length, 0, 'a local namespace is never looked up upstream');
	const id = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', privateRef]);
	t.is(id.stdout.trim(), image.config.digest);

	const catalog = await fetch(`${mirror.url}/v2/_catalog`, {headers: {authorization: basic('alice', 'wonderland')}});
	t.is(catalog.status, 200);
	t.true(((await catalog.json()) as {repositories: string[]}).repositories.includes('private/team/app'));

	// skopeo: into a local namespace with credentials, and back out; digests compared.
	const second = await buildImage({layers: 2, format: 'oci'});
	await pushImage(upstream.url, 'library/other', '2', second);
	await skopeoOk([
		'copy', '--src-tls-verify=false', '--dest-tls-verify=false', '--dest-creds', 'alice:wonderland', '--preserve-digests',
		`docker://${mirror.host}/other:2`, `docker://${mirror.host}/private/copied:2`,
	]);
	const dir = await tempDir('copy-');
	await skopeoOk(['copy', '--src-tls-verify=false', `docker://${mirror.host}/private/copied:2`, `dir:${dir}`]);
	await assertCopied(t, dir, second);
	const inspect = JSON.parse(await skopeoOk(['inspect', '--tls-verify=false', `docker://${mirror.host}/private/copied:2`])) as {Digest: string};
	t.is(inspect.Digest, second.digest);
	const noCreds = await skopeo(['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${mirror.host}/other:2`, `docker://${mirror.host}/private/nocreds:2`]);
	t.not(noCreds.code, 0, 'skopeo without --dest-creds cannot push');
});

test('auth: right, wrong and missing credentials for pulls and pushes, on local and cached namespaces', async t => {
	const htpasswd = await htpasswdFile({bob: 'builder'});
	const {upstream, mirror} = await startStack(t, {mirror: {extra: {auth: {htpasswd, anonymous_pull: false}}}});
	const image = await buildImage();
	await pushImage(upstream.url, 'library/cachedimg', '1', image);
	const good = {authorization: basic('bob', 'builder')};
	const wrong = {authorization: basic('bob', 'nope')};
	const garbage = {authorization: 'Basic !!!'};

	const ping = await fetch(`${mirror.url}/v2/`);
	t.is(ping.status, 401);
	t.is(ping.headers.get('www-authenticate'), `Bearer realm="${mirror.url}/auth/token",service="registry-mirror"`);
	t.is(((await ping.json()) as {errors: Array<{code: string}>}).errors[0]?.code, 'UNAUTHORIZED');
	t.is((await fetch(`${mirror.url}/v2/`, {headers: good})).status, 200);
	t.is((await fetch(`${mirror.url}/v2/`, {headers: wrong})).status, 401);
	t.is((await fetch(`${mirror.url}/v2/`, {headers: garbage})).status, 401);

	// The token endpoint: a token for a valid login, 401 for a wrong one or (without anonymous_pull) none.
	t.is((await fetch(`${mirror.url}/auth/token?service=registry-mirror`)).status, 401);
	t.is((await fetch(`${mirror.url}/auth/token?service=registry-mirror`, {headers: wrong})).status, 401);
	const issued = await fetch(`${mirror.url}/auth/token?service=registry-mirror&scope=repository:private/auth:pull,push`, {headers: good});
	t.is(issued.status, 200);
	const {token} = (await issued.json()) as {token: string};
	t.is((await fetch(`${mirror.url}/v2/`, {headers: {authorization: `Bearer ${token}`}})).status, 200);
	t.is((await fetch(`${mirror.url}/v2/`, {headers: {authorization: `Bearer ${token}x`}})).status, 401);

	// Cached namespace: pulls need a login (anonymous_pull is off); pushes are refused even with one.
	const cachedUrl = `${mirror.url}/v2/library/cachedimg/manifests/1`;
	t.is((await fetch(cachedUrl)).status, 401);
	t.is((await fetch(cachedUrl, {headers: wrong})).status, 401);
	const cached = await fetch(cachedUrl, {headers: good});
	t.is(cached.status, 200);
	t.is(sha256(Buffer.from(await cached.arrayBuffer())), image.digest);
	t.is((await fetch(`${mirror.url}/v2/library/cachedimg/blobs/uploads/`, {method: 'POST'})).status, 401);
	const cachedPush = await fetch(`${mirror.url}/v2/library/cachedimg/blobs/uploads/`, {method: 'POST', headers: good});
	t.is(cachedPush.status, 405);
	t.is(((await cachedPush.json()) as {errors: Array<{code: string}>}).errors[0]?.code, 'UNSUPPORTED');

	// Local namespace: push and pull with the right user only.
	const blob = Buffer.from('hello private world');
	const digest = sha256(blob);
	const upload = (headers: Record<string, string>) =>
		fetch(`${mirror.url}/v2/private/auth/blobs/uploads/?digest=${digest}`, {method: 'POST', headers: {...headers, 'content-type': 'application/octet-stream'}, body: blob});
	t.is((await upload({})).status, 401);
	t.is((await upload(wrong)).status, 401);
	t.is((await fetch(`${mirror.url}/v2/private/auth/blobs/${digest}`, {headers: good})).status, 404, 'nothing was written by the refused pushes');
	t.is((await upload(good)).status, 201);
	t.is((await fetch(`${mirror.url}/v2/private/auth/blobs/${digest}`)).status, 401);
	t.is((await fetch(`${mirror.url}/v2/private/auth/blobs/${digest}`, {headers: wrong})).status, 401);
	const got = await fetch(`${mirror.url}/v2/private/auth/blobs/${digest}`, {headers: good});
	t.deepEqual(Buffer.from(await got.arrayBuffer()), blob);
});

test('with anonymous_pull, anyone pulls but a wrong password is still refused, and pushes need a login', async t => {
	const htpasswd = await htpasswdFile({carol: 'c'});
	const {mirror} = await startStack(t, {mirror: {extra: {auth: {htpasswd, anonymous_pull: true}}}});
	const blob = Buffer.from('anonymous pulls');
	const digest = sha256(blob);
	t.is((await fetch(`${mirror.url}/v2/private/anon/blobs/uploads/?digest=${digest}`, {method: 'POST', body: blob})).status, 401);
	t.is((await fetch(`${mirror.url}/v2/private/anon/blobs/uploads/?digest=${digest}`, {method: 'POST', body: blob, headers: {authorization: basic('carol', 'c')}})).status, 201);
	const anonymous = await fetch(`${mirror.url}/v2/private/anon/blobs/${digest}`);
	t.deepEqual(Buffer.from(await anonymous.arrayBuffer()), blob);
	t.is((await fetch(`${mirror.url}/v2/private/anon/blobs/${digest}`, {headers: {authorization: basic('carol', 'x')}})).status, 401);
});

test('a bad htpasswd file fails at start-up with one line naming the key', async t => {
	const dir = await tempDir('badauth-');
	const file = join(dir, 'htpasswd');
	await writeFile(file, 'dave:plaintext\n');
	const config = join(dir, 'mirror.yml');
	await writeFile(config, `listen: 127.0.0.1:0\nstorage: {dir: ${join(dir, 'data')}}\nauth: {htpasswd: ${file}}\n`);
	const result = await run(process.execPath, ['--import', 'tsx', 'src/main.ts', '--config', config], {timeoutMs: 30_000});
	t.is(result.code, 1);
	t.is(result.stderr.trim(), 'config: auth.htpasswd: line 1: not a bcrypt entry (create one with htpasswd -Bbn USER PASSWORD)');
});
