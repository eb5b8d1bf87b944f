import test from 'ava';
import {CircuitBreaker} from '../../src/upstream/breaker.js';

/** A breaker with threshold 3, cool-down 1 s doubling up to 4 s, on a clock the test moves. */
function breaker() {
	const clock = {now: 0};
	return {clock, breaker: new CircuitBreaker(3, 1000, 4000, () => clock.now)};
}

test('closed until `threshold` consecutive failures; a success in between starts the count again', t => {
	const {breaker: b} = breaker();
	b.failure();
	b.failure();
	b.success();
	b.failure();
	b.failure();
	t.is(b.state, 'closed');
	t.true(b.allow());
	b.failure();
	t.is(b.state, 'open');
	t.false(b.allow());
});

test('open: refuses until the cool-down is over, then lets one trial through at a time', t => {
	const {breaker: b, clock} = breaker();
	b.failure();
	b.failure();
	b.failure();
	clock.now = 400;
	t.false(b.allow());
	t.is(b.retryInMs(), 600);
	clock.now = 1000;
	t.is(b.retryInMs(), 0);
	t.true(b.allow(), 'the trial');
	t.is(b.state, 'half-open');
	t.false(b.allow(), 'no second request while the trial runs');
});

test('a trial that succeeds closes the circuit and resets the cool-down', t => {
	const {breaker: b, clock} = breaker();
	for (let i = 0; i < 3; i++) {
		b.failure();
	}

	clock.now = 1000;
	t.true(b.allow());
	b.success();
	t.is(b.state, 'closed');
	t.true(b.allow());
	t.true(b.allow());
	for (let i = 0; i < 3; i++) {
		b.failure();
	}

	t.is(b.state, 'open');
	t.is(b.retryInMs(), 1000, 'back to the base cool-down');
});

test('a trial that fails opens the circuit again for twice as long, up to the maximum', t => {
	const {breaker: b, clock} = breaker();
	for (let i = 0; i < 3; i++) {
		b.failure();
	}

	const cooldowns: number[] = [];
	for (let round = 0; round < 4; round++) {
		clock.now += b.retryInMs();
		t.true(b.allow());
		b.failure();
		t.is(b.state, 'open');
		cooldowns.push(b.retryInMs());
	}

	t.deepEqual(cooldowns, [2000, 4000, 4000, 4000]);
});

test('defaults: five failures open the circuit for two seconds', t => {
	let now = 0;
	const b = new CircuitBreaker(undefined, undefined, undefined, () => now);
	for (let i = 0; i < 4; i++) {
		b.failure();
	}

	t.is(b.state, 'closed');
	b.failure();
	t.is(b.state, 'open');
	t.is(b.retryInMs(), 2000);
	now = 2000;
	t.true(b.allow());
});
