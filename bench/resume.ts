/**
 * npm run bench:resume — a 1 GiB blob whose upstream connection breaks once
 * at 50 %, 75 % or 90 %, against an unbroken fill: time to the last byte for
 * one client and the bytes the upstream sent. The upstream is the scripted
 * fault upstream of the tests (in this process, on loopback, honouring
 * Range); the mirror is a child process on disk + SQLite.
 *
 * BENCH_RESUME_MB (default 1024) and BENCH_RUNS (default 3) set the size and
 * the runs per case; each run gets a fresh upstream and a fresh mirror.
 */
import {createHash, randomBytes} from 'node:crypto';
import {request} from 'node:http';
import {performance} from 'node:perf_hooks';
import {startFaultUpstream} from '../test/helpers/fault-upstream.js';
import {startMirrorProcess} from '../test/helpers/mirror-process.js';
import {fmtRuns, log, markdownTable, median} from './lib.js';

const size = Number(process.env['BENCH_RESUME_MB'] ?? 1024) * 1024 * 1024;
const runs = Number(process.env['BENCH_RUNS'] ?? 3);
const breaks: Array<number | undefined> = [undefined, 0.5, 0.75, 0.9];

/** GETs `url`, hashing the body; resolves with the seconds to the last byte and the digest. */
async function pull(url: string): Promise<{seconds: number; digest: string; bytes: number}> {
	const started = performance.now();
	return new Promise((resolve, reject) => {
		const hash = createHash('sha256');
		let bytes = 0;
		request(url, response => {
			response.on('data', (chunk: Buffer) => {
				hash.update(chunk);
				bytes += chunk.length;
			});
			response.once('end', () => resolve({seconds: (performance.now() - started) / 1000, digest: `sha256:${hash.digest('hex')}`, bytes}));
			response.once('error', reject);
		})
			.once('error', reject)
			.end();
	});
}

const blob = randomBytes(size);
const rows: string[][] = [];
const unbroken: number[] = [];
for (const at of breaks) {
	const seconds: number[] = [];
	const sent: number[] = [];
	for (let run = 0; run < runs; run++) {
		const upstream = await startFaultUpstream({auth: false});
		const mirror = await startMirrorProcess({upstreams: {fault: {url: upstream.url, timeout: '60s'}}});
		try {
			const digest = upstream.addBlob('bench/big', blob);
			const path = `/v2/bench/big/blobs/${digest}`;
			if (at !== undefined) {
				upstream.setFault(path, {kind: 'reset', afterBytes: Math.floor(size * at), delayMs: 200}, {times: 1, methods: ['GET']});
			}

			const result = await pull(`${mirror.url}${path}`);
			if (result.digest !== digest || result.bytes !== size) {
				throw new Error(`wrong bytes: ${result.bytes} bytes, ${result.digest}`);
			}

			seconds.push(result.seconds);
			sent.push(upstream.bytesSent(path) / size);
			log(`break ${at === undefined ? 'none' : `${at * 100} %`}, run ${run + 1}: ${result.seconds.toFixed(2)} s, upstream sent ${(upstream.bytesSent(path) / size).toFixed(3)}x`);
		} finally {
			await mirror.stop();
			await upstream.stop();
		}
	}

	if (at === undefined) {
		unbroken.push(...seconds);
	}

	rows.push([
		at === undefined ? 'unbroken' : `breaks at ${at * 100} %`,
		fmtRuns(seconds, 2),
		`${(median(seconds) / median(unbroken)).toFixed(2)}x`,
		sent.map(value => `${value.toFixed(3)}x`).join(', '),
	]);
}

process.stdout.write(`\n${size / 1024 / 1024} MiB blob, one client, ${runs} runs per case (fresh upstream and mirror each run)\n\n`);
process.stdout.write(`${markdownTable(['case', 'time to last byte, s (median, min-max)', 'vs unbroken', 'upstream bytes / blob'], rows)}\n`);
