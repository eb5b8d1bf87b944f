import test from 'ava';
import {startDockerd} from '../helpers/dockerd.js';
import {buildImage, pushImage} from '../helpers/images.js';
import {startStack} from '../helpers/stack.js';
import {stopSharedStoreServers} from '../helpers/mirror.js';

// Run again on S3 + PostgreSQL with MIRROR_TEST_STORES=s3+postgres (see helpers/mirror.ts).
test.after.always(stopSharedStoreServers);

test('docker pull through registry-mirrors; after rmi a second pull fetches no blob upstream; with the upstream stopped it still pulls', async t => {
	const {upstream, mirror} = await startStack(t);
	const image = await buildImage({layers: 3, layerSize: 2 * 1024 * 1024, label: 'docker-pull'});
	await pushImage(upstream.url, 'library/webapp', 'latest', image);
	const dockerd = await startDockerd({mirrorUrl: mirror.url});
	t.teardown(async () => dockerd.stop());
	upstream.resetCounts();

	const cold = performance.now();
	const first = await dockerd.docker(['pull', 'webapp:latest'], 180_000);
	const coldMs = performance.now() - cold;
	t.is(first.code, 0, first.stderr);
	t.is(upstream.count({method: 'GET', kind: 'blob'}), 4, 'config and three layers, once each');
	const inspected = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}} {{index .Config.Labels "test.label"}}', 'webapp:latest']);
	t.is(inspected.stdout.trim(), `${image.config.digest} docker-pull`);

	t.is((await dockerd.docker(['rmi', 'webapp:latest'])).code, 0);
	upstream.resetCounts();
	const warm = performance.now();
	const second = await dockerd.docker(['pull', 'webapp:latest'], 180_000);
	const warmMs = performance.now() - warm;
	t.is(second.code, 0, second.stderr);
	t.is(upstream.count({kind: 'blob'}), 0, 'the second pull made zero blob requests upstream');
	t.log(`docker pull of a 6 MiB image: cold ${Math.round(coldMs)} ms, warm ${Math.round(warmMs)} ms`);

	t.is((await dockerd.docker(['rmi', 'webapp:latest'])).code, 0);
	await upstream.stop();
	const offline = await dockerd.docker(['pull', 'webapp:latest'], 180_000);
	t.is(offline.code, 0, offline.stderr);
	const again = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', 'webapp:latest']);
	t.is(again.stdout.trim(), image.config.digest);
});
