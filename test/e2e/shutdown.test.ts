/**
 * SIGTERM (`docker stop`, `systemctl stop`) during a slow cache fill: the mirror
 * exits by itself, with 0, once its grace period is over (before the 10 s after
 * which Docker and systemd SIGKILL), cutting the response still running; the
 * abandoned fill left only a temp file, swept at the next start, and nothing
 * under blobs/; the next pull gets the right bytes.
 */
import {existsSync} from 'node:fs';
import {readdir, stat} from 'node:fs/promises';
import {join} from 'node:path';
import test from 'ava';
import {rawRequest, sha256} from '../helpers/fault-upstream.js';
import {buildImage, pushImage} from '../helpers/images.js';
import {startMirrorProcess} from '../helpers/mirror-process.js';
import {waitFor} from '../helpers/process.js';
import {startReferenceRegistry} from '../helpers/reference-registry.js';
import {startTokenServer} from '../helpers/token-server.js';

async function tmpEntries(dataDir: string): Promise<string[]> {
	return readdir(join(dataDir, 'tmp')).catch(() => []);
}

test('SIGTERM mid-fill: exit 0 after the grace period, the response cut, the temp file swept at the next start, nothing half-written kept', async t => {
	const tokens = await startTokenServer();
	t.teardown(async () => tokens.stop());
	// 3 MiB at 256 KiB/s: the fill needs about 12 s, longer than the 8 s grace.
	const upstream = await startReferenceRegistry({tokenServer: tokens, blobBytesPerSecond: 256 * 1024});
	t.teardown(async () => upstream.stop());
	const image = await buildImage({layers: 1, layerSize: 3 * 1024 * 1024, label: 'shutdown'});
	await pushImage(upstream.url, 'library/slow', 'latest', image);
	const layer = image.layers[0]!;
	const mirror = await startMirrorProcess({upstreams: {'docker.io': {url: upstream.url}}});
	t.teardown(async () => mirror.stop());

	let received = 0;
	const path = `/v2/library/slow/blobs/${layer.digest}`;
	const client = rawRequest(mirror.url, path, {
		timeoutMs: 60_000,
		onData(chunk) {
			received += chunk.length;
		},
	});
	await waitFor(async () => received > 0, 'the first bytes of the fill to reach the client', 30_000);
	await mirror.kill('SIGTERM');
	t.is(mirror.exitCode, 0, `exited by itself with 0:\n${mirror.logs()}`);
	t.regex(mirror.logs(), /grace period over/);

	const cut = await client;
	t.is(cut.status, 200);
	t.false(cut.complete, 'the response still running was cut');
	t.true(cut.body.length > 0 && cut.body.length < layer.bytes.length, `part of the body arrived (${cut.body.length} bytes)`);
	t.deepEqual(cut.body, layer.bytes.subarray(0, cut.body.length), 'what arrived is a correct prefix');

	const hex = layer.digest.slice('sha256:'.length);
	const blobFile = join(mirror.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex);
	t.false(existsSync(blobFile), 'nothing under blobs/');
	const left = await tmpEntries(mirror.dataDir);
	t.true(left.length > 0, 'the abandoned fill left its temp file');
	t.true((await Promise.all(left.map(async entry => (await stat(join(mirror.dataDir, 'tmp', entry))).size))).some(size => size > 0));

	await mirror.restart();
	t.deepEqual(await tmpEntries(mirror.dataDir), [], 'swept at start-up');
	const again = await rawRequest(mirror.url, path, {timeoutMs: 60_000});
	t.is(again.status, 200);
	t.true(again.complete);
	t.is(sha256(again.body), layer.digest, 'the right bytes after the restart');
});
