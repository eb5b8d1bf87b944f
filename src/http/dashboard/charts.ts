/**
 * Inline SVG line charts rendered on the server from the sampled counters
 * (ops/history.ts): hit ratio, bytes served against bytes fetched, upstream
 * errors, each per sampling interval.
 */
import {type Sample} from '../../ops/history.js';
import {formatBytes} from '../../util/format.js';
import {escape, Html, html} from './layout.js';

type Line = {label: string; color: string; points: Array<{at: number; value: number}>};

const WIDTH = 380;
const HEIGHT = 140;
const PAD = {left: 56, right: 8, top: 10, bottom: 22};

function lineChart(id: string, title: string, lines: Line[], format: (value: number) => string, fixedMax?: number): Html {
	const all = lines.flatMap(line => line.points);
	const first = all.length > 0 ? Math.min(...all.map(point => point.at)) : 0;
	const last = all.length > 0 ? Math.max(...all.map(point => point.at)) : 1;
	const max = fixedMax ?? Math.max(1, ...all.map(point => point.value));
	const x = (at: number) => PAD.left + ((at - first) / Math.max(1, last - first)) * (WIDTH - PAD.left - PAD.right);
	const y = (value: number) => HEIGHT - PAD.bottom - (value / max) * (HEIGHT - PAD.top - PAD.bottom);
	const paths = lines
		.filter(line => line.points.length > 0)
		.map(line => `<polyline fill="none" stroke="${line.color}" stroke-width="1.5" points="${line.points.map(point => `${x(point.at).toFixed(1)},${y(point.value).toFixed(1)}`).join(' ')}"/>`)
		.join('');
	const minutes = Math.round((last - first) / 60_000);
	const legend = lines.map((line, index) => `<text x="${PAD.left + index * 130}" y="${HEIGHT - 4}" font-size="11" fill="${line.color}">■ ${escape(line.label)}</text>`).join('');
	const empty = all.length < 2 ? `<text x="${WIDTH / 2}" y="${HEIGHT / 2}" font-size="12" text-anchor="middle" fill="#777">collecting samples…</text>` : '';
	return new Html(`<figure class="chart" id="${escape(id)}"><figcaption>${escape(title)}${minutes > 0 ? ` <span class="muted">(last ${minutes} min)</span>` : ''}</figcaption>
<svg role="img" aria-label="${escape(title)}" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" xmlns="http://www.w3.org/2000/svg">
<line x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${HEIGHT - PAD.bottom}" stroke="#bbb"/>
<line x1="${PAD.left}" y1="${HEIGHT - PAD.bottom}" x2="${WIDTH - PAD.right}" y2="${HEIGHT - PAD.bottom}" stroke="#bbb"/>
<text x="${PAD.left - 4}" y="${PAD.top + 8}" font-size="10" text-anchor="end">${escape(format(max))}</text>
<text x="${PAD.left - 4}" y="${HEIGHT - PAD.bottom}" font-size="10" text-anchor="end">0</text>
${paths}${legend}${empty}
</svg></figure>`);
}

/** Differences between neighbouring samples: what happened in each interval. */
function deltas(samples: Sample[], pick: (sample: Sample) => number): Array<{at: number; value: number}> {
	const out: Array<{at: number; value: number}> = [];
	for (let index = 1; index < samples.length; index++) {
		out.push({at: samples[index]!.at, value: Math.max(0, pick(samples[index]!) - pick(samples[index - 1]!))});
	}

	return out;
}

export function charts(samples: Sample[]): Html {
	const hits = deltas(samples, sample => sample.hits);
	const misses = deltas(samples, sample => sample.misses);
	const ratio = hits.map((point, index) => {
		const total = point.value + (misses[index]?.value ?? 0);
		return {at: point.at, value: total > 0 ? (100 * point.value) / total : 0};
	});
	return html`<div class="charts">${[
		lineChart('chart-hit-ratio', 'Hit ratio per interval', [{label: 'hits %', color: '#186a3b', points: ratio}], value => `${value.toFixed(0)}%`, 100),
		lineChart(
			'chart-bytes',
			'Bytes served against bytes fetched',
			[
				{label: 'served', color: '#1f5fa8', points: deltas(samples, sample => sample.servedBytes)},
				{label: 'fetched upstream', color: '#c77c0e', points: deltas(samples, sample => sample.fetchedBytes)},
			],
			formatBytes,
		),
		lineChart('chart-errors', 'Upstream errors per interval', [{label: 'errors', color: '#b03a2e', points: deltas(samples, sample => sample.upstreamErrors)}], value => value.toFixed(0)),
	]}</div>`;
}
