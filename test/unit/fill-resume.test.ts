/**
 * Resumed fills: when an upstream body breaks or ends early, the fill asks
 * for the rest from the last byte written and its readers never see the
 * break; answers that start elsewhere are skipped into place or refused,
 * and the digest is checked over the whole blob.
 */
import {createHash} from 'node:crypto';
import {mkdtemp, readFile, rm} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import path from 'node:path';
import test, {type ExecutionContext} from 'ava';
import {MAX_RESUMES} from '../../src/fill/fill.js';
import {FillRegistry} from '../../src/fill/registry.js';
import {type FillSource} from '../../src/fill/source.js';
import {FsBlobStore} from '../../src/store/fs/index.js';
import {RegistryError} from '../../src/v2/errors.js';
import {parseDigest} from '../../src/v2/grammar.js';

/** How one upstream answer goes: where its body starts (default: where it was asked from), and where it breaks. */
type Answer = {start?: number; breakAfter?: number; endAfter?: number; size?: number};

const BLOB = Buffer.from(Array.from({length: 300_000}, (_, index) => (index * 31 + 7) % 251));
const DIGEST = parseDigest(`sha256:${createHash('sha256').update(BLOB).digest('hex')}`);

async function setup(t: ExecutionContext, answers: Answer[]) {
	const dir = await mkdtemp(path.join(tmpdir(), 'mirror-resume-'));
	t.teardown(async () => rm(dir, {recursive: true, force: true}));
	const store = new FsBlobStore(dir);
	await store.init();
	const asked: number[] = [];
	let sent = 0;
	const open = async (from: number): Promise<FillSource> => {
		asked.push(from);
		const answer = answers[asked.length - 1] ?? {};
		const start = answer.start ?? from;
		const bytes = BLOB.subarray(start);
		async function* body() {
			for (let offset = 0; offset < bytes.length; offset += 16 * 1024) {
				const chunk = bytes.subarray(offset, Math.min(offset + 16 * 1024, answer.breakAfter ?? answer.endAfter ?? bytes.length, bytes.length));
				if (chunk.length === 0) {
					break;
				}

				sent += chunk.length;
				yield chunk;
			}

			if (answer.breakAfter !== undefined) {
				throw Object.assign(new Error('read ECONNRESET'), {code: 'ECONNRESET'});
			}
		}

		const iterable = body();
		return {size: answer.size ?? BLOB.length, start, body: Object.assign(iterable, {destroy: () => undefined})};
	};

	const fills = new FillRegistry();
	const resumes: number[] = [];
	const {fill} = fills.join(DIGEST, store, open, async () => undefined, {onResume: from => resumes.push(from)});
	return {store, fill, asked, resumes, sent: () => sent};
}

async function readAll(readable: NodeJS.ReadableStream): Promise<Buffer> {
	const chunks: Buffer[] = [];
	for await (const chunk of readable) {
		chunks.push(chunk as Buffer);
	}

	return Buffer.concat(chunks);
}

test('a body that breaks is resumed from the last byte written: the reader gets the whole blob, the upstream sends it once', async t => {
	const {store, fill, asked, resumes, sent} = await setup(t, [{breakAfter: 100_000}, {}]);
	await fill.ready;
	const reader = readAll(fill.createReader());
	await fill.done;
	t.deepEqual(await reader, BLOB);
	t.deepEqual(asked, [0, 100_000], 'the second request asks from byte 100000');
	t.deepEqual(resumes, [100_000]);
	t.is(sent(), BLOB.length, 'every byte came from the upstream once');
	t.deepEqual(await readFile(store.pathOf(DIGEST)), BLOB);
});

test('three breaks: four requests, each from where the last stopped', async t => {
	const {fill, asked, sent} = await setup(t, [{breakAfter: 60_000}, {breakAfter: 60_000}, {breakAfter: 60_000}, {}]);
	await fill.ready;
	const reader = readAll(fill.createReader());
	await fill.done;
	t.deepEqual(await reader, BLOB);
	t.deepEqual(asked, [0, 60_000, 120_000, 180_000]);
	t.is(sent(), BLOB.length);
});

test('a body that ends early (fewer bytes than announced) is resumed too', async t => {
	const {fill, asked} = await setup(t, [{endAfter: 123_456}, {}]);
	await fill.done;
	t.deepEqual(asked, [0, 123_456]);
	t.is(fill.size, BLOB.length);
});

test('an upstream that ignores the range (200 from byte 0) has the known part skipped', async t => {
	const {fill, asked, sent} = await setup(t, [{breakAfter: 100_000}, {start: 0}]);
	await fill.ready;
	const reader = readAll(fill.createReader());
	await fill.done;
	t.deepEqual(await reader, BLOB);
	t.deepEqual(asked, [0, 100_000]);
	t.is(sent(), BLOB.length + 100_000, 'the repeated prefix was read and dropped');
});

test('a range answer that starts before the last byte written is skipped into place', async t => {
	const {fill} = await setup(t, [{breakAfter: 100_000}, {start: 90_000}]);
	await fill.ready;
	const reader = readAll(fill.createReader());
	await fill.done;
	t.deepEqual(await reader, BLOB);
});

test('a range answer that starts past the last byte written fails the fill; nothing is kept', async t => {
	const {store, fill} = await setup(t, [{breakAfter: 100_000}, {start: 150_000}]);
	const error = await t.throwsAsync(fill.done, {instanceOf: RegistryError});
	t.is(error.status, 502);
	t.regex(error.message, /resumed at byte 150000, past the 100000 bytes written/);
	t.is(await store.size(DIGEST), undefined);
});

test('an answer with another size fails the fill', async t => {
	const {fill} = await setup(t, [{breakAfter: 100_000}, {size: BLOB.length + 1}]);
	const error = await t.throwsAsync(fill.done, {instanceOf: RegistryError});
	t.regex(error.message, /changed the blob's size/);
});

test('resumes that bring nothing new stop after three; the reader is cut, not given a short blob', async t => {
	const {fill, asked} = await setup(t, [{breakAfter: 100_000}, {breakAfter: 0}, {breakAfter: 0}, {breakAfter: 0}, {breakAfter: 0}, {}]);
	await fill.ready;
	const reader = readAll(fill.createReader());
	await t.throwsAsync(fill.done, {message: 'read ECONNRESET'});
	await t.throwsAsync(reader);
	t.deepEqual(asked, [0, 100_000, 100_000, 100_000], 'the first request and three idle resumes');
});

test(`at most ${MAX_RESUMES} resumes, even when each makes progress`, async t => {
	const answers = Array.from({length: MAX_RESUMES + 5}, (): Answer => ({breakAfter: 1000}));
	const {fill, asked} = await setup(t, answers);
	await t.throwsAsync(fill.done, {message: 'read ECONNRESET'});
	t.is(asked.length, MAX_RESUMES + 1);
});
