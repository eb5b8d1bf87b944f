/**
 * Resumed fills against the scripted fault upstream, at the sizes where a
 * restart would hurt: a broken upstream connection costs no client its pull
 * and no byte is fetched twice.
 */
import {randomBytes} from 'node:crypto';
import test, {type ExecutionContext} from 'ava';
import {type FaultUpstream, rawRequest, sha256, startFaultUpstream} from '../helpers/fault-upstream.js';
import {type Mirror, startMirror} from '../helpers/mirror.js';

const MiB = 1024 * 1024;

async function setup(t: ExecutionContext, size: number): Promise<{upstream: FaultUpstream; mirror: Mirror; blob: Buffer; digest: string; path: string}> {
	const upstream = await startFaultUpstream();
	t.teardown(async () => upstream.stop());
	const mirror = await startMirror({upstreams: {fault: {url: upstream.url, timeout: '20s'}}});
	t.teardown(async () => mirror.stop());
	const blob = randomBytes(size);
	const digest = upstream.addBlob('team/big', blob);
	return {upstream, mirror, blob, digest, path: `/v2/team/big/blobs/${digest}`};
}

async function pull(mirror: Mirror, path: string) {
	return rawRequest(mirror.url, path, {timeoutMs: 120_000});
}

/*
 * A connection that ends early with a FIN delivers every byte sent before it, so the upstream's byte count is
 * exact. A TCP reset also discards what sat unread in the mirror's receive buffer; those bytes are fetched again
 * (the tests with resets allow for that, bounded).
 */
test('a 32 MiB blob whose upstream connection ends after 20 MiB: one client GET gets the whole blob, the upstream sends it once, the next GET is a hit', async t => {
	const {upstream, mirror, blob, digest, path} = await setup(t, 32 * MiB);
	upstream.setFault(path, {kind: 'short', bytes: 20 * MiB}, {times: 1, methods: ['GET']});
	const first = await pull(mirror, path);
	t.is(first.status, 200);
	t.true(first.complete, first.error ?? 'complete');
	t.is(sha256(first.body), digest);
	t.is(upstream.count({method: 'GET', path}), 2, 'the first answer and one resume');
	t.is(upstream.bytesSent(path), blob.length, '1.0x the blob');
	await mirror.registry.fills.drain();
	const second = await pull(mirror, path);
	t.is(sha256(second.body), digest);
	t.is(upstream.count({method: 'GET', path}), 2, 'a hit');
});

test('three breaks at 8 MiB intervals: four upstream answers, each from where the last stopped, every byte once', async t => {
	const {upstream, mirror, blob, digest, path} = await setup(t, 32 * MiB);
	upstream.setFault(path, {kind: 'short', bytes: 8 * MiB}, {times: 3, methods: ['GET']});
	const response = await pull(mirror, path);
	t.true(response.complete, response.error ?? 'complete');
	t.is(sha256(response.body), digest);
	t.is(upstream.count({method: 'GET', path}), 4);
	t.is(upstream.bytesSent(path), blob.length, '1.0x the blob');
	const ranges = upstream.requests.filter(request => request.path === path && request.method === 'GET').map(request => request.range ?? '');
	t.deepEqual(ranges, ['', `bytes=${8 * MiB}-`, `bytes=${16 * MiB}-`, `bytes=${24 * MiB}-`]);
});

test('four clients streaming the fill when the upstream connection resets after 20 MiB: all four get the whole blob from one resumed fill', async t => {
	const {upstream, mirror, blob, digest, path} = await setup(t, 32 * MiB);
	upstream.setFault(path, {kind: 'reset', afterBytes: 20 * MiB, delayMs: 1000}, {times: 1, methods: ['GET']});
	let streaming = 0;
	const started: Array<() => void> = [];
	const allStreaming = new Promise<void>(resolve => started.push(resolve));
	const clients = Array.from({length: 4}, async () =>
		rawRequest(mirror.url, path, {
			timeoutMs: 120_000,
			onData: (() => {
				let counted = false;
				return () => {
					if (!counted) {
						counted = true;
						if (++streaming === 4) {
							started[0]?.();
						}
					}
				};
			})(),
		}),
	);
	await allStreaming;
	const responses = await Promise.all(clients);
	for (const [index, response] of responses.entries()) {
		t.is(response.status, 200, `client ${index}`);
		t.true(response.complete, `client ${index}: ${response.error ?? 'complete'}`);
		t.is(sha256(response.body), digest, `client ${index}: the right bytes`);
	}

	t.is(upstream.count({method: 'GET', path}), 2, 'one fill: the first answer and one resume');
	// What the reset discarded from the mirror's socket buffers (a few MiB at most) is asked for again.
	const sent = upstream.bytesSent(path);
	t.true(sent >= blob.length && sent < 1.1 * blob.length, `${(sent / blob.length).toFixed(3)}x the blob`);
});
