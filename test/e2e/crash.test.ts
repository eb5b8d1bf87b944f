/**
 * Crash safety: the mirror runs as a child process and is killed with SIGKILL
 * in the middle of a cache fill and in the middle of a chunked upload. After a
 * restart nothing partial is visible, tmp/ is clean, every file under blobs/
 * hashes to its name, SQLite and the blob tree agree, and the interrupted
 * upload session resumes from what reached the disk. Plus the `verify` command.
 */
import test, {type ExecutionContext} from 'ava';
import Database from 'better-sqlite3';
import {createHash, randomBytes} from 'node:crypto';
import {existsSync} from 'node:fs';
import {cp, readFile, readdir, rm, stat, writeFile} from 'node:fs/promises';
import {request} from 'node:http';
import {join} from 'node:path';
import {type FaultUpstream, type RawResponse, errorCode, rawRequest, sha256, startFaultUpstream} from '../helpers/fault-upstream.js';
import {type MirrorProcess, startMirrorProcess} from '../helpers/mirror-process.js';
import {tempDir, waitFor} from '../helpers/process.js';

async function upstreamWithBlob(t: ExecutionContext, size: number): Promise<{upstream: FaultUpstream; bytes: Buffer; digest: string}> {
	const upstream = await startFaultUpstream();
	t.teardown(async () => upstream.stop());
	const bytes = randomBytes(size);
	const digest = upstream.addBlob('team/app', bytes);
	return {upstream, bytes, digest};
}

async function startMirror(t: ExecutionContext, upstream: FaultUpstream): Promise<MirrorProcess> {
	const mirror = await startMirrorProcess({upstreams: {fault: {url: upstream.url, timeout: '5s'}}});
	t.teardown(async () => mirror.stop());
	return mirror;
}

function blobFile(dataDir: string, digest: string): string {
	const hex = digest.slice('sha256:'.length);
	return join(dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

async function tmpEntries(dataDir: string): Promise<string[]> {
	return readdir(join(dataDir, 'tmp')).catch(() => []);
}

/** Every file under blobs/ hashes to its own name; returns the digests found. */
async function rehashStore(t: ExecutionContext, dataDir: string): Promise<string[]> {
	const found: string[] = [];
	const root = join(dataDir, 'blobs');
	for (const algorithm of await readdir(root).catch(() => [])) {
		for (const shard of await readdir(join(root, algorithm))) {
			for (const name of await readdir(join(root, algorithm, shard))) {
				const bytes = await readFile(join(root, algorithm, shard, name));
				const actual = createHash(algorithm).update(bytes).digest('hex');
				t.is(actual, name, `blobs/${algorithm}/${shard}/${name} holds what its name says`);
				t.is(shard, name.slice(0, 2), `blobs/${algorithm}/${shard}/${name} is in its shard`);
				found.push(`${algorithm}:${name}`);
			}
		}
	}

	return found.sort();
}

/** With the mirror stopped: the blob rows of mirror.db and the files under blobs/ are the same set. */
async function assertStoreAgrees(t: ExecutionContext, dataDir: string): Promise<void> {
	const files = await rehashStore(t, dataDir);
	const db = new Database(join(dataDir, 'mirror.db'), {readonly: true, fileMustExist: true});
	try {
		const rows = (db.prepare('SELECT digest FROM blobs').all() as Array<{digest: string}>).map(row => row.digest).sort();
		t.deepEqual(rows, files, 'SQLite blob rows and blob files agree');
	} finally {
		db.close();
	}
}

/** A response that the mirror's death cut short: its 200 and a correct prefix of the blob, no more. */
function assertCut(t: ExecutionContext, response: RawResponse, expected: Buffer, what: string): void {
	t.is(response.status, 200, `${what}: the headers were out before the kill`);
	t.false(response.complete, `${what}: the body was cut (${response.error ?? 'no error'})`);
	t.true(response.body.length > 0 && response.body.length < expected.length, `${what}: part of the body arrived (${response.body.length} bytes)`);
	t.deepEqual(response.body, expected.subarray(0, response.body.length), `${what}: what arrived is a correct prefix`);
}

test('kill -9 during a slow fill: after restart no partial blob is visible, tmp/ was cleaned, the next pull gets the right bytes', async t => {
	const {upstream, bytes, digest} = await upstreamWithBlob(t, 256 * 1024);
	const path = `/v2/team/app/blobs/${digest}`;
	upstream.setFault(path, {kind: 'slow', chunkSize: 16 * 1024, delayMs: 100}); // ~1.6 s
	const mirror = await startMirror(t, upstream);

	// The kill comes once the fill is writing and the client has its first bytes (so its 200 is out).
	let received = 0;
	const client = rawRequest(mirror.url, path, {
		timeoutMs: 20_000,
		onData(chunk) {
			received += chunk.length;
		},
	});
	await waitFor(async () => {
		for (const entry of await tmpEntries(mirror.dataDir)) {
			if ((await stat(join(mirror.dataDir, 'tmp', entry))).size > 0) {
				return received > 0;
			}
		}

		return false;
	}, 'the fill to start writing and the client to get bytes', 10_000);
	await mirror.kill('SIGKILL');
	const cut = await client;
	assertCut(t, cut, bytes, 'client of the killed mirror');
	t.true((await tmpEntries(mirror.dataDir)).length > 0, 'the kill landed mid-fill (a partial temp file is left)');
	t.false(existsSync(blobFile(mirror.dataDir, digest)), 'nothing under blobs/ yet');

	upstream.clearFaults();
	upstream.resetCounts();
	await mirror.restart();
	t.deepEqual(await tmpEntries(mirror.dataDir), [], 'tmp/ was cleaned at start-up');
	// Nothing of the killed fill is visible: the HEAD asks the upstream (ProxyBlobs.stat), which has the blob.
	const head = await rawRequest(mirror.url, path, {method: 'HEAD'});
	t.is(head.status, 200);
	t.is(head.headers['content-length'], String(bytes.length));
	const again = await rawRequest(mirror.url, path, {timeoutMs: 20_000});
	t.is(again.status, 200);
	t.true(again.complete);
	t.is(sha256(again.body), digest, 'the right bytes after the restart');
	t.is(upstream.count({method: 'GET', path}), 1, 'fetched again from the upstream, once');

	await mirror.stop();
	t.deepEqual(await tmpEntries(mirror.dataDir), []);
	t.true(existsSync(blobFile(mirror.dataDir, digest)));
	await assertStoreAgrees(t, mirror.dataDir);
	const verify = await mirror.command(['verify']);
	t.is(verify.code, 0, `verify agrees: ${verify.stdout}${verify.stderr}`);
});

/** A request whose body is written by hand and never finished, to be cut by the kill. */
function partialRequest(method: string, url: string, location: string, chunk: Buffer, declared: number): {sent: Promise<void>; done: Promise<void>} {
	const target = new URL(location, url);
	let markSent!: () => void;
	const sent = new Promise<void>(resolve => {
		markSent = resolve;
	});
	const done = new Promise<void>(resolve => {
		const req = request(
			{
				host: target.hostname,
				port: target.port,
				method,
				path: `${target.pathname}${target.search}`,
				headers: {'content-type': 'application/octet-stream', 'content-length': String(declared)},
				agent: false,
			},
			res => {
				res.resume();
				res.once('close', () => resolve());
			},
		);
		req.once('error', () => resolve());
		req.once('close', () => resolve());
		req.write(chunk, () => markSent());
		// Never ended: the mirror is killed while it waits for the rest.
	});
	return {sent, done};
}

test('kill -9 during a chunked upload: after restart the session resumes from its Range, which counts every byte that reached the disk, and the digest checks', async t => {
	const {upstream} = await upstreamWithBlob(t, 1024);
	const mirror = await startMirror(t, upstream);
	const blob = randomBytes(192 * 1024);
	const digest = sha256(blob);
	const first = blob.subarray(0, 64 * 1024);

	const start = await rawRequest(mirror.url, '/v2/private/crash/blobs/uploads/', {method: 'POST'});
	t.is(start.status, 202);
	const location = String(start.headers['location'] ?? '');
	t.truthy(location, 'Location of the session');
	const sessionPath = new URL(location, mirror.url);
	const pathOf = (extra = ''): string => `${sessionPath.pathname}${sessionPath.search}${extra}`;

	const patch = await rawRequest(mirror.url, pathOf(), {
		method: 'PATCH',
		headers: {'content-type': 'application/octet-stream', 'content-range': `0-${first.length - 1}`, 'content-length': String(first.length)},
		body: first,
	});
	t.is(patch.status, 202, patch.body.toString());
	t.is(patch.headers['range'], `0-${first.length - 1}`);

	// A second chunk, cut by the kill: 16 KiB of a declared 64 KiB have been sent.
	const second = blob.subarray(first.length, first.length + 16 * 1024);
	const cut = partialRequest('PATCH', mirror.url, location, second, 64 * 1024);
	// And a monolithic upload (POST ?digest=) of another blob, also half sent.
	const mono = randomBytes(128 * 1024);
	const monoDigest = sha256(mono);
	const cutMono = partialRequest('POST', mirror.url, `/v2/private/mono/blobs/uploads/?digest=${monoDigest}`, mono.subarray(0, 32 * 1024), mono.length);
	await Promise.all([cut.sent, cutMono.sent]);
	// The kill comes once the mirror has written all it was sent: the session's file holds both chunks
	// (GET status reads its size), and the monolithic upload's temp file its 32 KiB.
	await waitFor(async () => {
		const status = await rawRequest(mirror.url, pathOf());
		return status.headers['range'] === `0-${first.length + second.length - 1}`;
	}, 'the cut chunk to reach the session file', 10_000);
	await waitFor(async () => {
		for (const entry of await tmpEntries(mirror.dataDir)) {
			if ((await stat(join(mirror.dataDir, 'tmp', entry))).size === 32 * 1024) {
				return true;
			}
		}

		return false;
	}, 'the cut monolithic upload to reach its temp file', 10_000);
	await mirror.kill('SIGKILL');
	await Promise.all([cut.done, cutMono.done]);
	t.false(existsSync(blobFile(mirror.dataDir, digest)), 'no blob before the upload completed');
	t.false(existsSync(blobFile(mirror.dataDir, monoDigest)), 'no blob from the cut monolithic upload');

	await mirror.restart();
	t.deepEqual(await tmpEntries(mirror.dataDir), [], 'tmp/ is clean after the restart');
	// The session survives the restart (its row and its file; the start-up sweep removes only sessions idle for a day)
	// and holds what reached its file: the acknowledged chunk and all 16 KiB of the cut one.
	const status = await rawRequest(mirror.url, pathOf());
	t.is(status.status, 204, `upload status: ${status.status} ${status.body.toString()}`);
	const have = first.length + second.length;
	t.is(status.headers['range'], `0-${have - 1}`);
	const rest = blob.subarray(have);
	const resume = await rawRequest(mirror.url, pathOf(), {
		method: 'PATCH',
		headers: {'content-type': 'application/octet-stream', 'content-range': `${have}-${blob.length - 1}`, 'content-length': String(rest.length)},
		body: rest,
	});
	t.is(resume.status, 202, resume.body.toString());
	t.is(resume.headers['range'], `0-${blob.length - 1}`);
	const next = new URL(String(resume.headers['location'] ?? location), mirror.url);
	next.searchParams.set('digest', digest);
	const put = await rawRequest(mirror.url, `${next.pathname}${next.search}`, {method: 'PUT', headers: {'content-length': '0'}});
	t.is(put.status, 201, put.body.toString());
	t.is(put.headers['docker-content-digest'], digest);

	const get = await rawRequest(mirror.url, `/v2/private/crash/blobs/${digest}`);
	t.is(get.status, 200);
	t.is(sha256(get.body), digest, 'the pushed blob has the right bytes');

	// The cut monolithic upload left nothing visible; pushing it again works.
	const monoHead = await rawRequest(mirror.url, `/v2/private/mono/blobs/${monoDigest}`, {method: 'HEAD'});
	t.is(monoHead.status, 404, 'the half-sent monolithic blob is unknown');
	const monoAgain = await rawRequest(mirror.url, `/v2/private/mono/blobs/uploads/?digest=${monoDigest}`, {
		method: 'POST',
		headers: {'content-type': 'application/octet-stream', 'content-length': String(mono.length)},
		body: mono,
	});
	t.is(monoAgain.status, 201, monoAgain.body.toString());
	t.is(sha256((await rawRequest(mirror.url, `/v2/private/mono/blobs/${monoDigest}`)).body), monoDigest);

	// A wrong digest on a resumed session is refused, not stored.
	const other = await rawRequest(mirror.url, '/v2/private/crash/blobs/uploads/', {method: 'POST'});
	const otherUrl = new URL(String(other.headers['location'] ?? ''), mirror.url);
	otherUrl.searchParams.set('digest', sha256(Buffer.from('something else')));
	const wrong = await rawRequest(mirror.url, `${otherUrl.pathname}${otherUrl.search}`, {
		method: 'PUT',
		headers: {'content-type': 'application/octet-stream', 'content-length': '5'},
		body: Buffer.from('hello'),
	});
	t.is(wrong.status, 400);
	t.is(errorCode(wrong), 'DIGEST_INVALID');

	await mirror.stop();
	await assertStoreAgrees(t, mirror.dataDir);
});

/** The blob rows of mirror.db and the files under blobs/, with the mirror stopped. */
async function storeContents(dataDir: string): Promise<{rows: string[]; files: string[]}> {
	const db = new Database(join(dataDir, 'mirror.db'), {readonly: true, fileMustExist: true});
	try {
		const rows = (db.prepare('SELECT digest FROM blobs').all() as Array<{digest: string}>).map(row => row.digest).sort();
		const files = (await readdir(join(dataDir, 'blobs'), {recursive: true, withFileTypes: true}))
			.filter(entry => entry.isFile())
			.map(entry => entry.name)
			.sort();
		return {rows, files};
	} finally {
		db.close();
	}
}

test('verify: exits 0 on a healthy store, reports a corrupted blob by digest (exit 1), and --delete or its alias --repair removes it', async t => {
	const upstream = await startFaultUpstream();
	t.teardown(async () => upstream.stop());
	const good = randomBytes(32 * 1024);
	const bad = randomBytes(32 * 1024);
	const goodDigest = upstream.addBlob('team/app', good);
	const badDigest = upstream.addBlob('team/app', bad);
	const mirror = await startMirror(t, upstream);
	for (const [digest, bytes] of [[goodDigest, good], [badDigest, bad]] as const) {
		const response = await rawRequest(mirror.url, `/v2/team/app/blobs/${digest}`);
		t.is(sha256(response.body), sha256(bytes));
	}

	await mirror.stop();
	const healthy = await mirror.command(['verify']);
	t.is(healthy.code, 0, `verify on a healthy store: ${healthy.stdout}${healthy.stderr}`);
	t.is(healthy.stdout, 'verified 2 blobs: 0 bad, 0 missing, 0 orphaned\n');

	const file = blobFile(mirror.dataDir, badDigest);
	const corrupted = await readFile(file);
	corrupted[100] = corrupted[100]! ^ 0xff;
	await writeFile(file, corrupted);
	const actual = sha256(corrupted);
	const report = await mirror.command(['verify']);
	t.is(report.code, 1, `verify fails on a corrupted store: ${report.stderr}`);
	// Only the bad digest is reported (the good one appears nowhere), with the hint to remove it.
	t.is(
		report.stdout,
		`bad      ${badDigest} (content is ${actual})\nverified 2 blobs: 1 bad, 0 missing, 0 orphaned\nrun again with --delete to remove them (cached content is fetched again on the next pull)\n`,
	);
	t.true(existsSync(file), 'plain verify removes nothing');

	// `--repair` is an alias of `--delete` (src/main.ts): on the same corrupted store, each removes the bad blob's
	// file and row, keeps the good one, says so the same way, and exits 0.
	const corruptedStore = await tempDir('verify-corrupted-');
	await cp(mirror.dataDir, corruptedStore, {recursive: true});
	const removedReport = `bad      ${badDigest} (content is ${actual}): removed\nverified 2 blobs: 1 bad, 0 missing, 0 orphaned\n`;
	const remaining = {rows: [goodDigest], files: [goodDigest.slice('sha256:'.length)]};
	for (const flag of ['--delete', '--repair']) {
		await rm(mirror.dataDir, {recursive: true, force: true});
		await cp(corruptedStore, mirror.dataDir, {recursive: true});
		t.true(existsSync(file), `${flag}: the corrupted blob is back`);
		const removal = await mirror.command(['verify', flag]);
		t.is(removal.code, 0, `${flag}: ${removal.stderr}`);
		t.is(removal.stdout, removedReport, flag);
		t.deepEqual(await storeContents(mirror.dataDir), remaining, `${flag}: the corrupted blob's file and row are gone, the good blob stays`);
	}

	const after = await mirror.command(['verify']);
	t.is(after.code, 0, `healthy again: ${after.stdout}${after.stderr}`);

	await mirror.restart();
	const refetched = await rawRequest(mirror.url, `/v2/team/app/blobs/${badDigest}`);
	t.is(refetched.status, 200);
	t.is(sha256(refetched.body), badDigest, 'fetched again, with the right bytes');
	await mirror.stop();
	await assertStoreAgrees(t, mirror.dataDir);
});
