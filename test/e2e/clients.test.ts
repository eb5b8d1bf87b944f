/**
 * Real clients pulling through the mirror with their own mirror configs, for
 * two upstreams each: `docker.io` (a reference registry behind the token
 * server) and `ghcr.io` (a reference registry without auth).
 *
 * - containerd: `ctr images pull --hosts-dir DIR` with DIR/docker.io/hosts.toml
 *   and DIR/ghcr.io/hosts.toml naming the mirror; containerd adds `?ns=HOST`.
 * - podman: registries.conf `[[registry.mirror]]` entries; the ghcr.io mirror
 *   location carries a path (`HOST:PORT/ghcr.io`), which podman puts in front
 *   of the repository name, so the mirror routes it by its path prefix.
 * - Docker: `registry-mirrors` (Docker Hub only), and for ghcr.io the mirror's
 *   path prefix by name: `docker pull HOST:PORT/ghcr.io/team/app:1`.
 *
 * docker.io also holds a different `team/app:1`, so a ghcr.io request the
 * mirror mis-routed to docker.io would get the wrong image, not an error.
 * There is no internet here: the real registries the configs name as
 * `server`/`location` cannot answer, so a successful pull came through the
 * mirror; the upstream counts say so too.
 */
import test, {type ExecutionContext} from 'ava';
import {imageDigest, startContainerd, writeHostsDir} from '../helpers/containerd.js';
import {startDockerd} from '../helpers/dockerd.js';
import {type BuiltImage, buildImage, pushImage} from '../helpers/images.js';
import {type Mirror, startMirror} from '../helpers/mirror.js';
import {startPodman} from '../helpers/podman.js';
import {type ReferenceRegistry} from '../helpers/reference-registry.js';
import {startTwoUpstreams} from '../helpers/stack.js';

type Setup = {
	hub: ReferenceRegistry;
	gh: ReferenceRegistry;
	mirror: Mirror;
	/** docker.io library/app:1 */
	hubApp: BuiltImage;
	/** ghcr.io team/app:1 */
	ghApp: BuiltImage;
};

async function setup(t: ExecutionContext): Promise<Setup> {
	const {hub, gh} = await startTwoUpstreams(t);
	const [hubApp, ghApp, decoy] = await Promise.all([
		buildImage({label: 'hub-app', layers: 2, layerSize: 256 * 1024}),
		buildImage({label: 'gh-app', layers: 2, layerSize: 256 * 1024, format: 'oci'}),
		buildImage({label: 'decoy'}),
	]);
	await Promise.all([
		pushImage(hub.url, 'library/app', '1', hubApp),
		pushImage(hub.url, 'team/app', '1', decoy),
		pushImage(gh.url, 'team/app', '1', ghApp),
	]);
	// The default rules: private/ is local, every other bare name is Docker Hub's.
	const mirror = await startMirror({
		upstreams: {'docker.io': {url: hub.url}, 'ghcr.io': {url: gh.url}},
		namespaces: [{prefix: 'private/', local: true}, {prefix: '', upstream: 'docker.io'}],
	});
	t.teardown(async () => mirror.stop());
	hub.resetCounts();
	gh.resetCounts();
	return {hub, gh, mirror, hubApp, ghApp};
}

function contentRequests(upstream: ReferenceRegistry): number {
	return upstream.count({kind: 'manifest'}) + upstream.count({kind: 'blob'});
}

/** The blobs of `image` were each fetched exactly once from `upstream`, under `remoteName`. */
function assertFetchedOnce(t: ExecutionContext, upstream: ReferenceRegistry, remoteName: string, image: BuiltImage, who: string): void {
	t.true(upstream.count({method: 'GET', kind: 'manifest', pathIncludes: `/v2/${remoteName}/manifests/`}) >= 1, `${who}: the manifest came from the upstream`);
	for (const blob of [image.config, ...image.layers]) {
		t.is(upstream.count({method: 'GET', pathIncludes: `/v2/${remoteName}/blobs/${blob.digest}`}), 1, `${who}: blob ${blob.digest} fetched once`);
	}
}

test('ctr pulls docker.io and ghcr.io images through hosts.toml mirrors (containerd sends ?ns=)', async t => {
	const {hub, gh, mirror, hubApp, ghApp} = await setup(t);
	const containerd = await startContainerd();
	t.teardown(async () => containerd.stop());
	const hostsDir = await writeHostsDir({
		'docker.io': {server: 'https://registry-1.docker.io', hosts: [{url: mirror.url}]},
		'ghcr.io': {server: 'https://ghcr.io', hosts: [{url: mirror.url}]},
	});

	// A full pull, unpacked into the default snapshotter (overlayfs works here; the Debian package has it).
	const hubPull = await containerd.ctr(['images', 'pull', '--hosts-dir', hostsDir, 'docker.io/library/app:1']);
	t.is(hubPull.code, 0, `${hubPull.stdout}\n${hubPull.stderr}\n${containerd.log().slice(-2000)}`);
	t.is(await imageDigest(containerd, 'docker.io/library/app:1'), hubApp.digest, 'ctr recorded the docker.io image');
	assertFetchedOnce(t, hub, 'library/app', hubApp, 'docker.io via ctr');
	t.is(contentRequests(gh), 0, 'ghcr.io saw nothing of the docker.io pull');
	hub.resetCounts();

	const ghPull = await containerd.ctr(['images', 'pull', '--hosts-dir', hostsDir, 'ghcr.io/team/app:1']);
	t.is(ghPull.code, 0, `${ghPull.stdout}\n${ghPull.stderr}`);
	t.is(await imageDigest(containerd, 'ghcr.io/team/app:1'), ghApp.digest, 'ctr recorded the ghcr.io image, not docker.io\'s team/app');
	assertFetchedOnce(t, gh, 'team/app', ghApp, 'ghcr.io via ctr');
	t.is(contentRequests(hub), 0, 'docker.io (which has its own team/app) saw nothing of the ghcr.io pull');

	// The content store holds exactly the pulled blobs.
	const content = await containerd.ctr(['content', 'ls', '-q']);
	for (const blob of [hubApp.config, ...hubApp.layers, ghApp.config, ...ghApp.layers]) {
		t.true(content.stdout.includes(blob.digest), `content store has ${blob.digest}`);
	}

	// Again, after removing the images and their content: fetched from the mirror's cache alone.
	t.is((await containerd.ctr(['images', 'rm', '--sync', 'docker.io/library/app:1', 'ghcr.io/team/app:1'])).code, 0);
	const layer = ghApp.layers[0]!.digest;
	t.false((await containerd.ctr(['content', 'ls', '-q'])).stdout.includes(layer), 'the content is gone from containerd');
	hub.resetCounts();
	gh.resetCounts();
	const again = await containerd.ctr(['images', 'pull', '--hosts-dir', hostsDir, 'ghcr.io/team/app:1']);
	t.is(again.code, 0, again.stderr);
	t.true((await containerd.ctr(['content', 'ls', '-q'])).stdout.includes(layer), 'fetched again, from the mirror');
	t.is(hub.count({kind: 'blob'}) + gh.count({kind: 'blob'}), 0, 'no blob request upstream on the second pull');
});

test('podman pulls docker.io and ghcr.io images through registries.conf [[registry.mirror]] entries', async t => {
	const {hub, gh, mirror, hubApp, ghApp} = await setup(t);
	const podman = await startPodman({
		registries: [
			{prefix: 'docker.io', location: 'registry-1.docker.io', mirrors: [{location: mirror.host, insecure: true}]},
			// The mirror location's path goes in front of the repository name: /v2/ghcr.io/team/app/...
			{prefix: 'ghcr.io', location: 'ghcr.io', mirrors: [{location: `${mirror.host}/ghcr.io`, insecure: true}]},
		],
	});
	t.teardown(async () => podman.stop());

	const hubPull = await podman.pull(['docker.io/library/app:1']);
	t.is(hubPull.code, 0, `${hubPull.stdout}\n${hubPull.stderr}`);
	const hubInspect = await podman.podman(['image', 'inspect', '--format', '{{.Id}} {{.Digest}}', 'docker.io/library/app:1']);
	t.is(hubInspect.code, 0, hubInspect.stderr);
	t.is(hubInspect.stdout.trim(), `${hubApp.config.digest.slice('sha256:'.length)} ${hubApp.digest}`, 'image id is the config digest, digest the manifest\'s');
	assertFetchedOnce(t, hub, 'library/app', hubApp, 'docker.io via podman');
	t.is(contentRequests(gh), 0, 'ghcr.io saw nothing of the docker.io pull');
	hub.resetCounts();

	const ghPull = await podman.pull(['ghcr.io/team/app:1']);
	t.is(ghPull.code, 0, `${ghPull.stdout}\n${ghPull.stderr}`);
	const ghInspect = await podman.podman(['image', 'inspect', '--format', '{{.Id}} {{.Digest}}', 'ghcr.io/team/app:1']);
	t.is(ghInspect.stdout.trim(), `${ghApp.config.digest.slice('sha256:'.length)} ${ghApp.digest}`);
	assertFetchedOnce(t, gh, 'team/app', ghApp, 'ghcr.io via podman');
	t.is(contentRequests(hub), 0, 'docker.io saw nothing of the ghcr.io pull');
});

test('docker pulls docker.io through registry-mirrors and ghcr.io through the mirror\'s path prefix', async t => {
	const {hub, gh, mirror, hubApp, ghApp} = await setup(t);
	const dockerd = await startDockerd({mirrorUrl: mirror.url});
	t.teardown(async () => dockerd.stop());

	const hubPull = await dockerd.docker(['pull', 'app:1'], 180_000);
	t.is(hubPull.code, 0, hubPull.stderr);
	const hubInspect = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', 'app:1']);
	t.is(hubInspect.stdout.trim(), hubApp.config.digest);
	assertFetchedOnce(t, hub, 'library/app', hubApp, 'docker.io via registry-mirrors');
	t.is(contentRequests(gh), 0);
	hub.resetCounts();

	// registry-mirrors only ever applies to Docker Hub: other registries are pulled from the mirror by name.
	const ref = `${mirror.host}/ghcr.io/team/app:1`;
	const ghPull = await dockerd.docker(['pull', ref], 180_000);
	t.is(ghPull.code, 0, ghPull.stderr);
	const ghInspect = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}} {{range .RepoDigests}}{{.}}{{end}}', ref]);
	t.is(ghInspect.code, 0, ghInspect.stderr);
	t.is(ghInspect.stdout.trim(), `${ghApp.config.digest} ${mirror.host}/ghcr.io/team/app@${ghApp.digest}`);
	assertFetchedOnce(t, gh, 'team/app', ghApp, 'ghcr.io by name');
	t.is(contentRequests(hub), 0);
});
