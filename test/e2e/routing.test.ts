/**
 * One mirror, two upstreams holding the same repository name with different
 * images: `docker.io` (a reference registry behind the token server) and
 * `ghcr.io` (a reference registry without auth). Every way of routing
 * (containerd's `?ns=`, a leading path segment naming the upstream, the
 * `namespaces` rules) reaches the right one; the counting proxies in front of
 * both upstreams show that nothing crossed; cached content never mixes.
 */
import test, {type ExecutionContext} from 'ava';
import {type BuiltImage, buildImage, pushImage, sha256} from '../helpers/images.js';
import {type Mirror, startMirror, stopSharedStoreServers} from '../helpers/mirror.js';
import {type ReferenceRegistry} from '../helpers/reference-registry.js';
import {startTwoUpstreams} from '../helpers/stack.js';
import {parseDigest} from '../../src/v2/grammar.js';

// Run again on S3 + PostgreSQL with MIRROR_TEST_STORES=s3+postgres (see helpers/mirror.ts).
test.after.always(stopSharedStoreServers);

const manifestAccept = [
	'application/vnd.docker.distribution.manifest.v2+json',
	'application/vnd.docker.distribution.manifest.list.v2+json',
	'application/vnd.oci.image.manifest.v1+json',
	'application/vnd.oci.image.index.v1+json',
].join(', ');

type Images = {
	/** docker.io team/app:1 */
	hubApp: BuiltImage;
	/** ghcr.io team/app:1 (same name, different image) */
	ghApp: BuiltImage;
	/** docker.io library/solo:1 */
	hubSolo: BuiltImage;
	/** ghcr.io solo:1 (a single-segment name that is NOT under library/ there) */
	ghSolo: BuiltImage;
	/** ghcr.io myorg/tool:1, reached by the namespace rule `myorg/` */
	ghTool: BuiltImage;
	/** docker.io myorg/tool:1 (same name; the rule must not send it here) */
	hubTool: BuiltImage;
};

type Setup = {hub: ReferenceRegistry; gh: ReferenceRegistry; mirror: Mirror; images: Images};

async function setup(t: ExecutionContext): Promise<Setup> {
	const {hub, gh} = await startTwoUpstreams(t);

	const [hubApp, ghApp, hubSolo, ghSolo, ghTool, hubTool] = await Promise.all([
		buildImage({label: 'hub-app', layers: 2}),
		buildImage({label: 'gh-app', layers: 2, format: 'oci'}),
		buildImage({label: 'hub-solo'}),
		buildImage({label: 'gh-solo'}),
		buildImage({label: 'gh-tool'}),
		buildImage({label: 'hub-tool'}),
	]);
	// One repository's pushes in sequence (the second tag finds its blobs there); repositories in parallel.
	await Promise.all([
		(async () => {
			await pushImage(hub.url, 'team/app', '1', hubApp);
			await pushImage(hub.url, 'team/app', 'hub-only', hubApp);
		})(),
		(async () => {
			await pushImage(gh.url, 'team/app', '1', ghApp);
			await pushImage(gh.url, 'team/app', 'gh-only', ghApp);
		})(),
		pushImage(hub.url, 'library/solo', '1', hubSolo),
		pushImage(gh.url, 'solo', '1', ghSolo),
		pushImage(gh.url, 'myorg/tool', '1', ghTool),
		pushImage(hub.url, 'myorg/tool', '1', hubTool),
	]);

	const mirror = await startMirror({
		upstreams: {'docker.io': {url: hub.url, tag_ttl: '1h'}, 'ghcr.io': {url: gh.url, tag_ttl: '1h'}},
		namespaces: [
			{prefix: 'private/', local: true},
			// A rule keeps the full name: `myorg/tool` is ghcr.io's `myorg/tool`.
			{prefix: 'myorg/', upstream: 'ghcr.io'},
			// Bare names (`team/app`, `solo`) are Docker Hub's, as in the default config.
			{prefix: '', upstream: 'docker.io'},
		],
	});
	t.teardown(async () => mirror.stop());
	hub.resetCounts();
	gh.resetCounts();
	return {hub, gh, mirror, images: {hubApp, ghApp, hubSolo, ghSolo, ghTool, hubTool}};
}

/**
 * Pulls `path` (a repository path as the client sends it, e.g. `ghcr.io/team/app`)
 * at `reference` from the mirror like a client would: manifest, then config and
 * layers. Asserts the manifest bytes and every blob's bytes are `expected`'s.
 */
async function pull(t: ExecutionContext, mirror: Mirror, path: string, reference: string, expected: BuiltImage, query = ''): Promise<void> {
	const what = `${path}:${reference}${query}`;
	const response = await fetch(`${mirror.url}/v2/${path}/manifests/${reference}${query}`, {headers: {accept: manifestAccept}});
	const bytes = Buffer.from(await response.arrayBuffer());
	t.is(response.status, 200, `${what}: manifest status (${bytes.toString('utf8').slice(0, 300)})`);
	t.is(sha256(bytes), expected.digest, `${what}: manifest is the expected image's`);
	t.is(response.headers.get('docker-content-digest'), expected.digest, `${what}: Docker-Content-Digest`);
	t.is(response.headers.get('content-type'), expected.mediaType, `${what}: Content-Type`);
	for (const blob of [expected.config, ...expected.layers]) {
		const blobResponse = await fetch(`${mirror.url}/v2/${path}/blobs/${blob.digest}${query}`);
		const blobBytes = Buffer.from(await blobResponse.arrayBuffer());
		t.is(blobResponse.status, 200, `${what}: blob ${blob.digest} status`);
		t.is(sha256(blobBytes), blob.digest, `${what}: blob ${blob.digest} bytes`);
	}
}

/** Every manifest and blob request at an upstream, whatever the name. */
function contentRequests(upstream: ReferenceRegistry): number {
	return upstream.count({kind: 'manifest'}) + upstream.count({kind: 'blob'});
}

test('the same name on two upstreams: ?ns=, path prefix and namespace rules each reach the right upstream, and nothing crosses', async t => {
	const {hub, gh, mirror, images} = await setup(t);

	// 1. containerd's ?ns= picks the upstream; the name is passed on unchanged.
	await pull(t, mirror, 'team/app', '1', images.ghApp, '?ns=ghcr.io');
	t.is(gh.count({method: 'GET', kind: 'manifest', pathIncludes: '/v2/team/app/manifests/1'}), 1, 'ghcr.io: one manifest GET');
	t.is(gh.count({method: 'GET', kind: 'blob', pathIncludes: '/v2/team/app/blobs/'}), 3, 'ghcr.io: config + 2 layers, once each');
	t.is(contentRequests(hub), 0, 'docker.io saw nothing of the ?ns=ghcr.io pull');
	gh.resetCounts();

	await pull(t, mirror, 'team/app', '1', images.hubApp, '?ns=docker.io');
	t.is(hub.count({method: 'GET', kind: 'manifest', pathIncludes: '/v2/team/app/manifests/1'}), 1, 'docker.io: one manifest GET (after the 401 challenge)');
	t.is(hub.count({method: 'GET', kind: 'blob', pathIncludes: '/v2/team/app/blobs/'}), 3, 'docker.io: config + 2 layers');
	t.true(hub.requests.filter(request => request.path.includes('/v2/team/app/')).some(request => request.authorized), 'the token flow was used at docker.io');
	t.is(contentRequests(gh), 0, 'ghcr.io saw nothing of the ?ns=docker.io pull');
	hub.resetCounts();

	// Tags of the same name come from the upstream that was asked.
	const ghTags = await fetch(`${mirror.url}/v2/team/app/tags/list?ns=ghcr.io`);
	t.is(ghTags.status, 200);
	t.deepEqual(((await ghTags.json()) as {tags: string[]}).tags.sort(), ['1', 'gh-only']);
	const hubTags = await fetch(`${mirror.url}/v2/team/app/tags/list?ns=docker.io`);
	t.is(hubTags.status, 200);
	t.deepEqual(((await hubTags.json()) as {tags: string[]}).tags.sort(), ['1', 'hub-only']);
	hub.resetCounts();
	gh.resetCounts();

	// 2. A leading path segment naming a configured upstream: a plain Docker client can reach it by name.
	//    Both tags are cached already (tag_ttl 1h): the path route must land on the same cache entries.
	await pull(t, mirror, 'ghcr.io/team/app', '1', images.ghApp);
	await pull(t, mirror, 'docker.io/team/app', '1', images.hubApp);
	t.is(contentRequests(gh) + contentRequests(hub), 0, 'served from the cache that ?ns= filled: same upstream, same repository');

	// 3. Namespace rules, first match wins and the full name is kept: `myorg/tool` is ghcr.io's myorg/tool.
	await pull(t, mirror, 'myorg/tool', '1', images.ghTool);
	t.is(gh.count({method: 'GET', kind: 'manifest', pathIncludes: '/v2/myorg/tool/manifests/1'}), 1, 'ghcr.io served the manifest of myorg/tool');
	t.is(gh.count({method: 'GET', kind: 'blob', pathIncludes: '/v2/myorg/tool/blobs/'}), 2, 'ghcr.io served its config and layer');
	t.is(contentRequests(hub), 0, 'docker.io, which also has a myorg/tool, was not asked');
	gh.resetCounts();
	//    ... and the catch-all rule sends bare `team/app` to docker.io (cached) and `docker.io/myorg/tool` by path.
	await pull(t, mirror, 'team/app', '1', images.hubApp);
	await pull(t, mirror, 'docker.io/myorg/tool', '1', images.hubTool);
	t.is(hub.count({method: 'GET', kind: 'manifest', pathIncludes: '/v2/myorg/tool/manifests/1'}), 1, 'docker.io served its own myorg/tool');
	t.is(hub.count({method: 'GET', kind: 'blob', pathIncludes: '/v2/myorg/tool/blobs/'}), 2, 'docker.io served its config and layer');
	t.is(contentRequests(gh), 0, 'ghcr.io saw nothing of the docker.io pulls');

	// A local namespace never reaches either upstream.
	const local = await buildImage({label: 'local'});
	hub.resetCounts();
	gh.resetCounts();
	await pushImage(mirror.url, 'private/team/app', '1', local);
	await pull(t, mirror, 'private/team/app', '1', local);
	t.is(hub.requests.length + gh.requests.length, 0, 'a push and pull of a local namespace touch no upstream');
});

test('cached content of two upstreams never mixes: with both upstreams stopped each name still gets its own image', async t => {
	const {hub, gh, mirror, images} = await setup(t);
	await pull(t, mirror, 'team/app', '1', images.hubApp, '?ns=docker.io');
	await pull(t, mirror, 'ghcr.io/team/app', '1', images.ghApp);
	t.is(hub.count({method: 'GET', kind: 'blob'}), 3);
	t.is(gh.count({method: 'GET', kind: 'blob'}), 3);

	hub.resetCounts();
	gh.resetCounts();
	// A blob that only ghcr.io's team/app has is not handed out under docker.io's team/app:
	// the mirror asks docker.io, which does not have it.
	const ghLayer = images.ghApp.layers[0]!.digest;
	const crossed = await fetch(`${mirror.url}/v2/team/app/blobs/${ghLayer}?ns=docker.io`);
	const crossedBody = await crossed.text();
	// StoredBlobs: the stored blob is not known under docker.io, so a HEAD asks; it is 404, and so is the fill's GET.
	// The HEAD's answer lasts for the request: with a coordinator, the cluster layer looks for a stored copy again
	// (before and under the fill lock) without asking again.
	const asked = hub.requests.filter(request => request.path === `/v2/team/app/blobs/${ghLayer}`).map(request => `${request.method} ${request.status}`);
	// On a failure, say what docker.io was asked and answered (the body of a wrongly served blob is binary).
	const seen = `docker.io saw ${JSON.stringify(hub.requests.map(request => `${request.method} ${request.path} ${request.status}`))}`;
	t.is(crossed.status, 404, `${crossed.headers.get('content-type') ?? ''} ${crossed.status === 404 ? crossedBody : `${crossedBody.length} bytes`}; ${seen}`);
	t.is(crossed.status === 404 ? (JSON.parse(crossedBody) as {errors: Array<{code: string}>}).errors[0]?.code : undefined, 'BLOB_UNKNOWN');
	t.deepEqual(asked, ['HEAD 404', 'GET 404'], `docker.io was asked for it; ${seen}`);
	t.is(contentRequests(gh), 0);

	await hub.stop();
	await gh.stop();
	for (const round of [1, 2]) {
		t.log(`offline round ${round}`);
		await pull(t, mirror, 'team/app', '1', images.hubApp, '?ns=docker.io');
		await pull(t, mirror, 'team/app', '1', images.ghApp, '?ns=ghcr.io');
		await pull(t, mirror, 'ghcr.io/team/app', '1', images.ghApp);
		await pull(t, mirror, 'docker.io/team/app', '1', images.hubApp);
		await pull(t, mirror, 'team/app', '1', images.hubApp);
		// By digest too: each digest under its own upstream's name.
		await pull(t, mirror, 'ghcr.io/team/app', images.ghApp.digest, images.ghApp);
		await pull(t, mirror, 'team/app', images.hubApp.digest, images.hubApp, '?ns=docker.io');
	}
});

test('?ns= naming an unconfigured upstream: 404 NAME_UNKNOWN as V2 JSON, and no upstream is asked', async t => {
	const {hub, gh, mirror} = await setup(t);
	for (const path of ['/v2/team/app/manifests/1?ns=quay.io', '/v2/team/app/blobs/sha256:' + 'a'.repeat(64) + '?ns=quay.io', '/v2/team/app/tags/list?ns=quay.io']) {
		for (const method of ['GET', 'HEAD']) {
			if (method === 'HEAD' && path.includes('/tags/')) {
				continue;
			}

			const response = await fetch(`${mirror.url}${path}`, {method});
			const body = await response.text();
			t.is(response.status, 404, `${method} ${path}: ${body}`);
			t.is(response.headers.get('docker-distribution-api-version'), 'registry/2.0', `${method} ${path}`);
			if (method === 'GET') {
				t.regex(response.headers.get('content-type') ?? '', /^application\/json/, `${method} ${path}`);
				const parsed = JSON.parse(body) as {errors?: Array<{code?: string; message?: string}>};
				t.is(parsed.errors?.[0]?.code, 'NAME_UNKNOWN', `${method} ${path}`);
				t.regex(parsed.errors?.[0]?.message ?? '', /quay\.io/, 'the message names the missing upstream');
			}
		}
	}

	t.is(hub.requests.length + gh.requests.length, 0, 'no upstream request for an unconfigured ?ns=');
});

test('single-segment names get library/ at docker.io (by ?ns=, path and rule), never at ghcr.io', async t => {
	const {hub, gh, mirror, images} = await setup(t);
	await pull(t, mirror, 'solo', '1', images.hubSolo, '?ns=docker.io');
	t.is(hub.count({pathIncludes: '/v2/library/solo/manifests/1'}), 1, 'docker.io was asked for library/solo');
	t.is(hub.count({pathIncludes: '/v2/solo/'}), 0, 'never for bare solo');
	await pull(t, mirror, 'docker.io/solo', '1', images.hubSolo);
	await pull(t, mirror, 'solo', '1', images.hubSolo);
	await pull(t, mirror, 'library/solo', '1', images.hubSolo);
	t.is(contentRequests(gh), 0);

	hub.resetCounts();
	await pull(t, mirror, 'solo', '1', images.ghSolo, '?ns=ghcr.io');
	await pull(t, mirror, 'ghcr.io/solo', '1', images.ghSolo);
	t.is(gh.count({pathIncludes: '/v2/solo/manifests/1'}), 1, 'ghcr.io was asked for solo as it is');
	t.is(gh.count({pathIncludes: '/v2/library/'}), 0, 'no library/ at ghcr.io');
	t.is(contentRequests(hub), 0);
});

test('a fill in flight from one upstream does not serve a name whose upstream lacks the blob', async t => {
	// docker.io is paced so that its fill is still running when ghcr.io's name asks for the same digest.
	const {hub, gh} = await startTwoUpstreams(t, {hubBlobBytesPerSecond: 4 * 1024 * 1024});
	const image = await buildImage({label: 'in-flight', layerSize: 8 * 1024 * 1024});
	await pushImage(hub.url, 'team/slow', '1', image);
	const mirror = await startMirror({upstreams: {'docker.io': {url: hub.url}, 'ghcr.io': {url: gh.url}}});
	t.teardown(async () => mirror.stop());
	const layer = image.layers[0]!.digest;

	const filling = fetch(`${mirror.url}/v2/team/slow/blobs/${layer}`).then(async response => ({status: response.status, body: Buffer.from(await response.arrayBuffer())}));
	while (mirror.registry.fills.running(parseDigest(layer))?.state !== 'running') {
		await new Promise(resolve => setTimeout(resolve, 20));
	}

	const crossed = await fetch(`${mirror.url}/v2/ghcr.io/team/slow/blobs/${layer}`);
	t.is(crossed.status, 404, 'ghcr.io does not have it, whatever docker.io is bringing in');
	t.is(((await crossed.json()) as {errors: Array<{code: string}>}).errors[0]?.code, 'BLOB_UNKNOWN');
	// StoredBlobs.mayShare: the running fill is docker.io's, so ghcr.io is asked with a HEAD, which is 404; no fill starts.
	t.deepEqual(
		gh.requests.filter(request => request.path === `/v2/team/slow/blobs/${layer}`).map(request => `${request.method} ${request.status}`),
		['HEAD 404'],
		'ghcr.io was asked',
	);
	t.is(mirror.registry.fills.running(parseDigest(layer))?.state, 'running', 'asked while the docker.io fill ran');

	const done = await filling;
	t.is(done.status, 200);
	t.is(sha256(done.body), layer, 'the docker.io client still gets its bytes');
});
