/**
 * The dashboard at PREFIX/: a small page the server renders from its own
 * numbers (no front-end build). It refreshes itself every 15 seconds.
 */
import {type MirrorContext} from './state.js';
import {formatBytes} from '../util/format.js';
import {type Metrics, type UpstreamHealth} from '../ops/metrics.js';

const escape = (text: string) =>
	text.replace(/[&<>"']/g, char => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'})[char]!);

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

export function renderDashboard(data: DashboardData): string {
	const saved = Math.max(0, data.servedBytes - data.fetchedBytes);
	const disk = data.maxSize ? `${formatBytes(data.cachedBytes)} of ${formatBytes(data.maxSize)} (${percent(data.cachedBytes, data.maxSize)})` : `${formatBytes(data.cachedBytes)} (no quota)`;
	const upstreamRows = data.upstreams
		.map(
			upstream => `<tr><td>${escape(upstream.name)}</td><td>${escape(upstream.url)}</td>
			<td class="${upstream.offline || (upstream.state === 'closed' && upstream.reachable) ? 'ok' : 'bad'}">${escape(upstreamHealth(upstream))}</td>
			<td>${escape(upstream.rateLimitRemaining ?? 'not reported')}</td></tr>`,
		)
		.join('');
	const topRows = data.topImages.map(image => `<tr><td>${escape(image.repository)}</td><td>${image.pulls}</td></tr>`).join('') || '<tr><td colspan="2">no pulls yet</td></tr>';
	const pushRows =
		data.recentPushes
			.map(
				push => `<tr><td>${escape(push.repository)}${push.tag ? `:${escape(push.tag)}` : ''}</td><td><code>${escape(push.digest.slice(0, 19))}</code></td>
				<td>${escape(push.user ?? 'anonymous')}</td><td>${new Date(push.at).toISOString()}</td></tr>`,
			)
			.join('') || '<tr><td colspan="4">no pushes yet</td></tr>';
	return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="15">
<title>registry-mirror</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:2rem;color:#222;max-width:70rem}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem}
.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:.8rem 1rem;min-width:12rem}
.card b{display:block;font-size:1.5rem}
table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #eee;padding:.3rem .5rem;text-align:left}
.ok{color:#186a3b}.bad{color:#b03a2e}
</style>
</head>
<body>
<h1>registry-mirror</h1>
<div class="cards">
<div class="card" id="hit-ratio">Hit ratio<b>${percent(data.hits, data.hits + data.misses)}</b>${data.hits} hits, ${data.misses} misses</div>
<div class="card" id="bytes-saved">Bytes saved<b>${formatBytes(saved)}</b>served ${formatBytes(data.servedBytes)}, fetched ${formatBytes(data.fetchedBytes)}</div>
<div class="card" id="disk">Disk use<b>${disk}</b>pushed ${formatBytes(data.pushedBytes)} (never evicted)</div>
<div class="card" id="fills">Downloads in flight<b>${data.fillsInFlight}</b>up ${data.uptimeS}s</div>
</div>
<h2>Upstreams</h2>
<table id="upstreams"><tr><th>name</th><th>url</th><th>health</th><th>rate limit remaining</th></tr>${upstreamRows}</table>
<h2>Top images</h2>
<table id="top-images"><tr><th>repository</th><th>pulls</th></tr>${topRows}</table>
<h2>Recent pushes</h2>
<table id="recent-pushes"><tr><th>image</th><th>digest</th><th>by</th><th>when</th></tr>${pushRows}</table>
<p><a href="metrics">metrics</a> · <a href="healthz">healthz</a> · <a href="readyz">readyz</a></p>
</body>
</html>
`;
}

export function dashboard(metrics: Metrics) {
	return async (ctx: MirrorContext): Promise<void> => {
		const data = await collectDashboard(metrics);
		if (ctx.query['format'] === 'json') {
			ctx.body = data;
			return;
		}

		ctx.type = 'text/html; charset=utf-8';
		ctx.set('Cache-Control', 'no-store');
		ctx.body = renderDashboard(data);
	};
}
