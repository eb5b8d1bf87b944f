/**
 * Following another worker's fill through its temp file: the reader gets the
 * bytes as the file grows, the last one only once the blob is committed, and
 * an error (never a short stream that looks whole) when the fill ends without
 * a commit.
 */
import test from 'ava';
import {createHash, randomBytes} from 'node:crypto';
import {appendFile, mkdtemp, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {type Readable} from 'node:stream';
import {FollowedFill} from '../../src/cluster/followed-fill.js';
import {parseDigest} from '../../src/v2/grammar.js';

const sleep = async (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));

async function scratch(t: {teardown(fn: () => Promise<void>): void}): Promise<string> {
	const dir = await mkdtemp(join(tmpdir(), 'followed-fill-'));
	t.teardown(async () => rm(dir, {recursive: true, force: true}));
	return dir;
}

/** Reads `stream` to its end; the bytes so far and the error it ended with, if any. */
async function drain(stream: Readable): Promise<{bytes: Buffer; error?: Error}> {
	const chunks: Buffer[] = [];
	try {
		for await (const chunk of stream) {
			chunks.push(chunk as Buffer);
		}

		return {bytes: Buffer.concat(chunks)};
	} catch (error) {
		return {bytes: Buffer.concat(chunks), error: error as Error};
	}
}

function fakeFill(owner: string) {
	const state = {owner: owner as string | undefined, committed: undefined as number | undefined, released: false};
	return {
		state,
		deps: {
			coordinator: {
				fillOwner: async () => state.owner,
				waitForFill: async (_digest: unknown, ms: number) => sleep(ms),
			},
			committed: async () => state.committed,
		},
	};
}

test('a reader follows the growing file and gets the last byte only once the blob is committed', async t => {
	const dir = await scratch(t);
	const bytes = randomBytes(600_000);
	const digest = parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`);
	const file = join(dir, 'fill.tmp');
	await writeFile(file, bytes.subarray(0, 100_000));
	const {state, deps} = fakeFill('http://127.0.0.1:1');
	const followed = await FollowedFill.open(file, digest, bytes.length, 'http://127.0.0.1:1', deps);
	const reading = drain(followed.createReader());

	await appendFile(file, bytes.subarray(100_000));
	await sleep(100);
	t.is(followed.readable, bytes.length - 1, 'all but the last byte while the blob is not committed');
	t.is(followed.state, 'running');

	state.committed = bytes.length;
	const {bytes: got, error} = await reading;
	t.is(error, undefined);
	t.true(got.equals(bytes));
	t.is(followed.state, 'done');
	t.false(followed.open, 'closed once its reader finished');
});

test('a fill whose worker lets go without a commit fails its readers', async t => {
	const dir = await scratch(t);
	const digest = parseDigest(`sha256:${'a'.repeat(64)}`);
	const file = join(dir, 'fill.tmp');
	await writeFile(file, randomBytes(50_000));
	const {state, deps} = fakeFill('http://127.0.0.1:1');
	const followed = await FollowedFill.open(file, digest, 200_000, 'http://127.0.0.1:1', deps);
	const reading = drain(followed.createReader({start: 10_000, end: 199_999}));
	await sleep(50);
	state.owner = undefined; // killed: the primary freed its lock

	const {bytes, error} = await reading;
	t.regex(error?.message ?? '', /stopped before it was committed/);
	t.is(bytes.length, 40_000, 'what the file held from the range start, and no more');
	t.is(followed.state, 'failed');
});

test('opening a file that is gone throws (the fill ended meanwhile)', async t => {
	const dir = await scratch(t);
	const {deps} = fakeFill('x');
	await t.throwsAsync(FollowedFill.open(join(dir, 'gone.tmp'), parseDigest(`sha256:${'b'.repeat(64)}`), 10, 'x', deps), {code: 'ENOENT'});
});
