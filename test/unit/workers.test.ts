/**
 * The workers' coordination without processes: the primary's LockTable and
 * two WorkerCoordinators joined by in-memory channels that deliver messages
 * asynchronously, as IPC does.
 */
import test from 'ava';
import {EventEmitter} from 'node:events';
import {LockTable, PrimaryLink, WorkerCoordinator, type Channel} from '../../src/cluster/workers.js';
import {parseDigest} from '../../src/v2/grammar.js';

const digest = parseDigest(`sha256:${'a'.repeat(64)}`);

/** Two ends of a channel; a message sent on one arrives at the other on a later tick. */
function pipe(): [Channel, Channel] {
	const left = new EventEmitter();
	const right = new EventEmitter();
	const end = (self: EventEmitter, other: EventEmitter): Channel => ({
		send(message) {
			setImmediate(() => other.emit('message', structuredClone(message)));
			return true;
		},
		on(event, listener) {
			self.on(event, listener);
			return this;
		},
	});
	return [end(left, right), end(right, left)];
}

function machine(questions: Record<string, () => Promise<unknown>> = {}) {
	const table = new LockTable(questions);
	const worker = (id: number) => {
		const [primarySide, workerSide] = pipe();
		table.attach(id, primarySide);
		return new WorkerCoordinator(new PrimaryLink(workerSide), `http://127.0.0.1:${9000 + id}`, 'key');
	};

	return {table, one: worker(1), two: worker(2)};
}

test('one fill lock per digest for the machine; the others learn who holds it, and are woken when it is released', async t => {
	const {one, two} = machine();
	t.true(await one.tryAcquireFill(digest));
	t.false(await two.tryAcquireFill(digest));
	t.false(await one.tryAcquireFill(digest), 'not twice in the worker that holds it');
	t.is(await two.fillOwner(digest), 'http://127.0.0.1:9001');

	const started = Date.now();
	const woken = two.waitForFill(digest, 10_000);
	await one.releaseFill(digest);
	await woken;
	t.true(Date.now() - started < 5000, 'woken by the release, not by the timeout');
	t.is(await two.fillOwner(digest), undefined);
	t.true(await two.tryAcquireFill(digest));
});

test('a worker that exits loses its locks at once: the others are woken and may take the fill', async t => {
	const {table, one, two} = machine();
	t.true(await one.tryAcquireFill(digest));
	const woken = two.waitForFill(digest, 10_000);
	table.exited(1);
	await woken;
	t.is(await two.fillOwner(digest), undefined);
	t.true(await two.tryAcquireFill(digest));
});

test('maintenance runs in one worker at a time: without wait the other skips its turn, with wait it runs after', async t => {
	const {one, two} = machine();
	const order: string[] = [];
	let finish!: () => void;
	const running = one.exclusive(async () => {
		order.push('one starts');
		await new Promise<void>(resolve => {
			finish = resolve;
		});
		order.push('one ends');
		return 'one';
	});
	while (order.length === 0) {
		await new Promise(resolve => setImmediate(resolve));
	}

	t.is(await two.exclusive(async () => 'skipped'), undefined, 'another is at it: no turn');
	const waiting = two.exclusive(async () => {
		order.push('two runs');
		return 'two';
	}, {wait: true});
	finish();
	t.is(await running, 'one');
	t.is(await waiting, 'two');
	t.deepEqual(order, ['one starts', 'one ends', 'two runs']);
});

test('a worker that dies holding the maintenance lock hands it to the next in line', async t => {
	const {table, one, two} = machine();
	void one.exclusive(async () => new Promise(() => undefined)); // never ends: the worker dies in it
	await new Promise(resolve => setTimeout(resolve, 20));
	const waiting = two.exclusive(async () => 'ran', {wait: true});
	await new Promise(resolve => setTimeout(resolve, 20));
	table.exited(1);
	t.is(await waiting, 'ran');
});

test('questions to the primary are answered with what the whole machine has; an unknown one is an error', async t => {
	const [primarySide, workerSide] = pipe();
	const table = new LockTable({metrics: async () => 'summed'});
	table.attach(1, primarySide);
	const link = new PrimaryLink(workerSide);
	t.is(await link.ask('metrics'), 'summed');
	await t.throwsAsync(link.ask('nothing'), {message: /no answer to nothing/});
});
