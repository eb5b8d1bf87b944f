/**
 * The dashboard's overview at PREFIX/: the counters now, charts of the last
 * hour, upstream health, top images, recent pushes, then any panels other
 * features register (panels.ts). It refreshes itself every 15 seconds.
 */
import {type Sample} from '../../ops/history.js';
import {type Metrics, type UpstreamHealth} from '../../ops/metrics.js';
import {formatBytes} from '../../util/format.js';
import {type MirrorContext} from '../state.js';
import {charts} from './charts.js';
import {type DashboardDeps} from './deps.js';
import {html, page, section, sendPage, table, type Section} from './layout.js';
import {type Panel} from './panels.js';

function percent(part: number, whole: number): string {
	return whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '–';
}

export type DashboardData = {
	hits: number;
	misses: number;
	servedBytes: number;
	fetchedBytes: number;
	cachedBytes: number;
	pushedBytes: number;
	maxSize?: number;
	fillsInFlight: number;
	upstreams: UpstreamHealth[];
	topImages: Array<{repository: string; pulls: number}>;
	recentPushes: Array<{repository: string; tag?: string; digest: string; user: string | null; at: number}>;
	uptimeS: number;
};

export async function collectDashboard(metrics: Metrics): Promise<DashboardData> {
	const store = await metrics.gauges.storeBytes();
	return {
		hits: (await metrics.total(metrics.cache, {outcome: 'hit'})) + (await metrics.total(metrics.cache, {outcome: 'revalidated'})),
		misses: (await metrics.total(metrics.cache, {outcome: 'miss'})) + (await metrics.total(metrics.cache, {outcome: 'joined'})),
		servedBytes: await metrics.total(metrics.bytesServed, {kind: 'blob'}),
		fetchedBytes: await metrics.total(metrics.bytesFetched),
		cachedBytes: store.cached,
		pushedBytes: store.pushed,
		maxSize: metrics.gauges.maxSize,
		fillsInFlight: metrics.gauges.fillsInFlight(),
		upstreams: metrics.gauges.upstreams(),
		topImages: metrics.topImages(10),
		recentPushes: metrics.recentPushes.slice(0, 10),
		uptimeS: Math.round((Date.now() - metrics.startedAt) / 1000),
	};
}

/** What a person should know of an upstream: healthy, unreachable (why, how long ago), or failing fast. */
export function upstreamHealth(upstream: UpstreamHealth, now = Date.now()): string {
	if (upstream.offline) {
		return 'offline (cache only)';
	}

	const failure = upstream.lastFailure;
	const why = failure ? `${failure.reason}, ${Math.max(0, Math.round((now - failure.at) / 1000))} s ago` : '';
	if (upstream.state !== 'closed') {
		return `failing (circuit ${upstream.state}${why ? `; ${why}` : ''})`;
	}

	return upstream.reachable ? 'healthy' : `unreachable (${why})`;
}

/** The overview's own sections, then the panels other features add (panels.ts). */
/** `7 of 100 per 6 h (reserve 20), 429: retry in 30 s, source 203.0.113.9`, or `not reported`. */
function pullBudget(upstream: UpstreamHealth): string {
	const budget = upstream.rateLimit;
	if (budget?.remaining === undefined && !budget?.retryAfterSeconds) {
		return 'not reported';
	}

	const window = budget.windowSeconds === undefined ? '' : ` per ${budget.windowSeconds % 3600 === 0 ? `${budget.windowSeconds / 3600} h` : `${budget.windowSeconds} s`}`;
	return [
		`${budget.remaining ?? '?'}${budget.limit === undefined ? '' : ` of ${budget.limit}`}${window}`,
		budget.reserve > 0 ? ` (reserve ${budget.reserve}${budget.short ? ': short, cached tags checked with HEADs only' : ''})` : '',
		budget.retryAfterSeconds > 0 ? `, 429: retry in ${budget.retryAfterSeconds} s` : '',
		budget.source === undefined ? '' : `, source ${budget.source}`,
	].join('');
}

export function overviewSections(data: DashboardData, samples: Sample[]): Section[] {
	const saved = Math.max(0, data.servedBytes - data.fetchedBytes);
	const disk = data.maxSize ? `${formatBytes(data.cachedBytes)} of ${formatBytes(data.maxSize)} (${percent(data.cachedBytes, data.maxSize)})` : `${formatBytes(data.cachedBytes)} (no quota)`;
	const upstreamRows = data.upstreams.map(upstream => [
		html`${upstream.name}`,
		html`${upstream.url}`,
		html`<span class="${upstream.offline || (upstream.state === 'closed' && upstream.reachable) ? 'ok' : 'bad'}">${upstreamHealth(upstream)}</span>`,
		html`<span class="${upstream.rateLimit?.short ? 'bad' : 'ok'}">${pullBudget(upstream)}</span>`,
	]);
	const topRows = data.topImages.map(image => [html`${image.repository}`, html`${image.pulls}`]);
	const pushRows = data.recentPushes.map(push => [
		html`${push.repository}${push.tag ? `:${push.tag}` : ''}`,
		html`<code>${push.digest.slice(0, 19)}</code>`,
		html`${push.user ?? 'anonymous'}`,
		html`${new Date(push.at).toISOString()}`,
	]);
	return [
		{
			id: 'summary',
			title: 'Now',
			body: html`<div class="cards">
<div class="card" id="hit-ratio">Hit ratio<b>${percent(data.hits, data.hits + data.misses)}</b>${data.hits} hits, ${data.misses} misses</div>
<div class="card" id="bytes-saved">Bytes saved<b>${formatBytes(saved)}</b>served ${formatBytes(data.servedBytes)}, fetched ${formatBytes(data.fetchedBytes)}</div>
<div class="card" id="disk">Disk use<b>${disk}</b>pushed ${formatBytes(data.pushedBytes)} (never evicted)</div>
<div class="card" id="fills">Downloads in flight<b>${data.fillsInFlight}</b>up ${data.uptimeS}s</div>
</div>`,
		},
		{id: 'history', title: 'Over time', body: charts(samples)},
		{id: 'upstreams-section', title: 'Upstreams', body: table(['name', 'url', 'health', 'pull budget (rate limit)'], upstreamRows, 'no upstreams', 'upstreams')},
		{id: 'top-images-section', title: 'Top images', body: table(['repository', 'pulls'], topRows, 'no pulls yet', 'top-images')},
		{id: 'recent-pushes-section', title: 'Recent pushes', body: table(['image', 'digest', 'by', 'when'], pushRows, 'no pushes yet', 'recent-pushes')},
	];
}

export function renderDashboard(base: string, sections: Section[], user?: string | null): string {
	return page({
		base,
		title: 'Overview',
		refresh: 15,
		user,
		body: [...sections.map(part => section(part)), html`<p><a href="${base}/metrics">metrics</a> · <a href="${base}/healthz">healthz</a> · <a href="${base}/readyz">readyz</a></p>`],
	});
}

export function overview(deps: DashboardDeps, panels: readonly Panel[]) {
	return async (ctx: MirrorContext): Promise<void> => {
		const data = await collectDashboard(deps.metrics);
		if (ctx.query['format'] === 'json') {
			ctx.body = data;
			return;
		}

		const extra = (await Promise.all(panels.map(async panel => panel(ctx, deps)))).filter(part => part !== undefined);
		sendPage(ctx, renderDashboard(deps.prefix, [...overviewSections(data, await deps.history.series()), ...extra], ctx.state.user));
	};
}
