/**
 * The container image: built from the Dockerfile by the Debian Docker engine on
 * base images made here (helpers/base-images.ts), run with host networking
 * (the test engine has no bridge), pulled through by skopeo and docker,
 * stopped with `docker stop`, started again with the upstream gone.
 */
import {mkdtemp, rm} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {dirname, join} from 'node:path';
import test from 'ava';
import {BUILD_PACKAGES, debianRootfs, nodeBaseImage, RUNTIME_PACKAGES} from '../helpers/base-images.js';
import {startDockerd} from '../helpers/dockerd.js';
import {buildImage, pushImage} from '../helpers/images.js';
import {repoRoot} from '../helpers/mirror-process.js';
import {findExecutable, freePort, run, waitFor} from '../helpers/process.js';
import {startReferenceRegistry} from '../helpers/reference-registry.js';
import {skopeo} from '../helpers/skopeo.js';
import {assertCopied} from '../helpers/stack.js';
import {startTokenServer} from '../helpers/token-server.js';

const MIRROR_UID = '10001';

test('the image builds from the Dockerfile, serves skopeo and docker pulls, stops cleanly and serves the cache with the upstream gone; its files belong to the non-root user', async t => {
	t.timeout(40 * 60_000);
	const tokens = await startTokenServer();
	t.teardown(async () => tokens.stop());
	const upstream = await startReferenceRegistry({tokenServer: tokens});
	t.teardown(async () => upstream.stop());
	const image = await buildImage({layers: 2, layerSize: 1024 * 1024, label: 'image-test'});
	await pushImage(upstream.url, 'library/webapp', 'latest', image);

	const port = await freePort();
	const mirrorUrl = `http://127.0.0.1:${port}`;
	const dockerd = await startDockerd({mirrorUrl});
	t.teardown(async () => dockerd.stop());

	// Docker's CLI builds with BuildKit (the buildx plugin) when it has it; Debian's engine
	// without the plugin takes the classic builder.
	const dockerPath = findExecutable('docker')!;
	const buildx = (await run(dockerPath, ['buildx', 'version'], {env: {...process.env, DOCKER_HOST: `unix://${dockerd.socket}`}})).code === 0;
	const env: NodeJS.ProcessEnv = {
		...process.env,
		DOCKER_HOST: `unix://${dockerd.socket}`,
		DOCKER_CONFIG: join(dirname(dockerd.socket), 'cli'),
		DOCKER_BUILDKIT: buildx ? '1' : '0',
	};
	const docker = async (args: string[], timeoutMs = 120_000) => run(dockerPath, args, {env, timeoutMs});
	const ok = async (args: string[], timeoutMs?: number): Promise<string> => {
		const result = await docker(args, timeoutMs);
		if (result.code !== 0) {
			throw new Error(`docker ${args.join(' ')} failed (exit ${result.code}):\n${result.stdout.slice(-4000)}\n${result.stderr}`);
		}

		return result.stdout;
	};

	const basesStarted = performance.now();
	const [runtimeRootfs, buildRootfs] = await Promise.all([debianRootfs(RUNTIME_PACKAGES), debianRootfs(BUILD_PACKAGES)]);
	await nodeBaseImage(docker, runtimeRootfs, 'mirror-test-runtime-base', false);
	await nodeBaseImage(docker, buildRootfs, 'mirror-test-build-base', true);
	const basesMs = performance.now() - basesStarted;

	const buildStarted = performance.now();
	await ok([
		'build', '--network', 'host',
		'--build-arg', 'BUILD_IMAGE=mirror-test-build-base',
		'--build-arg', 'RUNTIME_IMAGE=mirror-test-runtime-base',
		'-t', 'registry-mirror:test', repoRoot,
	], 20 * 60_000);
	const buildMs = performance.now() - buildStarted;
	const size = Number((await ok(['image', 'inspect', '--format', '{{.Size}}', 'registry-mirror:test'])).trim());
	const runtimeBaseSize = Number((await ok(['image', 'inspect', '--format', '{{.Size}}', 'mirror-test-runtime-base'])).trim());
	t.log(`base images ${Math.round(basesMs / 1000)} s (builder: ${buildx ? 'BuildKit' : 'classic'}), image build ${Math.round(buildMs / 1000)} s; image ${(size / 2 ** 20).toFixed(0)} MiB, of which the Debian + Node base ${(runtimeBaseSize / 2 ** 20).toFixed(0)} MiB`);

	const config = JSON.parse(await ok(['image', 'inspect', '--format', '{{json .Config}}', 'registry-mirror:test'])) as {
		User: string; ExposedPorts: Record<string, unknown>; Volumes: Record<string, unknown>; Healthcheck: {Test: string[]}; Env: string[];
	};
	t.is(config.User, `${MIRROR_UID}:${MIRROR_UID}`);
	t.deepEqual(Object.keys(config.ExposedPorts), ['5000/tcp']);
	t.deepEqual(Object.keys(config.Volumes), ['/data']);
	t.deepEqual(config.Healthcheck.Test, ['CMD', 'node', '/app/dist/main.js', 'healthcheck']);
	t.true(config.Env.includes('MIRROR_CONFIG=/etc/registry-mirror/mirror.config.yml'));

	// The image's own config (Docker Hub on 0.0.0.0:5000, /data); the environment moves it to
	// the test's port and points docker.io at the reference registry.
	const volume = `mirror-data-${port}`;
	await ok([
		'run', '-d', '--name', 'mirror', '--network', 'host', '-v', `${volume}:/data`,
		'-e', `MIRROR_LISTEN=127.0.0.1:${port}`,
		'-e', `MIRROR_UPSTREAM_DOCKER_IO_URL=${upstream.url}`,
		'registry-mirror:test',
	]);
	t.teardown(async () => {
		await docker(['rm', '-f', 'mirror']);
	});
	const healthy = async () => waitFor(async () => {
		const state = (await docker(['inspect', '--format', '{{.State.Status}}', 'mirror'])).stdout.trim();
		if (state !== 'running') {
			throw new Error(`the container is ${state}:\n${(await docker(['logs', 'mirror'])).stderr}`);
		}

		const response = await fetch(`${mirrorUrl}/healthz`, {signal: AbortSignal.timeout(2000)}).catch(() => undefined);
		return response?.status === 200;
	}, `the mirror container on ${mirrorUrl}`, 60_000);
	await healthy();
	t.is((await docker(['exec', 'mirror', 'node', '/app/dist/main.js', 'healthcheck'])).code, 0, 'the HEALTHCHECK command passes');
	t.is((await ok(['exec', 'mirror', 'id', '-u'])).trim(), MIRROR_UID);

	upstream.resetCounts();
	const dir = await mkdtemp(join(tmpdir(), 'image-copy-'));
	t.teardown(async () => rm(dir, {recursive: true, force: true}));
	const copied = await skopeo(['copy', '--src-tls-verify=false', `docker://127.0.0.1:${port}/library/webapp:latest`, `dir:${dir}`]);
	t.is(copied.code, 0, copied.stderr);
	await assertCopied(t, dir, image);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 3, 'config and two layers fetched once');

	const pulled = await dockerd.docker(['pull', 'webapp:latest'], 180_000);
	t.is(pulled.code, 0, pulled.stderr);
	t.is((await ok(['image', 'inspect', '--format', '{{.Id}}', 'webapp:latest'])).trim(), image.config.digest);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 3, 'docker pull was served from the cache');

	// Not a terminal: JSON lines, each request with its id.
	const logs = await docker(['logs', 'mirror']);
	const requests = `${logs.stdout}${logs.stderr}`.split('\n').filter(line => line.includes('"msg":"request"')).map(line => JSON.parse(line) as {id: string; path: string; status: number});
	t.true(requests.some(entry => entry.path === '/v2/library/webapp/manifests/latest' && entry.status === 200 && /^[\w-]{8,}$/.test(entry.id)), 'request lines carry an id');

	// docker stop: SIGTERM, and the mirror exits by itself (0) before the 10 s grace ends in SIGKILL (137).
	const stopStarted = performance.now();
	await ok(['stop', 'mirror'], 60_000);
	const stopMs = performance.now() - stopStarted;
	t.is((await ok(['inspect', '--format', '{{.State.ExitCode}}', 'mirror'])).trim(), '0');
	t.regex((await docker(['logs', 'mirror'])).stdout, /shutting down/);
	t.log(`docker stop took ${Math.round(stopMs)} ms`);

	await upstream.stop();
	t.is((await docker(['rmi', 'webapp:latest'])).code, 0);
	await ok(['start', 'mirror']);
	await healthy();
	const offline = await dockerd.docker(['pull', 'webapp:latest'], 180_000);
	t.is(offline.code, 0, offline.stderr);
	t.is((await ok(['image', 'inspect', '--format', '{{.Id}}', 'webapp:latest'])).trim(), image.config.digest);
	const offlineDir = await mkdtemp(join(tmpdir(), 'image-copy-'));
	t.teardown(async () => rm(offlineDir, {recursive: true, force: true}));
	const again = await skopeo(['copy', '--src-tls-verify=false', `docker://127.0.0.1:${port}/library/webapp:latest`, `dir:${offlineDir}`]);
	t.is(again.code, 0, again.stderr);
	await assertCopied(t, offlineDir, image);

	// Every file in the volume belongs to the mirror's user, none to root.
	await ok(['stop', 'mirror'], 60_000);
	const owners = await ok(['run', '--rm', '--network', 'host', '--user', '0', '--entrypoint', 'find', '-v', `${volume}:/data`, 'registry-mirror:test', '/data', '-printf', '%U:%G %p\\n']);
	const lines = owners.trim().split('\n');
	t.true(lines.some(line => line.endsWith(' /data/mirror.db')), owners);
	t.true(lines.length > 5, owners);
	t.deepEqual(lines.filter(line => !line.startsWith(`${MIRROR_UID}:${MIRROR_UID} `)), [], 'files not owned by the mirror user');
});
