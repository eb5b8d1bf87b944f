/**
 * Webhook events against the reference registry's own: the same pushes,
 * pulls and deletes go to the mirror and to /usr/bin/docker-registry, both
 * configured to notify one receiver, and the events must carry the same
 * fields (URLs by digest, request and source addresses with their ports).
 */
import test from 'ava';
import {createServer, type IncomingMessage} from 'node:http';
import {hostname} from 'node:os';
import {buildImage, pushImage} from '../helpers/images.js';
import {startMirrorProcess} from '../helpers/mirror-process.js';
import {closeServer, listenLocal, waitFor} from '../helpers/process.js';
import {startReferenceRegistry} from '../helpers/reference-registry.js';

type Event = {
	id: string;
	timestamp: string;
	action: string;
	target: Record<string, unknown>;
	request: {id: string; addr: string; host: string; method: string; useragent: string};
	actor: Record<string, unknown>;
	source: {addr: string; instanceID?: string};
};

test('webhook events match the reference registry: digest URLs that answer, addresses with ports, each failed attempt logged', async t => {
	const received = new Map<string, Event[]>([['/mirror', []], ['/reference', []]]);
	let mirrorCalls = 0;
	const hook = createServer((request: IncomingMessage, response) => {
		const chunks: Buffer[] = [];
		request.on('data', (chunk: Buffer) => chunks.push(chunk));
		request.on('end', () => {
			if (request.url === '/mirror' && ++mirrorCalls <= 2) {
				response.statusCode = 503; // the first two deliveries fail: each attempt is logged, the third gets through
				response.end();
				return;
			}

			received.get(request.url ?? '')?.push(...(JSON.parse(Buffer.concat(chunks).toString('utf8')) as {events: Event[]}).events);
			response.end();
		});
	});
	const hookPort = await listenLocal(hook);
	t.teardown(async () => closeServer(hook));
	const reference = await startReferenceRegistry({notificationUrl: `http://127.0.0.1:${hookPort}/reference`});
	t.teardown(async () => reference.stop());
	const mirror = await startMirrorProcess({
		extra: {notifications: {endpoints: [{name: 'hook', url: `http://127.0.0.1:${hookPort}/mirror`, backoff: '100ms', attempts: 4}]}},
	});
	t.teardown(async () => mirror.stop());

	const image = await buildImage({layers: 2, label: 'webhooks'});
	const layer = image.layers[0]!;
	for (const base of [mirror.url, reference.directUrl]) {
		await pushImage(base, 'private/hooked', '1', image);
		const manifest = await fetch(`${base}/v2/private/hooked/manifests/1`, {headers: {accept: image.mediaType}});
		t.is(manifest.status, 200);
		await manifest.arrayBuffer();
		const blob = await fetch(`${base}/v2/private/hooked/blobs/${layer.digest}`);
		t.is(blob.status, 200);
		await blob.arrayBuffer();
		t.is((await fetch(`${base}/v2/private/hooked/manifests/${image.digest}`, {method: 'DELETE'})).status, 202);
	}

	// Config and layers pushed, the manifest pushed by digest and by tag, manifest and blob pulled, manifest and its tag deleted.
	const expected = 1 + image.layers.length + 2 + 2 + 2;
	await waitFor(async () => [...received.values()].every(events => events.length >= expected), 'the events of both registries', 30_000);

	/** The event with what differs by nature (ids, times, hosts, user agents) taken out. */
	const shape = (event: Event, base: string) => {
		const {url, ...target} = event.target;
		return {action: event.action, target: {...target, ...(url === undefined ? {} : {path: (url as string).replace(base, '')})}, method: event.request.method, actor: event.actor};
	};

	const key = (event: {action: string; target: Record<string, unknown>}) => [event.action, event.target['digest'], event.target['tag'], event.target['path']].join(' ');
	const byKey = (a: {action: string; target: Record<string, unknown>}, b: typeof a) => key(a).localeCompare(key(b));
	const mirrorEvents = received.get('/mirror')!;
	const referenceEvents = received.get('/reference')!;
	t.deepEqual(
		mirrorEvents.map(event => shape(event, mirror.url)).sort(byKey),
		referenceEvents.map(event => shape(event, reference.directUrl)).sort(byKey),
	);

	// The fields in full for one blob push: the URL is the blob's, by digest.
	const blobPush = mirrorEvents.find(event => event.action === 'push' && event.target['digest'] === layer.digest);
	t.like(blobPush?.target, {
		mediaType: 'application/octet-stream',
		digest: layer.digest,
		size: layer.bytes.length,
		length: layer.bytes.length,
		repository: 'private/hooked',
		url: `${mirror.url}/v2/private/hooked/blobs/${layer.digest}`,
	});
	const manifestPush = mirrorEvents.find(event => event.action === 'push' && event.target['tag'] === '1');
	t.like(manifestPush?.target, {tag: '1', url: `${mirror.url}/v2/private/hooked/manifests/${image.digest}`, size: image.manifest.length});

	for (const event of mirrorEvents) {
		t.regex(event.request.addr, /^127\.0\.0\.1:\d+$/, 'request.addr has the client port');
		t.is(event.request.host, `127.0.0.1:${mirror.port}`);
		t.is(event.source.addr, `${hostname()}:${mirror.port}`, 'source.addr is host:port');
		t.regex(event.id, /^[0-9a-f-]{36}$/);
	}

	t.is(new Set(mirrorEvents.map(event => event.source.instanceID)).size, 1);
	t.is(new Set(mirrorEvents.map(event => event.id)).size, mirrorEvents.length, 'each event delivered once');

	// Every pushed blob's URL answers with its bytes afterwards (the manifest's was deleted on purpose).
	for (const event of mirrorEvents.filter(event => event.action === 'push' && event.target['mediaType'] === 'application/octet-stream')) {
		const response = await fetch(String(event.target['url']));
		t.is(response.status, 200, String(event.target['url']));
		t.is(Number(response.headers.get('content-length')), Number(event.target['size']));
		await response.arrayBuffer();
	}

	// The two refused deliveries were each logged when they failed (by one worker: attempts 1 and 2; by two: attempt 1 each).
	const failures = mirror.logs().split('\n').filter(line => line.includes('notification delivery failed'));
	t.is(failures.length, 2, failures.join('\n'));
	for (const line of failures) {
		t.like(JSON.parse(line), {level: 40, endpoint: 'hook', attempts: 4, err: 'answered 503'});
		t.regex(line, /notification delivery failed \(attempt [12] of 4\): retrying/);
	}
});
