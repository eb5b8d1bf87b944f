import test from 'ava';
import Database from 'better-sqlite3';
import bcrypt from 'bcryptjs';
import {cp, mkdir, rm, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {buildImage, buildIndex, pushImage, pushIndex} from '../helpers/images.js';
import {openBrowser, visibleText} from '../helpers/chromium.js';
import {run, tempDir} from '../helpers/process.js';
import {skopeoOk} from '../helpers/skopeo.js';
import {startStack} from '../helpers/stack.js';

/** Screenshots for people (gitignored); DASHBOARD_SCREENS=DIR copies them elsewhere too. */
const SCREENS = join(process.cwd(), 'test-output', 'dashboard');

/** Seeds `count` cached repositories of docker.io straight into the SQLite store, in one transaction. */
function seedRepositories(dataDir: string, count: number): void {
	const db = new Database(join(dataDir, 'mirror.db'));
	const now = Date.now();
	const repo = db.prepare('INSERT INTO repositories (registry, name, created_at) VALUES (?, ?, ?)');
	const manifest = db.prepare('INSERT INTO manifests (digest, media_type, size, content, pushed, created_at, last_access) VALUES (?, ?, ?, ?, 0, ?, ?)');
	const linkManifest = db.prepare('INSERT INTO repository_manifests (repository_id, digest) VALUES (?, ?)');
	const blob = db.prepare('INSERT INTO blobs (digest, size, pushed, created_at, last_access) VALUES (?, ?, 0, ?, ?)');
	const linkBlob = db.prepare('INSERT INTO repository_blobs (repository_id, digest) VALUES (?, ?)');
	const tag = db.prepare('INSERT INTO tags (repository_id, tag, digest, fetched_at, checked_at) VALUES (?, ?, ?, ?, ?)');
	db.transaction(() => {
		for (let index = 0; index < count; index++) {
			const id = Number(repo.run('docker.io', `seed/app-${String(index).padStart(4, '0')}`, now).lastInsertRowid);
			const hex = index.toString(16).padStart(64, '0');
			const content = Buffer.from(`{"schemaVersion":2,"seed":${index}}`);
			manifest.run(`sha256:${hex}`, 'application/vnd.oci.image.manifest.v1+json', content.length, content, now, now - index * 1000);
			linkManifest.run(id, `sha256:${hex}`);
			blob.run(`sha256:f${hex.slice(1)}`, ((index % 1000) + 1) * 1024 * 1024, now, now);
			linkBlob.run(id, `sha256:f${hex.slice(1)}`);
			tag.run(id, 'latest', `sha256:${hex}`, now, now);
		}
	})();
	db.close();
}

test('the dashboard in headless Chromium: 2,000 repositories listed, searched and paged; an image with its platforms and layers; a purge from the page refetches, a pushed repository is left alone', async t => {
	const {upstream, mirror} = await startStack(t);
	const amd64 = await buildImage({arch: 'amd64', layers: 2, layerSize: 300 * 1024});
	const arm64 = await buildImage({arch: 'arm64', layers: 2, layerSize: 200 * 1024});
	const index = buildIndex([amd64, arm64], 'oci');
	await pushIndex(upstream.url, 'library/tool', '2', index);
	await pushImage(upstream.url, 'library/other', '1', amd64); // shares amd64's layers
	const out = await tempDir('dashboard-pull-');
	// The charts plot samples taken every 10 s; here one is taken after each step so they have points to draw.
	const {history} = mirror.registry;
	await history.sample();
	await skopeoOk(['copy', '--all', '--src-tls-verify=false', `docker://${mirror.host}/tool:2`, `oci:${join(out, 'tool')}`]);
	await history.sample();
	await skopeoOk(['copy', '--src-tls-verify=false', `docker://${mirror.host}/other:1`, `oci:${join(out, 'other')}`]);
	await history.sample();
	await skopeoOk(['copy', '--all', '--src-tls-verify=false', `docker://${mirror.host}/tool:2`, `oci:${join(out, 'tool-again')}`]);
	await history.sample();
	await pushImage(mirror.url, 'private/kept', '1', await buildImage());
	seedRepositories(mirror.dataDir, 2000);

	await rm(SCREENS, {recursive: true, force: true});
	await mkdir(SCREENS, {recursive: true});
	const browser = await openBrowser();
	t.teardown(async () => browser.close());
	const shot = async (name: string) => browser.screenshot(join(SCREENS, `${name}.png`));
	const text = async () => visibleText(await browser.html());

	// The overview: counters and the three charts.
	t.is(await browser.goto(`${mirror.url}/`), 200);
	const overview = await browser.html();
	for (const id of ['chart-hit-ratio', 'chart-bytes', 'chart-errors']) {
		t.regex(overview, new RegExp(`<figure class="chart" id="${id}">[\\s\\S]*?<svg`), id);
	}

	t.regex(visibleText(overview), /Hit ratio \d+\.\d%/);
	t.regex(overview, /<figure class="chart" id="chart-bytes">[\s\S]*?<polyline[^>]*stroke="#1f5fa8"/, 'bytes served are drawn');
	await shot('1-overview');

	// The list: 2,003 repositories, 50 a page, sorted; the next page by its link.
	t.is(await browser.goto(`${mirror.url}/dashboard/repositories`), 200);
	let page = await text();
	t.regex(page, /2003 repositories · page 1 of 41/);
	t.regex(page, /private\/kept pushed 1 [\d.]+ KiB/, 'pushed repositories first (registry "" sorts first)');
	t.regex(page, /seed\/app-0000 cached from docker\.io 1 1\.0 MiB/);
	t.is((await browser.html()).match(/<tr><td><a href=/g)?.length, 50);
	await shot('2-repositories');
	t.is(await browser.clickAndWait('a[rel="next"]'), 200);
	page = await text();
	t.regex(page, /page 2 of 41/);
	// Page 1 held private/kept, other, tool and seed/app-0000…0046.
	t.regex(page, /pulls seed\/app-0047 cached from docker\.io 1 48\.0 MiB/);
	t.notRegex(page, /seed\/app-0046 /);

	// Search from the form: a substring, with its size.
	await browser.goto(`${mirror.url}/dashboard/repositories`);
	await browser.fill('#search input[name="q"]', 'app-1234');
	t.is(await browser.clickAndWait('#search button'), 200);
	page = await text();
	t.regex(page, /1 repository matching “app-1234” · page 1 of 1/);
	t.regex(page, /seed\/app-1234 cached from docker\.io 1 235\.0 MiB/);
	await shot('3-search');
	await browser.goto(`${mirror.url}/dashboard/repositories?q=tool&kind=cached`);
	t.regex(await text(), /1 repository matching “tool”.* library\/tool cached from docker\.io 1 [\d.]+ (KiB|MiB) \d{4}-\d\d-\d\d \d\d:\d\d:\d\d 6 page/);

	// The repository and the image: its platforms, then one platform's layers and who shares them.
	t.is(await browser.goto(`${mirror.url}/dashboard/repository?name=tool`), 200);
	t.regex(await text(), /2 sha256:[0-9a-f]{12} linux\/amd64, linux\/arm64 [\d.]+ KiB/);
	await shot('4-repository');
	t.is(await browser.clickAndWait('#tags a[href*="dashboard/image"]'), 200);
	page = await text();
	t.regex(page, new RegExp(`digest ${index.digest}`));
	t.regex(page, /index of 2 manifests/);
	t.regex(page, /linux\/amd64 sha256:[0-9a-f]{12} application\/vnd\.docker\.distribution\.manifest\.v2\+json [\d.]+ KiB/);
	t.regex(page, /linux\/arm64 sha256:[0-9a-f]{12}/);
	await shot('5-image-index');
	t.is(await browser.clickAndWait('#platforms a'), 200);
	page = await text();
	t.regex(page, /image of 2 layers platform linux\/amd64 /, 'the platform the index names for it');
	for (const [n, layer] of amd64.layers.entries()) {
		t.regex(page, new RegExp(`layer ${n + 1} ${layer.digest.slice(0, 19)} [\\d.]+ KiB cached library/other`), `layer ${n + 1} is shared with other`);
	}

	t.regex(page, new RegExp(`config ${amd64.config.digest.slice(0, 19)} [\\d.]+ (B|KiB) cached library/other`));
	await shot('6-image-layers');

	// Purge from the page, with a confirmation: the next pull fetches from the upstream again.
	upstream.resetCounts();
	await skopeoOk(['inspect', '--raw', '--tls-verify=false', `docker://${mirror.host}/tool:2`]);
	t.is(upstream.count({kind: 'manifest'}), 0, 'before the purge the tag is a cache hit');
	await browser.goto(`${mirror.url}/dashboard/repository?name=tool`);
	t.is(await browser.clickAndWait('#purge-repository button'), 200);
	t.regex(await text(), /Purge library\/tool from the cache\? Every cached tag of the repository is forgotten/);
	await shot('7-purge-confirm');
	t.is(await browser.clickAndWait('#confirm'), 200);
	t.regex(await text(), /Purged library\/tool: 1 tag \(2\) and 3 manifest links removed\. The next pull fetches from docker\.io\./);
	await shot('8-purged');
	await browser.goto(`${mirror.url}/dashboard/repositories?q=tool`);
	t.regex(await text(), /0 repositories matching “tool”/);
	await skopeoOk(['copy', '--all', '--src-tls-verify=false', `docker://${mirror.host}/tool:2`, `oci:${join(out, 'again')}`]);
	t.is(upstream.count({kind: 'manifest', method: 'GET', pathIncludes: '/manifests/2'}), 1, 'the tag is fetched from the upstream again');
	t.is(upstream.count({kind: 'manifest', method: 'GET', pathIncludes: amd64.digest}), 1, 'and the platform manifests');

	// A pushed repository has no purge button, and a purge of it is refused.
	await browser.goto(`${mirror.url}/dashboard/repository?name=private/kept`);
	t.regex(await text(), /pushed here: never purged or evicted/);
	t.notRegex(await browser.html(), /class="danger"/);
	await browser.goto(`${mirror.url}/dashboard/purge?name=private/kept`);
	t.is(await browser.clickAndWait('#confirm'), 405);
	t.regex(await text(), /private\/kept: pushed content is never purged/);
	await shot('9-purge-refused');
	t.is((await fetch(`${mirror.url}/v2/private/kept/manifests/1`, {method: 'HEAD'})).status, 200);

	if (process.env['DASHBOARD_SCREENS']) {
		await cp(SCREENS, process.env['DASHBOARD_SCREENS'], {recursive: true});
	}
});

async function htpasswdFile(users: Record<string, string>): Promise<string> {
	const dir = await tempDir('auth-');
	const file = join(dir, 'htpasswd');
	await writeFile(file, Object.entries(users).map(([user, password]) => `${user}:${bcrypt.hashSync(password, 4)}`).join('\n') + '\n');
	return file;
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

test('the purge API: admins only with auth, V2 errors for bad names, unknown content and pushed repositories; the next pull refetches', async t => {
	const htpasswd = await htpasswdFile({alice: 'wonderland', bob: 'builder'});
	const {upstream, mirror} = await startStack(t, {mirror: {extra: {auth: {htpasswd, anonymous_pull: true, admins: ['alice']}}}});
	const image = await buildImage();
	await pushImage(upstream.url, 'library/app', '1', image);
	await pushImage(upstream.url, 'library/app', '2', image);
	const alice = {authorization: basic('alice', 'wonderland')};
	await (await fetch(`${mirror.url}/v2/app/manifests/1`, {headers: {accept: image.mediaType}})).arrayBuffer();
	await (await fetch(`${mirror.url}/v2/app/manifests/2`, {headers: {accept: image.mediaType}})).arrayBuffer();
	await pushImage(mirror.url, 'private/kept', '1', image, {username: 'bob', password: 'builder'});

	const purge = async (reference: string, headers: Record<string, string> = {}) => {
		const response = await fetch(`${mirror.url}/api/cache/${reference}`, {method: 'DELETE', headers});
		return {status: response.status, headers: response.headers, body: (await response.json()) as {errors?: Array<{code: string; message: string}>} & Record<string, unknown>};
	};

	const anonymous = await purge('app:1');
	t.is(anonymous.status, 401);
	t.is(anonymous.body.errors?.[0]?.code, 'UNAUTHORIZED');
	t.regex(anonymous.headers.get('www-authenticate') ?? '', /^Basic realm=/);
	const wrong = await purge('app:1', {authorization: basic('alice', 'nope')});
	t.is(wrong.status, 401);
	const bob = await purge('app:1', {authorization: basic('bob', 'builder')});
	t.is(bob.status, 403);
	t.is(bob.body.errors?.[0]?.code, 'DENIED');

	const bad = await purge('Not..A/Name', alice);
	t.deepEqual([bad.status, bad.body.errors?.[0]?.code], [400, 'NAME_INVALID']);
	const badTag = await purge('app:-x', alice);
	t.deepEqual([badTag.status, badTag.body.errors?.[0]?.code], [400, 'TAG_INVALID']);
	const pushed = await purge('private/kept', alice);
	t.deepEqual([pushed.status, pushed.body.errors?.[0]?.code], [405, 'UNSUPPORTED']);
	t.regex(pushed.body.errors?.[0]?.message ?? '', /pushed content is never purged/);
	const unknown = await purge('never/pulled', alice);
	t.deepEqual([unknown.status, unknown.body.errors?.[0]?.code], [404, 'NAME_UNKNOWN']);

	upstream.resetCounts();
	const one = await purge('app:1', alice);
	t.is(one.status, 200);
	t.like(one.body, {repository: 'app', upstream: 'docker.io', tag: '1', tags: ['1'], manifests: 0}, 'tag 2 still points at the manifest');
	t.deepEqual([(await purge('app:1', alice)).body.errors?.[0]?.code], ['MANIFEST_UNKNOWN']);
	const again = await fetch(`${mirror.url}/v2/app/manifests/1`, {headers: {accept: image.mediaType}});
	t.is(again.status, 200);
	await again.arrayBuffer();
	t.is(upstream.count({kind: 'manifest', method: 'GET', pathIncludes: '/manifests/1'}), 1, 'the purged tag is fetched again');
	const two = await fetch(`${mirror.url}/v2/app/manifests/2`, {headers: {accept: image.mediaType}});
	await two.arrayBuffer();
	t.is(upstream.count({pathIncludes: '/manifests/2'}), 0, 'the other tag is still cached');
	t.is((await fetch(`${mirror.url}/v2/private/kept/manifests/1`, {method: 'HEAD', headers: alice})).status, 200);

	// The dashboard's purge pages: bob may look, not purge.
	const bobPage = await fetch(`${mirror.url}/dashboard/purge?name=app`, {headers: {authorization: basic('bob', 'builder')}});
	t.is(bobPage.status, 403);
	t.regex(await bobPage.text(), /Only administrators/);
	const bobPost = await fetch(`${mirror.url}/dashboard/purge`, {method: 'POST', headers: {authorization: basic('bob', 'builder'), 'content-type': 'application/x-www-form-urlencoded'}, body: 'name=app'});
	t.is(bobPost.status, 403);
	const crossSite = await fetch(`${mirror.url}/dashboard/purge`, {method: 'POST', headers: {...alice, origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded'}, body: 'name=app'});
	t.is(crossSite.status, 403, 'a form from another site is refused');
	const repoPage = await fetch(`${mirror.url}/dashboard/repository?name=app`, {headers: {authorization: basic('bob', 'builder')}});
	t.notRegex(await repoPage.text(), /class="danger"/, 'no purge buttons for bob');
	const alicePost = await fetch(`${mirror.url}/dashboard/purge`, {method: 'POST', headers: {...alice, origin: mirror.url, 'content-type': 'application/x-www-form-urlencoded'}, body: 'name=app'});
	t.is(alicePost.status, 200);
	t.regex(await alicePost.text(), /Purged app: 2 tags \(1, 2\)/);
});

test('registry-mirror purge NAME[:TAG] on the command line', async t => {
	const {upstream, mirror} = await startStack(t);
	const image = await buildImage();
	await pushImage(upstream.url, 'library/cli', '1', image);
	await (await fetch(`${mirror.url}/v2/cli/manifests/1`, {headers: {accept: image.mediaType}})).arrayBuffer();
	await pushImage(mirror.url, 'private/kept', '1', image);
	const dir = await tempDir('purge-cli-');
	const config = join(dir, 'mirror.config.yml');
	await writeFile(config, `storage: {dir: ${JSON.stringify(mirror.dataDir)}}\nupstreams:\n  docker.io: {url: ${JSON.stringify(upstream.url)}}\nnamespaces:\n  - {prefix: private/, local: true}\n  - {prefix: "", upstream: docker.io}\n`);
	const cli = async (...args: string[]) => run(process.execPath, ['--import', 'tsx', 'src/main.ts', 'purge', '--config', config, ...args], {timeoutMs: 60_000});

	const pushed = await cli('private/kept');
	t.is(pushed.code, 1);
	t.regex(pushed.stderr, /^purge: private\/kept: pushed content is never purged.* \(UNSUPPORTED\)\n$/);
	const bad = await cli('UPPER/case');
	t.is(bad.code, 1);
	t.regex(bad.stderr, /invalid repository name \(NAME_INVALID\)/);
	const missing = await cli('cli:9');
	t.is(missing.code, 1);
	t.regex(missing.stderr, /this tag is not cached \(MANIFEST_UNKNOWN\)/);

	upstream.resetCounts();
	const done = await cli('cli:1', '--json');
	t.is(done.code, 0, done.stderr);
	t.deepEqual(JSON.parse(done.stdout), {repository: 'cli', upstream: 'docker.io', tag: '1', tags: ['1'], manifests: 1});
	const again = await fetch(`${mirror.url}/v2/cli/manifests/1`, {headers: {accept: image.mediaType}});
	t.is(again.status, 200);
	t.is(upstream.count({kind: 'manifest', method: 'GET'}), 1, 'the running mirror fetches the purged tag again');
	t.is((await fetch(`${mirror.url}/v2/private/kept/manifests/1`, {method: 'HEAD'})).status, 200);
});
