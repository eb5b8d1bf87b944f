/**
 * A circuit breaker per upstream: after `threshold` consecutive failures
 * (unreachable, timeouts, 5xx) requests fail at once for a cool-down, so a
 * dead upstream does not make every client wait for a timeout. After the
 * cool-down one trial request goes through; its outcome closes the circuit or
 * opens it again for twice as long (up to `maxCooldownMs`).
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

export class CircuitBreaker {
	#failures = 0;
	#openedAt = 0;
	#cooldownMs: number;
	#trialInFlight = false;
	#state: BreakerState = 'closed';

	constructor(
		private readonly threshold = 5,
		private readonly baseCooldownMs = 2000,
		private readonly maxCooldownMs = 30_000,
		private readonly now: () => number = Date.now,
	) {
		this.#cooldownMs = baseCooldownMs;
	}

	get state(): BreakerState {
		return this.#state;
	}

	/** Whether a request may go out now. */
	allow(): boolean {
		if (this.#state === 'closed') {
			return true;
		}

		if (this.#state === 'open' && this.now() - this.#openedAt >= this.#cooldownMs) {
			this.#state = 'half-open';
		}

		if (this.#state === 'half-open' && !this.#trialInFlight) {
			this.#trialInFlight = true;
			return true;
		}

		return false;
	}

	/** Milliseconds until a trial request is allowed. */
	retryInMs(): number {
		return Math.max(0, this.#openedAt + this.#cooldownMs - this.now());
	}

	success(): void {
		this.#failures = 0;
		this.#trialInFlight = false;
		this.#state = 'closed';
		this.#cooldownMs = this.baseCooldownMs;
	}

	failure(): void {
		this.#failures++;
		if (this.#state === 'half-open') {
			this.#trialInFlight = false;
			this.#cooldownMs = Math.min(this.#cooldownMs * 2, this.maxCooldownMs);
			this.#open();
		} else if (this.#failures >= this.threshold && this.#state === 'closed') {
			this.#open();
		}
	}

	#open(): void {
		this.#state = 'open';
		this.#openedAt = this.now();
	}
}
