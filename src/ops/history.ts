/**
 * The dashboard's charts: the mirror's own counters sampled in memory at an
 * interval (10 s, the last hour by default). Each sample holds the running
 * totals; a chart plots the difference between neighbours. Per process and
 * since its start: nothing is kept across restarts, no external service.
 */
import {type Metrics} from './metrics.js';

export type Sample = {at: number; hits: number; misses: number; servedBytes: number; fetchedBytes: number; upstreamErrors: number};

export async function sampleMetrics(metrics: Metrics, at = Date.now()): Promise<Sample> {
	return {
		at,
		hits: (await metrics.total(metrics.cache, {outcome: 'hit'})) + (await metrics.total(metrics.cache, {outcome: 'revalidated'})),
		misses: (await metrics.total(metrics.cache, {outcome: 'miss'})) + (await metrics.total(metrics.cache, {outcome: 'joined'})),
		servedBytes: await metrics.total(metrics.bytesServed, {kind: 'blob'}),
		fetchedBytes: await metrics.total(metrics.bytesFetched),
		upstreamErrors: await metrics.total(metrics.upstreamErrors),
	};
}

export class History {
	readonly samples: Sample[] = [];
	#timer: NodeJS.Timeout | undefined;

	constructor(
		private readonly metrics: Metrics,
		readonly intervalMs = 10_000,
		readonly keep = 360,
	) {}

	start(): void {
		void this.sample();
		this.#timer = setInterval(() => void this.sample(), this.intervalMs);
		this.#timer.unref();
	}

	async sample(at = Date.now()): Promise<void> {
		this.samples.push(await sampleMetrics(this.metrics, at));
		if (this.samples.length > this.keep) {
			this.samples.splice(0, this.samples.length - this.keep);
		}
	}

	/** The samples with the present appended, so a chart ends now. */
	async series(): Promise<Sample[]> {
		return [...this.samples, await sampleMetrics(this.metrics)];
	}

	stop(): void {
		clearInterval(this.#timer);
	}
}
