/**
 * Prometheus metrics (prom-client) and the few in-memory facts the
 * dashboard shows. Counters are fed by hooks in the services; gauges are
 * read when scraped.
 */
import client from 'prom-client';

/** `state` is the circuit breaker's; `reachable` says whether the last request got an answer (`lastFailure` why not). */
export type UpstreamHealth = {name: string; url: string; state: string; rateLimitRemaining?: string; rateLimit?: RateLimitGauges; offline: boolean; reachable: boolean; lastFailure?: {at: number; reason: string}};

/** An upstream's pull budget as its last answers said (ratelimit-* headers, Retry-After), and the configured reserve. */
export type RateLimitGauges = {
	limit?: number;
	remaining?: number;
	windowSeconds?: number;
	source?: string;
	/** Seconds the last 429 asked to wait that are still left. */
	retryAfterSeconds: number;
	/** upstreams.NAME.ratelimit_reserve. */
	reserve: number;
	/** Under the reserve (or waiting out a 429): cached tags are served from the cache and checked with HEADs only. */
	short: boolean;
};

export type Gauges = {
	fillsInFlight: () => number;
	storeBytes: () => Promise<{cached: number; pushed: number}>;
	maxSize: number | undefined;
	upstreams: () => UpstreamHealth[];
};

export type RecentPush = {repository: string; tag?: string; digest: string; user: string | null; at: number};

const MAX_RECENT = 20;

export class Metrics {
	readonly registry = new client.Registry();
	readonly requests = this.#counter('registry_mirror_http_requests_total', 'HTTP requests by route, method and status', ['route', 'method', 'status']);
	readonly cache = this.#counter('registry_mirror_cache_requests_total', 'Cached-namespace lookups by kind (blob, manifest) and outcome (hit, miss, joined, revalidated, stale)', ['kind', 'outcome', 'upstream']);
	readonly bytesServed = this.#counter('registry_mirror_served_bytes_total', 'Blob and manifest bytes sent to clients', ['kind']);
	readonly bytesFetched = this.#counter('registry_mirror_upstream_fetched_bytes_total', 'Blob bytes fetched from each upstream', ['upstream']);
	readonly upstreamRequests = this.#counter('registry_mirror_upstream_requests_total', 'Requests sent to each upstream by kind and status (0 = no answer)', ['upstream', 'kind', 'status']);
	readonly upstreamErrors = this.#counter('registry_mirror_upstream_errors_total', 'Upstream requests that failed (unreachable, timeout, 5xx)', ['upstream']);
	readonly upstreamRateLimited = this.#counter('registry_mirror_upstream_rate_limited_total', 'Upstream answers with status 429', ['upstream']);
	readonly fillResumes = this.#counter('registry_mirror_fill_resumes_total', 'Upstream blob bodies that broke and were resumed with a Range request', ['upstream']);
	readonly staleServed = this.#counter('registry_mirror_stale_served_total', 'Manifests served stale because the upstream failed', ['upstream']);
	readonly policyDecisions = this.#counter('registry_mirror_policy_decisions_total', 'Signature policy decisions on manifests served (allowed, denied)', ['upstream', 'decision']);

	/** A counter in this registry. */
	#counter<L extends string>(name: string, help: string, labelNames: readonly L[]): client.Counter<L> {
		return new client.Counter({name, help, labelNames, registers: [this.registry]});
	}

	/** With workers: the exposition for the whole machine (the primary sums every worker's). */
	#machineText: (() => Promise<string>) | undefined;

	readonly pulls = new Map<string, number>();
	readonly recentPushes: RecentPush[] = [];
	readonly startedAt = Date.now();

	constructor(readonly gauges: Gauges) {
		const {registry} = this;
		new client.Gauge({
			name: 'registry_mirror_fills_in_flight',
			help: 'Upstream blob downloads running now',
			registers: [registry],
			collect() {
				this.set(gauges.fillsInFlight());
			},
		});
		new client.Gauge({
			name: 'registry_mirror_store_bytes',
			help: 'Bytes in the store by kind (cached content is evictable, pushed is not)',
			labelNames: ['kind'] as const,
			aggregator: 'max', // every worker reads the same store
			registers: [registry],
			async collect() {
				const bytes = await gauges.storeBytes();
				this.set({kind: 'cached'}, bytes.cached);
				this.set({kind: 'pushed'}, bytes.pushed);
			},
		});
		new client.Gauge({
			name: 'registry_mirror_store_quota_bytes',
			help: 'storage.max_size (0 when there is no quota)',
			aggregator: 'max',
			registers: [registry],
			collect() {
				this.set(gauges.maxSize ?? 0);
			},
		});
		new client.Gauge({
			name: 'registry_mirror_upstream_ratelimit_remaining',
			help: 'The last ratelimit-remaining an upstream sent',
			aggregator: 'min',
			labelNames: ['upstream'] as const,
			registers: [registry],
			collect() {
				for (const upstream of gauges.upstreams()) {
					const remaining = Number.parseInt(upstream.rateLimitRemaining ?? '', 10);
					if (Number.isFinite(remaining)) {
						this.set({upstream: upstream.name}, remaining);
					}
				}
			},
		});
		this.#rateLimitGauge('limit', 'The last ratelimit-limit an upstream sent (pulls per window)', 'max', budget => budget.limit);
		this.#rateLimitGauge('window_seconds', 'The window of an upstream\'s rate limit (w= of ratelimit-limit), seconds', 'max', budget => budget.windowSeconds);
		this.#rateLimitGauge('retry_after_seconds', 'Seconds left of the Retry-After of an upstream\'s last 429 (0 when over)', 'max', budget => budget.retryAfterSeconds);
		this.#rateLimitGauge('reserve', 'upstreams.NAME.ratelimit_reserve: below it, cached tags are only checked with HEADs', 'max', budget => budget.reserve);
		this.#rateLimitGauge('short', '1 while an upstream\'s budget is under its reserve or a 429\'s Retry-After runs', 'max', budget => (budget.short ? 1 : 0));
		new client.Gauge({
			name: 'registry_mirror_upstream_ratelimit_source',
			help: 'docker-ratelimit-source of an upstream\'s last answers (whom its limit counts: an address or an account), as a label; value 1',
			labelNames: ['upstream', 'source'] as const,
			aggregator: 'max',
			registers: [registry],
			collect() {
				this.reset();
				for (const upstream of gauges.upstreams()) {
					if (upstream.rateLimit?.source !== undefined) {
						this.set({upstream: upstream.name, source: upstream.rateLimit.source}, 1);
					}
				}
			},
		});
		new client.Gauge({
			name: 'registry_mirror_upstream_up',
			help: '1 when the upstream circuit is closed, 0 when it is open or half-open',
			aggregator: 'min',
			labelNames: ['upstream'] as const,
			registers: [registry],
			collect() {
				for (const upstream of gauges.upstreams()) {
					this.set({upstream: upstream.name}, upstream.state === 'closed' ? 1 : 0);
				}
			},
		});
		client.collectDefaultMetrics({register: registry, prefix: 'registry_mirror_'});
	}

	/**
	 * In a worker process: answer the primary's requests for this worker's
	 * metrics, and serve `/metrics` as `machineText` gives it (all workers summed).
	 */
	shareWithPrimary(machineText: () => Promise<string>): void {
		client.AggregatorRegistry.setRegistries([this.registry]);
		void new client.AggregatorRegistry(); // installs the worker's listener for the primary's requests
		this.#machineText = machineText;
	}

	/** The Prometheus exposition: this process's, or with workers the machine's. */
	async exposition(): Promise<string> {
		return this.#machineText ? this.#machineText() : this.registry.metrics();
	}

	/** A gauge per upstream of one number of its rate-limit budget; unset while the upstream has not said. */
	#rateLimitGauge(name: string, help: string, aggregator: 'max' | 'min', value: (budget: RateLimitGauges) => number | undefined): void {
		const {gauges} = this;
		new client.Gauge({
			name: `registry_mirror_upstream_ratelimit_${name}`,
			help,
			labelNames: ['upstream'] as const,
			aggregator,
			registers: [this.registry],
			collect() {
				for (const upstream of gauges.upstreams()) {
					const number = upstream.rateLimit ? value(upstream.rateLimit) : undefined;
					if (number !== undefined) {
						this.set({upstream: upstream.name}, number);
					}
				}
			},
		});
	}

	recordPull(repository: string): void {
		this.pulls.set(repository, (this.pulls.get(repository) ?? 0) + 1);
	}

	recordPush(push: RecentPush): void {
		this.recentPushes.unshift(push);
		this.recentPushes.length = Math.min(this.recentPushes.length, MAX_RECENT);
	}

	topImages(count = 10): Array<{repository: string; pulls: number}> {
		return [...this.pulls.entries()]
			.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
			.slice(0, count)
			.map(([repository, pulls]) => ({repository, pulls}));
	}

	/** Sums a counter's values, optionally only those whose labels match. */
	async total(metric: client.Counter, match: Record<string, string> = {}): Promise<number> {
		const {values} = await metric.get();
		return values
			.filter(value => Object.entries(match).every(([key, expected]) => String(value.labels[key]) === expected))
			.reduce((sum, value) => sum + value.value, 0);
	}
}
