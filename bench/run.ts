/**
 * `npm run bench`: this mirror (with `workers` left at `auto`, one per core,
 * and for comparison with `workers: 1`) against nginx serving the same files
 * statically with as many workers (the ceiling), a plain node:http server
 * with as many processes (same files, layers and manifest), the upstream
 * downloaded directly, and optionally the reference registry in proxy mode;
 * all on 127.0.0.1. Prints the table of issue 14 (figures, references,
 * ratios, goals) and the detailed table of issue 8. See bench/RESULTS.md.
 *
 * Placement: the mirror with `auto` workers, nginx and node:http (several
 * processes each) and their clients are not pinned (taskset over every core);
 * the mirror with `workers: 1` and the reference proxy are pinned to
 * SERVER_CORE with their clients on CLIENT_CORE, as in issue 8.
 *
 * Environment:
 *   BENCH_QUICK=1          quick check of the script (a few minutes): defaults below become
 *                          256 MiB, 1 run, wrk 2 s, idle 10 s, mixed 5 s, 200 cold blobs, 50 cold tags, quiet budget 30 s
 *   BENCH_SIZE_MB=1024     size of the big layer (MiB)
 *   BENCH_RUNS=3           runs per noisy figure (median and min–max; herds run once)
 *   BENCH_IDLE_S=45        idle time before the "after idle" warm pull (same process as the back-to-back one)
 *   BENCH_SKIP_IDLE=1      skip the idle-gap figure
 *   BENCH_MIXED_SECONDS=30 duration of the mixed load (wrk, a Lua script cycling through a list of paths)
 *   BENCH_MIXED_CONNECTIONS=200
 *   BENCH_MIXED_RUNS=3     runs of the mixed load (default BENCH_RUNS)
 *   BENCH_MIXED_LISTS=0    no tags/list requests in the mixed load (default: 1 in 100)
 *   BENCH_SKIP_MIXED=1     skip the mixed load
 *   BENCH_COLD_BLOBS=1000  4 KiB blobs asked for once each (cold) during the mixed load
 *   BENCH_COLD_TAGS=200    tags asked for once each (cold) during the mixed load
 *   BENCH_WAN_MBPS=100     pace of each upstream response (0 = unpaced)
 *   BENCH_WAN_RTT_MS=20    added per upstream request (twice on a new connection)
 *   BENCH_WRK_SECONDS=3    duration of each wrk measurement
 *   BENCH_WRK_CONNECTIONS=8
 *   BENCH_ONLY=upstream,nginx,node,mirror,mirror1   run only some targets (default: these five;
 *                          add `ref` for the reference registry's proxy, which adds minutes)
 *   BENCH_SKIP_HERD=1      skip the herds
 *   BENCH_HERD_ONE=1       also run the herd against the mirror with workers: 1
 *   BENCH_PROFILE=DIR      run this mirror with --cpu-prof into DIR and summarise the profiles
 *                          (workers: 1 files are named by group; with several workers node names them CPU.*.PID.*)
 *   BENCH_OUT=FILE         also write the report (markdown) to FILE
 *   BENCH_PIN=0            do not pin processes to cores
 *   BENCH_MIRROR_ROOT=DIR  benchmark the mirror built from DIR/src (DIR/tsconfig.json) instead of this checkout
 *   BENCH_WAN_DEBUG=1      log every request the WAN throttle forwards (with times)
 *   BENCH_NICE=-10         nice value for the benchmark and everything it starts (root only; 0 = leave it)
 *   BENCH_QUIET=0          do not wait for other processes to go quiet before each measurement
 *   BENCH_QUIET_BUDGET_S=300  most time spent waiting for that, over the whole run
 */
import {execFileSync, spawn} from 'node:child_process';
import {Agent, get as httpGet} from 'node:http';
import {readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {mkdir} from 'node:fs/promises';
import {arch, release, setPriority, totalmem} from 'node:os';
import {join} from 'node:path';
import {performance} from 'node:perf_hooks';
import {startReferenceRegistry} from '../test/helpers/reference-registry.js';
import {startTokenServer} from '../test/helpers/token-server.js';
import {findExecutable, tempDir} from '../test/helpers/process.js';
import {
	CLIENT_CORE,
	type Cores,
	SERVER_CORE,
	childrenOf,
	cpuCount,
	cpuSecondsOf,
	fmt,
	fmtRuns,
	log,
	markdownTable,
	median,
	pinningEnabled,
	ratio,
	repin,
	RssPoller,
	setClientCores,
	sleep,
	TreeRssPoller,
	quietRunner,
	type LoadEntry,
} from './lib.js';
import {download, manyOnce, parallelDownload, wrk, type Download, type WrkResult} from './measure.js';
import {startNginx} from './nginx.js';
import {formatSummary, summarise} from './profile.js';
import {seed, tokenFor, type Seeded} from './seed.js';
import {
	buildMirror,
	type MirrorCommand,
	referenceProxyHas,
	repoRoot,
	type RunningServer,
	startNodeServer,
	startReferenceProxy,
	startThisMirror,
} from './servers.js';
import {startWan, type Wan} from './wan.js';

// --- settings ------------------------------------------------------------------------------

const env = process.env;
const num = (name: string, fallback: number): number => {
	const value = env[name];
	return value === undefined || value === '' ? fallback : Number(value);
};

const QUICK = env['BENCH_QUICK'] === '1';
const SIZE = Math.round(num('BENCH_SIZE_MB', QUICK ? 256 : 1024) * 1024 * 1024);
const RUNS = Math.max(1, num('BENCH_RUNS', QUICK ? 1 : 3));
const HERD = 20;
const SMALL = 200;
const SMALL_SIZE = 64 * 1024;
const PARALLEL = 8;
const WAN_MBPS = num('BENCH_WAN_MBPS', 100);
const WAN_RTT = num('BENCH_WAN_RTT_MS', 20);
const WRK_SECONDS = num('BENCH_WRK_SECONDS', QUICK ? 2 : 3);
const WRK_CONNECTIONS = num('BENCH_WRK_CONNECTIONS', 8);
const ONLY = new Set((env['BENCH_ONLY'] ?? 'upstream,nginx,node,mirror,mirror1').split(',').map(s => s.trim()));
const SKIP_HERD = env['BENCH_SKIP_HERD'] === '1';
const HERD_ONE = env['BENCH_HERD_ONE'] === '1';
const IDLE_S = num('BENCH_IDLE_S', QUICK ? 10 : 45);
const SKIP_IDLE = env['BENCH_SKIP_IDLE'] === '1';
const MIXED_S = num('BENCH_MIXED_SECONDS', QUICK ? 5 : 30);
const MIXED_CONNECTIONS = num('BENCH_MIXED_CONNECTIONS', 200);
const MIXED_RUNS = Math.max(1, num('BENCH_MIXED_RUNS', RUNS));
const SKIP_MIXED = env['BENCH_SKIP_MIXED'] === '1';
const MIXED_LISTS = env['BENCH_MIXED_LISTS'] !== '0';
const COLD_BLOBS = num('BENCH_COLD_BLOBS', QUICK ? 200 : 1000);
const COLD_TAGS = num('BENCH_COLD_TAGS', QUICK ? 50 : 200);
/** Processes of the mirror with `workers: auto` (one per core), of nginx and of the node:http yardstick. */
const WORKERS = cpuCount();
const PROFILE_DIR = env['BENCH_PROFILE'];
const NICE = num('BENCH_NICE', -10);
let niced = false;
/** Herd clients run at nice 19 (the lowest priority), so that their hashing never starves the upstream stack that shares their core. */
const herdNice = (): number => 19 - (niced ? NICE : 0);
let autogroup = false;
const ACCEPT = [
	'application/vnd.docker.distribution.manifest.v2+json',
	'application/vnd.docker.distribution.manifest.list.v2+json',
	'application/vnd.oci.image.manifest.v1+json',
	'application/vnd.oci.image.index.v1+json',
].join(', ');
const MiB = 1024 * 1024;

// --- results -------------------------------------------------------------------------------

type Herd = {upstreamBlobBytes: number; upstreamBlobGets: number; upstreamRequests: number; wallMs: number; medianTtfbMs: number; ok: number; clients: number; peakRssKiB: number; errors: string[]};

type Figures = {
	coldTtfb: number[];
	coldTotal: number[];
	coldUpstreamBytes: number[];
	coldOk: number;
	coldRuns: number;
	warm1: number[];
	warm8: number[];
	herd?: Herd;
	smallCold: number[];
	smallWarmOnce: number[];
	smallWarmWrk: number[];
	smallWarmP99: number[];
	manifestRps: number[];
	manifestP99: number[];
	/** CPU time of the server's processes per request, µs, during the wrk runs. */
	smallCpuUs: number[];
	manifestCpuUs: number[];
	/** Warm pull MB/s right after another, and after BENCH_IDLE_S idle (same process). */
	idleBackToBack: number[];
	idleAfter: number[];
	mixedRps: number[];
	mixedP99: number[];
	mixedP50: number[];
	/** Latencies (ms) of one-at-a-time probe requests of each kind during the mixed load. */
	mixedProbe: Record<string, number[]>;
	mixedP90: number[];
	mixedRssMiB: number[];
	mixedErrors: number[];
	/** Cold blobs + tags the mixed load got from upstream (per run). */
	mixedUpstream: number[];
	/** Worker processes seen under the server's process. */
	workersSeen: number;
	peakRssKiB: number;
	problems: string[];
};

function figures(): Figures {
	return {
		coldTtfb: [],
		coldTotal: [],
		coldUpstreamBytes: [],
		coldOk: 0,
		coldRuns: 0,
		warm1: [],
		warm8: [],
		smallCold: [],
		smallWarmOnce: [],
		smallWarmWrk: [],
		smallWarmP99: [],
		manifestRps: [],
		manifestP99: [],
		smallCpuUs: [],
		manifestCpuUs: [],
		idleBackToBack: [],
		idleAfter: [],
		mixedRps: [],
		mixedP99: [],
		mixedP50: [],
		mixedProbe: {},
		mixedP90: [],
		mixedRssMiB: [],
		mixedErrors: [],
		mixedUpstream: [],
		workersSeen: 0,
		peakRssKiB: 0,
		problems: [],
	};
}

const results = {
	upstream: figures(),
	mirror: figures(),
	mirror1: figures(),
	ref: figures(),
	nginx: figures(),
	node: figures(),
};

function problem(f: Figures, message: string): void {
	f.problems.push(message);
	log(`PROBLEM: ${message}`);
}

// --- cleanup -------------------------------------------------------------------------------

const cleanups: Array<() => Promise<void> | void> = [];
let cleaned = false;
async function cleanup(): Promise<void> {
	if (cleaned) {
		return;
	}

	cleaned = true;
	for (const fn of cleanups.reverse()) {
		try {
			await fn();
		} catch (error) {
			log(`cleanup: ${error instanceof Error ? error.message : String(error)}`);
		}
	}
}

/** The report of what was measured so far (set once the upstream runs), for BENCH_OUT after each phase and on a signal. */
let reportSoFar: ((note: string) => string) | undefined;

function checkpoint(note: string): void {
	if (env['BENCH_OUT'] && reportSoFar) {
		writeFileSync(env['BENCH_OUT'], `${reportSoFar(note)}\n`);
	}
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
	process.once(signal, () => {
		log(`${signal}: stopping`);
		checkpoint(`**Partial: stopped by ${signal} while measuring.**`);
		void cleanup().finally(() => process.exit(130));
	});
}


// --- other load on the machine ---------------------------------------------------------------

const QUIET = env['BENCH_QUIET'] !== '0';
/** Total time the run may spend waiting for a quiet machine: BENCH_QUIET_BUDGET_S, default 300 s. */
const {q, loadLog} = quietRunner({enabled: QUIET, budgetMs: num('BENCH_QUIET_BUDGET_S', QUICK ? 30 : 300) * 1000, maxWaitMs: 60_000, slackMs: 1000});

// --- helpers -------------------------------------------------------------------------------

function blobPath(repo: string, digest: string): string {
	return `/v2/${repo}/blobs/${digest}`;
}

function manifestPath(repo: string, reference: string): string {
	return `/v2/${repo}/manifests/${reference}`;
}

function checkDownload(f: Figures, what: string, d: Download, expected: {bytes: number; digest?: string}): boolean {
	if (d.error || d.status !== 200 || d.bytes !== expected.bytes || (expected.digest !== undefined && d.sha256 !== expected.digest)) {
		problem(f, `${what}: status ${d.status}, ${d.bytes} bytes, ${d.sha256 ?? ''} ${d.error ?? ''}`.trim());
		return false;
	}

	return true;
}

/** Keeps a wrk figure only when every response was a 2xx. */
function recordWrk(f: Figures, what: string, w: WrkResult, rps: number[], p99: number[]): void {
	if (w.non2xx > 0 || !Number.isFinite(w.rps)) {
		problem(f, `${what}: ${w.non2xx} non-2xx responses ${w.socketErrors}`.trim());
		return;
	}

	if (w.socketErrors !== '') {
		problem(f, `${what}: ${w.socketErrors} (figure kept)`);
	}

	rps.push(w.rps);
	p99.push(w.p99Ms);
}

/** wrk via `run`, recorded like recordWrk, plus the CPU time the server's processes (`pid` and its children) used per request, µs. */
async function wrkWithCpu(f: Figures, what: string, pid: number, run: () => Promise<WrkResult>, into: {rps: number[]; p99: number[]; cpuUs: number[]}): Promise<WrkResult> {
	const before = cpuSecondsOf(pid);
	const w = await run();
	const used = cpuSecondsOf(pid) - before;
	recordWrk(f, what, w, into.rps, into.p99);
	if (w.non2xx === 0 && w.requests > 0) {
		into.cpuUs.push((used / w.requests) * 1e6);
	}

	return w;
}

/** Keeps a one-pass figure only when every request succeeded. */
function recordMany(f: Figures, what: string, result: {ok: number; requests: number; rps: number; errors: string[]}, into: number[]): void {
	if (result.ok !== result.requests) {
		problem(f, `${what}: ${result.ok}/${result.requests} ok ${result.errors.join('; ')}`);
		return;
	}

	into.push(result.rps);
}

async function getOk(url: string, headers: Record<string, string> = {}): Promise<void> {
	const response = await fetch(url, {headers});
	await response.arrayBuffer();
	if (response.status !== 200) {
		throw new Error(`GET ${url}: HTTP ${response.status}`);
	}
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
	const deadline = Date.now() + timeoutMs;
	while (!check()) {
		if (Date.now() > deadline) {
			return false;
		}

		await sleep(100);
	}

	return true;
}

function mbps(d: Download): number {
	return d.bytes / d.totalMs / 1000;
}

// --- the phases ----------------------------------------------------------------------------

type Ctx = {seeded: Seeded; wan: Wan; upstream: Awaited<ReturnType<typeof startReferenceRegistry>>; mirrorCommand?: MirrorCommand};

/** Upstream alone: downloads through the same path the mirrors use (cold baseline), then direct (warm). */
async function measureUpstream(ctx: Ctx): Promise<void> {
	const f = results.upstream;
	const {seeded, wan, upstream} = ctx;
	const big = seeded.big;
	// Fresh pull tokens for every measurement: the token server's expire after 5 minutes.
	const bigAuth = async () => ({authorization: `Bearer ${await tokenFor(upstream.directUrl, big.repo)}`, accept: ACCEPT});
	const smallAuth = async () => ({authorization: `Bearer ${await tokenFor(upstream.directUrl, seeded.small.repo)}`});
	const appAuth = async () => ({authorization: `Bearer ${await tokenFor(upstream.directUrl, seeded.app.repo)}`, accept: ACCEPT});

	for (let run = 1; run <= RUNS; run++) {
		log(`upstream: download through the WAN + counting proxy, run ${run}`);
		wan.reset();
		const d = await q('upstream download (WAN)', async () => download(`${wan.url}${blobPath(big.repo, big.digest)}`, {headers: await bigAuth(), prime: `${wan.url}${manifestPath(big.repo, big.tag)}`, hash: true}));
		f.coldRuns++;
		if (checkDownload(f, 'upstream download', d, {bytes: big.size, digest: big.digest})) {
			f.coldOk++;
			f.coldTtfb.push(d.ttfbMs);
			f.coldTotal.push(d.totalMs);
			f.coldUpstreamBytes.push(wan.counts.blobBytes);
		}

		const smallUrls = seeded.small.digests.map(digest => `${wan.url}${blobPath(seeded.small.repo, digest)}`);
		const many = await q('upstream small one pass (WAN)', async () => manyOnce(smallUrls, PARALLEL, await smallAuth()));
		recordMany(f, 'small layers through the WAN', many, f.smallCold);
	}

	// Warm figures straight from the registry (no proxy), the registry moved to the server core meanwhile.
	const registryPid = childrenOf(process.pid).find(pid => {
		try {
			return execFileSync('cat', [`/proc/${pid}/comm`], {encoding: 'utf8'}).trim() === 'docker-registry';
		} catch {
			return false;
		}
	});
	if (registryPid !== undefined) {
		await repin(registryPid, SERVER_CORE);
	}

	const poller = new RssPoller(() => (registryPid === undefined ? [] : [registryPid]));
	try {
		const direct = upstream.directUrl;
		for (let run = 1; run <= RUNS; run++) {
			log(`upstream direct: warm downloads, run ${run}`);
			const one = await q('upstream direct warm 1', async () => download(`${direct}${blobPath(big.repo, big.digest)}`, {headers: await bigAuth()}));
			if (checkDownload(f, 'upstream direct warm', one, {bytes: big.size})) {
				f.warm1.push(mbps(one));
			}

			const eight = await q('upstream direct warm 8', async () => parallelDownload(`${direct}${blobPath(big.repo, big.digest)}`, PARALLEL, {headers: await bigAuth()}));
			if (eight.downloads.map(d => checkDownload(f, 'upstream direct warm x8', d, {bytes: big.size})).every(Boolean)) {
				f.warm8.push(eight.mbps);
			}

			const smallPaths = seeded.small.digests.map(digest => blobPath(seeded.small.repo, digest));
			recordMany(f, 'small layers one pass', await q('upstream direct small one pass', async () => manyOnce(smallPaths.map(p => `${direct}${p}`), PARALLEL, await smallAuth())), f.smallWarmOnce);
			const w = await q('upstream direct small wrk', async () => wrk(direct, {headers: await smallAuth(), seconds: WRK_SECONDS, connections: PARALLEL, paths: smallPaths}));
			recordWrk(f, 'small layers wrk', w, f.smallWarmWrk, f.smallWarmP99);
			const m = await q('upstream direct manifest wrk', async () => wrk(`${direct}${manifestPath(seeded.app.repo, seeded.app.tag)}`, {headers: await appAuth(), seconds: WRK_SECONDS, connections: WRK_CONNECTIONS}));
			recordWrk(f, 'manifest wrk', m, f.manifestRps, f.manifestP99);
		}
	} finally {
		f.peakRssKiB = poller.stop();
		if (registryPid !== undefined) {
			await repin(registryPid, CLIENT_CORE);
		}
	}
}

async function measureNginx(ctx: Ctx): Promise<void> {
	const f = results.nginx;
	const {seeded} = ctx;
	// As many workers as the mirror has, unpinned like it (and so are the clients meanwhile).
	const nginx = await startNginx(seeded.root, {core: 'all', workers: WORKERS, types: {'/manifest': seeded.app.mediaType}});
	setClientCores('all');
	f.workersSeen = nginx.workerPids().length;
	const poller = new TreeRssPoller(() => nginx.server.pid);
	try {
		const bigUrl = `${nginx.url}/big`;
		const smallPaths = seeded.small.digests.map(digest => `/blobs/${digest.slice('sha256:'.length)}`);
		for (let run = 1; run <= RUNS; run++) {
			log(`nginx: run ${run}`);
			const one = await q('nginx warm 1', async () => download(bigUrl));
			if (checkDownload(f, 'nginx warm', one, {bytes: seeded.big.size})) {
				f.warm1.push(mbps(one));
			}

			const eight = await q('nginx warm 8', async () => parallelDownload(bigUrl, PARALLEL));
			if (eight.downloads.map(d => checkDownload(f, 'nginx warm x8', d, {bytes: seeded.big.size})).every(Boolean)) {
				f.warm8.push(eight.mbps);
			}
			recordMany(f, 'small layers one pass', await q('nginx small one pass', async () => manyOnce(smallPaths.map(p => `${nginx.url}${p}`), PARALLEL)), f.smallWarmOnce);
			await q('nginx small wrk', async () =>
				wrkWithCpu(f, 'small layers wrk', nginx.server.pid, async () => wrk(nginx.url, {seconds: WRK_SECONDS, connections: PARALLEL, paths: smallPaths}), {rps: f.smallWarmWrk, p99: f.smallWarmP99, cpuUs: f.smallCpuUs}),
			);
			await q('nginx manifest wrk', async () =>
				wrkWithCpu(f, 'manifest wrk', nginx.server.pid, async () => wrk(`${nginx.url}/manifest`, {seconds: WRK_SECONDS, connections: WRK_CONNECTIONS}), {rps: f.manifestRps, p99: f.manifestP99, cpuUs: f.manifestCpuUs}),
			);
		}

		if (!SKIP_MIXED) {
			// The warm part of the mixed load as static files: is the client or the machine the limit at this many connections?
			log(`nginx: ${MIXED_CONNECTIONS} connections for ${MIXED_S} s over the 64 KiB layers and the manifest`);
			const paths = Array.from({length: 100}, (_, i) => (i % 2 === 0 ? '/manifest' : smallPaths[i % smallPaths.length]!));
			const poller = new TreeRssPoller(() => nginx.server.pid);
			const w = await q('nginx mixed (warm part)', async () => wrk(nginx.url, {seconds: MIXED_S, connections: MIXED_CONNECTIONS, paths, timeoutS: 10}));
			f.mixedRssMiB.push(poller.stop() / 1024);
			f.mixedErrors.push(w.non2xx + socketErrorCount(w.socketErrors));
			if (Number.isFinite(w.rps)) {
				f.mixedRps.push(w.rps);
				f.mixedP99.push(w.p99Ms);
				f.mixedP50.push(w.p50Ms);
				f.mixedP90.push(w.p90Ms);
			}

			log(`nginx: ${fmt(w.rps)} req/s, p50/p90/p99 ${fmt(w.p50Ms, 1)}/${fmt(w.p90Ms, 1)}/${fmt(w.p99Ms, 1)} ms`);
		}

		if (!SKIP_HERD) {
			log(`nginx: herd of ${HERD}`);
			const herdPoller = new TreeRssPoller(() => nginx.server.pid);
			const herd = await q('nginx herd', async () => parallelDownload(bigUrl, HERD, {hash: true, nice: herdNice()}));
			f.herd = herdOf(f, herd.downloads, herd.wallMs, seeded, {blobBytes: 0, blobGets: 0, requests: 0}, herdPoller.stop());
		}
	} finally {
		f.peakRssKiB = poller.stop();
		setClientCores(CLIENT_CORE);
		await nginx.stop();
	}
}

function herdOf(
	f: Figures,
	downloads: Download[],
	wallMs: number,
	seeded: Seeded,
	upstream: {blobBytes: number; blobGets: number; requests: number},
	peakRssKiB: number,
): Herd {
	const ok = downloads.filter(d => !d.error && d.status === 200 && d.bytes === seeded.big.size && d.sha256 === seeded.big.digest).length;
	const errors = downloads.filter(d => d.error || d.status !== 200 || d.sha256 !== seeded.big.digest).map(d => `${d.status} ${d.bytes} ${d.error ?? d.sha256 ?? ''}`);
	if (ok !== downloads.length) {
		problem(f, `herd: ${ok}/${downloads.length} clients got the right bytes; ${errors.slice(0, 3).join('; ')}`);
	}

	return {
		upstreamBlobBytes: upstream.blobBytes,
		upstreamBlobGets: upstream.blobGets,
		upstreamRequests: upstream.requests,
		wallMs,
		medianTtfbMs: median(downloads.map(d => d.ttfbMs)),
		ok,
		clients: downloads.length,
		peakRssKiB,
		errors,
	};
}

/** The plain node:http server: same files and manifest, no framework, stat + createReadStream().pipe(). */
async function measureNode(ctx: Ctx): Promise<void> {
	const f = results.node;
	const {seeded} = ctx;
	const server = await startNodeServer(seeded.root, seeded.app.mediaType, {core: 'all', workers: WORKERS});
	setClientCores('all');
	await sleep(WORKERS > 1 ? 1000 : 0); // the forked processes start listening
	f.workersSeen = childrenOf(server.server.pid).length;
	const poller = new TreeRssPoller(() => server.server.pid);
	try {
		const bigUrl = `${server.url}/big`;
		const smallPaths = seeded.small.digests.map(digest => `/blobs/${digest.slice('sha256:'.length)}`);
		for (let run = 1; run <= RUNS; run++) {
			log(`node:http server: run ${run}`);
			const one = await q('node:http warm 1', async () => download(bigUrl));
			if (checkDownload(f, 'node:http warm', one, {bytes: seeded.big.size})) {
				f.warm1.push(mbps(one));
			}

			const eight = await q('node:http warm 8', async () => parallelDownload(bigUrl, PARALLEL));
			if (eight.downloads.map(d => checkDownload(f, 'node:http warm x8', d, {bytes: seeded.big.size})).every(Boolean)) {
				f.warm8.push(eight.mbps);
			}
			recordMany(f, 'small layers one pass', await q('node:http small one pass', async () => manyOnce(smallPaths.map(p => `${server.url}${p}`), PARALLEL)), f.smallWarmOnce);
			await q('node:http small wrk', async () =>
				wrkWithCpu(f, 'small layers wrk', server.server.pid, async () => wrk(server.url, {seconds: WRK_SECONDS, connections: PARALLEL, paths: smallPaths}), {rps: f.smallWarmWrk, p99: f.smallWarmP99, cpuUs: f.smallCpuUs}),
			);
			await q('node:http manifest wrk', async () =>
				wrkWithCpu(
					f,
					'manifest wrk',
					server.server.pid,
					async () => wrk(`${server.url}${manifestPath(seeded.app.repo, seeded.app.tag)}`, {headers: {accept: ACCEPT}, seconds: WRK_SECONDS, connections: WRK_CONNECTIONS}),
					{rps: f.manifestRps, p99: f.manifestP99, cpuUs: f.manifestCpuUs},
				),
			);
		}
	} finally {
		f.peakRssKiB = poller.stop();
		setClientCores(CLIENT_CORE);
		await server.stop();
	}
}

type Which = 'mirror' | 'mirror1' | 'ref';

const LABELS: Record<Which, string> = {mirror: 'this mirror', mirror1: 'this mirror (workers: 1)', ref: 'reference proxy'};

/** The mirror with `auto` workers runs on every core (and so do its clients); the single-process servers are pinned as in issue 8. */
function placement(which: Which): {server: Cores; clients: Cores} {
	return which === 'mirror' ? {server: 'all', clients: 'all'} : {server: SERVER_CORE, clients: CLIENT_CORE};
}

async function startWhich(which: Which, ctx: Ctx, name: string): Promise<RunningServer> {
	const core = placement(which).server;
	if (which === 'ref') {
		return startReferenceProxy(ctx.wan.url, {core});
	}

	const server = await startThisMirror(ctx.mirrorCommand!, ctx.wan.url, {
		core,
		workers: which === 'mirror1' ? 1 : undefined,
		profileDir: PROFILE_DIR,
		profileName: `${which}-${name}`,
	});
	if (which === 'mirror') {
		// The primary forks the workers; /v2/ answered once the first of them listens.
		await waitUntil(() => childrenOf(server.server.pid).length >= WORKERS, 10_000);
		const f = results[which];
		f.workersSeen = Math.max(f.workersSeen, childrenOf(server.server.pid).length);
	}

	return server;
}

/** Runs `body` against a fresh instance (empty cache); returns the peak of its processes' summed RSS. */
async function withInstance(which: Which, ctx: Ctx, name: string, body: (server: RunningServer) => Promise<void>): Promise<number> {
	const server = await startWhich(which, ctx, name);
	const poller = new TreeRssPoller(() => server.server.pid);
	try {
		await body(server);
	} finally {
		poller.stop();
		await server.stop();
	}

	return poller.peakKiB;
}

/**
 * While `during` runs, asks for one path of each kind in turn, one at a time
 * on a keep-alive connection of its own, and times them: which kind of request
 * the load's latency comes from (wrk gives one histogram for all).
 */
async function probeLatencies<T>(baseUrl: string, kinds: Record<string, string>, headers: Record<string, string>, during: Promise<T>): Promise<{result: T; byKind: Record<string, number[]>}> {
	const agent = new Agent({keepAlive: true, maxSockets: 1});
	const byKind: Record<string, number[]> = Object.fromEntries(Object.keys(kinds).map(kind => [kind, []]));
	let done = false;
	const loop = (async () => {
		while (!done) {
			for (const [kind, path] of Object.entries(kinds)) {
				const started = performance.now();
				const ok = await new Promise<boolean>(resolve => {
					const req = httpGet(`${baseUrl}${path}`, {agent, headers}, res => {
						res.resume();
						res.once('end', () => resolve(res.statusCode === 200));
						res.once('error', () => resolve(false));
					});
					req.once('error', () => resolve(false));
				});
				if (ok && !done) {
					byKind[kind]!.push(performance.now() - started);
				}
			}

			await sleep(20);
		}
	})();
	try {
		return {result: await during, byKind};
	} finally {
		done = true;
		await loop;
		agent.destroy();
	}
}

function percentile(values: number[], p: number): number {
	const sorted = [...values].sort((a, b) => a - b);
	return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `Socket errors: connect 0, read 0, write 0, timeout 0` → their sum. */
function socketErrorCount(text: string): number {
	return [...text.matchAll(/\d+/g)].reduce((sum, match) => sum + Number(match[0]), 0);
}

/**
 * The mixed load's request list, cycled through by wrk: per 100 requests 51
 * manifests (by tag and by digest, within their TTL), 48 warm 64 KiB layers,
 * 1 tag list; over that, each cold blob and each cold tag once, spread evenly
 * over as many requests as the goal's rate gives in the run's time.
 */
function mixedSequence(seeded: Seeded): {paths: string[]; length: number} {
	const manifests = [
		manifestPath(seeded.app.repo, seeded.app.tag),
		manifestPath(seeded.small.repo, seeded.small.tag),
		manifestPath(seeded.big.repo, seeded.big.tag),
		manifestPath(seeded.app.repo, seeded.app.digest),
		manifestPath(seeded.small.repo, seeded.small.manifestDigest),
	];
	const warmBlobs = seeded.small.digests.map(digest => blobPath(seeded.small.repo, digest));
	const lists = [`/v2/${seeded.app.repo}/tags/list`, ...(seeded.tags.tags.length > 0 ? [`/v2/${seeded.tags.repo}/tags/list`] : [])];
	const length = Math.max(1000, 3300 * MIXED_S);
	const paths = Array.from({length}, (_, i) => {
		const slot = i % 25;
		const round = Math.floor(i / 25);
		if (slot < 12) {
			return manifests[(round * 12 + slot) % manifests.length]!;
		}

		if (slot < 24) {
			return warmBlobs[(round * 12 + slot - 12) % warmBlobs.length]!;
		}

		// One request in 100 a tag list (BENCH_MIXED_LISTS=0: none), else a manifest.
		return MIXED_LISTS && round % 4 === 0 ? lists[(round / 4) % lists.length]! : manifests[round % manifests.length]!;
	});
	seeded.cold.digests.forEach((digest, k) => {
		paths[Math.floor(((k + 0.3) * length) / seeded.cold.digests.length)] = blobPath(seeded.cold.repo, digest);
	});
	seeded.tags.tags.forEach((tag, k) => {
		paths[Math.floor(((k + 0.7) * length) / seeded.tags.tags.length)] = manifestPath(seeded.tags.repo, tag);
	});
	return {paths, length};
}

async function measureMirror(which: Which, ctx: Ctx): Promise<void> {
	const f = results[which];
	const label = LABELS[which];
	const {seeded, wan, upstream} = ctx;
	const big = seeded.big;
	const accept = {accept: ACCEPT};
	setClientCores(placement(which).clients);

	for (let run = 1; run <= RUNS; run++) {
		log(`${label}: cold + warm ${fmt(SIZE / MiB)} MiB blob, run ${run}`);
		const rss = await withInstance(which, ctx, `blob-${run}`, async server => {
			wan.reset();
			const cold = await q(`${label} cold`, async () => download(`${server.url}${blobPath(big.repo, big.digest)}`, {headers: accept, prime: `${server.url}${manifestPath(big.repo, big.tag)}`, hash: true}));
			f.coldRuns++;
			if (checkDownload(f, `${label} cold`, cold, {bytes: big.size, digest: big.digest})) {
				f.coldOk++;
				f.coldTtfb.push(cold.ttfbMs);
				f.coldTotal.push(cold.totalMs);
			}

			if (which === 'ref') {
				// It stores the blob in the background while streaming a second copy to the client.
				if (!(await waitUntil(() => referenceProxyHas(server.dataDir, big.digest, big.size), 300_000))) {
					problem(f, 'reference proxy never stored the big blob');
				}
			}

			await sleep(200);
			f.coldUpstreamBytes.push(wan.counts.blobBytes);
			const bigUrl = `${server.url}${blobPath(big.repo, big.digest)}`;
			const one = await q(`${label} warm 1`, async () => download(bigUrl));
			if (checkDownload(f, `${label} warm`, one, {bytes: big.size})) {
				f.warm1.push(mbps(one));
			}

			const eight = await q(`${label} warm 8`, async () => parallelDownload(bigUrl, PARALLEL));
			if (eight.downloads.map(d => checkDownload(f, `${label} warm x8`, d, {bytes: big.size})).every(Boolean)) {
				f.warm8.push(eight.mbps);
			}

			if (which === 'mirror' && !SKIP_IDLE) {
				// The idle gap: a warm pull right after another, then one after BENCH_IDLE_S of nothing, same process.
				log(`${label}: warm pull back to back, then after ${IDLE_S} s idle, run ${run}`);
				await download(bigUrl);
				const b2b = await download(bigUrl);
				if (checkDownload(f, `${label} warm back to back`, b2b, {bytes: big.size})) {
					f.idleBackToBack.push(mbps(b2b));
				}

				await sleep(IDLE_S * 1000);
				const idle = await q(`${label} warm after ${IDLE_S} s idle`, async () => download(bigUrl));
				if (checkDownload(f, `${label} warm after idle`, idle, {bytes: big.size})) {
					f.idleAfter.push(mbps(idle));
				}
			}

			if (wan.counts.blobBytes !== f.coldUpstreamBytes.at(-1)) {
				problem(f, `${label}: warm downloads reached the upstream (${wan.counts.blobBytes - (f.coldUpstreamBytes.at(-1) ?? 0)} more bytes)`);
			}
		});
		f.peakRssKiB = Math.max(f.peakRssKiB, rss);

		log(`${label}: 200 small layers, run ${run}`);
		const rssSmall = await withInstance(which, ctx, `small-${run}`, async server => {
			await getOk(`${server.url}${manifestPath(seeded.small.repo, seeded.small.tag)}`, accept);
			const paths = seeded.small.digests.map(digest => blobPath(seeded.small.repo, digest));
			const cold = await q(`${label} small cold`, async () => manyOnce(paths.map(p => `${server.url}${p}`), PARALLEL));
			recordMany(f, 'small layers cold', cold, f.smallCold);
			if (which === 'ref') {
				const stored = await waitUntil(() => seeded.small.digests.every(digest => smallStored(server.dataDir, digest)), 60_000);
				if (!stored) {
					problem(f, 'reference proxy did not store every small layer');
				}
			}

			const before = wan.counts.blobGets;
			const warm = await q(`${label} small one pass`, async () => manyOnce(paths.map(p => `${server.url}${p}`), PARALLEL));
			recordMany(f, 'small layers one pass', warm, f.smallWarmOnce);
			await q(`${label} small wrk`, async () =>
				wrkWithCpu(f, 'small layers wrk', server.server.pid, async () => wrk(server.url, {seconds: WRK_SECONDS, connections: PARALLEL, paths}), {rps: f.smallWarmWrk, p99: f.smallWarmP99, cpuUs: f.smallCpuUs}),
			);
			if (wan.counts.blobGets !== before) {
				problem(f, `${label}: ${wan.counts.blobGets - before} warm small-layer requests reached the upstream`);
			}
		});
		f.peakRssKiB = Math.max(f.peakRssKiB, rssSmall);

		log(`${label}: manifest by tag within TTL, run ${run}`);
		const rssManifest = await withInstance(which, ctx, `manifest-${run}`, async server => {
			const url = `${server.url}${manifestPath(seeded.app.repo, seeded.app.tag)}`;
			// Once per worker at least, so that each has it in memory before the timing.
			for (let n = 0; n < 4 * WORKERS; n++) {
				await getOk(url, accept);
			}

			const before = wan.counts.manifestRequests;
			const m = await q(`${label} manifest wrk`, async () =>
				wrkWithCpu(f, 'manifest wrk', server.server.pid, async () => wrk(url, {headers: accept, seconds: WRK_SECONDS, connections: WRK_CONNECTIONS}), {
					rps: f.manifestRps,
					p99: f.manifestP99,
					cpuUs: f.manifestCpuUs,
				}),
			);
			if (run === 1) {
				log(`${label}: ${wan.counts.manifestRequests - before} upstream manifest requests during ${m.requests} manifest GETs`);
			}
		});
		f.peakRssKiB = Math.max(f.peakRssKiB, rssManifest);
	}

	if (which === 'mirror' && !SKIP_MIXED) {
		const {paths, length} = mixedSequence(seeded);
		for (let run = 1; run <= MIXED_RUNS; run++) {
			log(`${label}: mixed load, ${MIXED_CONNECTIONS} connections for ${MIXED_S} s (${seeded.cold.digests.length} cold blobs and ${seeded.tags.tags.length} cold tags over ${fmt(length)} requests), run ${run}`);
			const rssMixed = await withInstance(which, ctx, `mixed-${run}`, async server => {
				// Warm: the manifests by tag and digest and the 64 KiB layers, once per worker or more.
				for (const path of paths.slice(0, 25 * 2 * WORKERS)) {
					if (!path.includes(seeded.cold.repo) && !path.includes(seeded.tags.repo)) {
						await getOk(`${server.url}${path}`, accept);
					}
				}

				await manyOnce(seeded.small.digests.map(digest => `${server.url}${blobPath(seeded.small.repo, digest)}`), PARALLEL);
				wan.reset();
				const poller = new TreeRssPoller(() => server.server.pid);
				const kinds = {
					'manifest by tag': manifestPath(seeded.app.repo, seeded.app.tag),
					'64 KiB layer': blobPath(seeded.small.repo, seeded.small.digests[0]!),
					'tags/list': `/v2/${seeded.app.repo}/tags/list`,
				};
				const {result: w, byKind} = await q(`${label} mixed load`, async () =>
					probeLatencies(server.url, kinds, accept, wrk(server.url, {headers: accept, seconds: MIXED_S, connections: MIXED_CONNECTIONS, paths, timeoutS: 10})),
				);
				for (const [kind, times] of Object.entries(byKind)) {
					(f.mixedProbe[kind] ??= []).push(...times);
					log(`${label}: mixed load probe, ${kind}: ${times.length} requests, p50/p99/max ${fmt(percentile(times, 50), 1)}/${fmt(percentile(times, 99), 1)}/${fmt(Math.max(...times), 1)} ms`);
				}
				const rssKiB = poller.stop();
				const errors = w.non2xx + socketErrorCount(w.socketErrors);
				f.mixedErrors.push(errors);
				f.mixedRssMiB.push(rssKiB / 1024);
				f.mixedUpstream.push(wan.counts.blobGets + wan.counts.manifestRequests);
				if (Number.isFinite(w.rps)) {
					f.mixedRps.push(w.rps);
					f.mixedP99.push(w.p99Ms);
					f.mixedP50.push(w.p50Ms);
					f.mixedP90.push(w.p90Ms);
				}

				if (errors > 0) {
					problem(f, `mixed load: ${w.non2xx} non-2xx responses, ${w.socketErrors || 'no socket errors'}`);
				}

				log(`${label}: mixed load ${fmt(w.rps)} req/s, p50/p90/p99 ${fmt(w.p50Ms, 1)}/${fmt(w.p90Ms, 1)}/${fmt(w.p99Ms, 1)} ms, ${fmt(rssKiB / 1024)} MiB, ${errors} errors, ${wan.counts.blobGets} upstream blob GETs and ${wan.counts.manifestRequests} manifest requests`);
			});
			f.peakRssKiB = Math.max(f.peakRssKiB, rssMixed);
		}
	}

	if (!SKIP_HERD && (which !== 'mirror1' || HERD_ONE)) {
		log(`${label}: herd of ${HERD} on the uncached blob`);
		let herdRss = 0;
		herdRss = await withInstance(which, ctx, 'herd', async server => {
			await getOk(`${server.url}${manifestPath(big.repo, big.tag)}`, accept);
			wan.reset();
			upstream.resetCounts();
			const herd = await q(`${label} herd`, async () => parallelDownload(`${server.url}${blobPath(big.repo, big.digest)}`, HERD, {hash: true, nice: herdNice()}));
			await sleep(200);
			f.herd = herdOf(
				f,
				herd.downloads,
				herd.wallMs,
				seeded,
				{blobBytes: wan.counts.blobBytes, blobGets: upstream.count({method: 'GET', kind: 'blob'}), requests: upstream.requests.length},
				0,
			);
		});
		if (f.herd) {
			f.herd.peakRssKiB = herdRss;
		}

		f.peakRssKiB = Math.max(f.peakRssKiB, herdRss);
	}

	setClientCores(CLIENT_CORE);
}

/** The reference proxy keeps blobs under docker/registry/v2/blobs/sha256/xx/HEX/data. */
function smallStored(dataDir: string, digest: string): boolean {
	const hex = digest.slice('sha256:'.length);
	try {
		return readdirSync(join(dataDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex)).includes('data');
	} catch {
		return false;
	}
}

// --- the report ----------------------------------------------------------------------------

/** Where each server and its clients ran. */
function placementText(): string {
	if (!pinningEnabled()) {
		return 'no pinning (fewer than 2 cores or BENCH_PIN=0): every process ran wherever the scheduler put it';
	}

	return [
		`not pinned (\`taskset -c 0-${WORKERS - 1}\`, every core): this mirror with \`workers\` left at \`auto\` (${WORKERS} workers under a primary), nginx with ${WORKERS} workers, the node:http yardstick with ${WORKERS} processes (node:cluster), and the clients (curl, wrk, bench/client.ts) while these ran`,
		`pinned with \`taskset\` as in issue 8: this mirror with \`workers: 1\` and the reference proxy on core ${SERVER_CORE}, their clients on core ${CLIENT_CORE}`,
		`always on core ${CLIENT_CORE}: the bench process (counting proxy and WAN throttle), the token server and the upstream registry (moved to core ${SERVER_CORE} only while its own direct warm figures ran); herd clients at nice 19`,
	].join('; ');
}

/** The table of issue 14: each figure for this mirror (workers auto and 1), the references, the ratio against the goal's reference, the goal, met or not. */
function issue14Report(ctx: {wanDescribe: string; mirrorHow: string}): string {
	const {upstream: up, mirror: mi, mirror1: m1, nginx: ng, node} = results;
	const sizeLabel = SIZE === 1024 * MiB ? '1 GiB' : `${fmt(SIZE / MiB)} MiB`;
	const m = (values: number[]) => median(values);
	const has = (...lists: number[][]) => lists.every(list => list.some(Number.isFinite));
	const s = (values: number[]) => values.map(v => v / 1000);
	const herd = (f: Figures, pick: (h: Herd) => number) => (f.herd ? [pick(f.herd)] : []);
	type Row = {figure: string; mirror: string; one: string; nginx: string; node: string; other: string; ratio: string; goal: string; met: boolean | undefined};
	const v = (values: number[], digits = 0) => fmtRuns(values, digits);
	const rows: Row[] = [];
	const row = (r: Partial<Row> & {figure: string}) => rows.push({mirror: '', one: '', nginx: '', node: '', other: '', ratio: '', goal: '', met: undefined, ...r});
	const atLeast = (a: number[], b: number[], k: number) => (has(a, b) ? m(a) >= k * m(b) : undefined);
	const atMost = (a: number[], b: number[], k: number) => (has(a, b) ? m(a) <= k * m(b) : undefined);
	const under = (a: number[], limit: number) => (has(a) ? m(a) < limit : undefined);

	row({figure: `warm ${sizeLabel} blob, 1 client, MB/s`, mirror: v(mi.warm1), one: v(m1.warm1), nginx: v(ng.warm1), node: v(node.warm1), ratio: `${ratio(m(mi.warm1), m(ng.warm1))} nginx`, goal: '≥ 0.9× nginx', met: atLeast(mi.warm1, ng.warm1, 0.9)});
	row({figure: `warm ${sizeLabel} blob, ${PARALLEL} clients, aggregate MB/s`, mirror: v(mi.warm8), one: v(m1.warm8), nginx: v(ng.warm8), node: v(node.warm8), ratio: `${ratio(m(mi.warm8), m(ng.warm8))} nginx`, goal: '≥ 0.8× nginx', met: atLeast(mi.warm8, ng.warm8, 0.8)});
	row({figure: `warm ${sizeLabel} after ${IDLE_S} s idle, MB/s (same process)`, mirror: v(mi.idleAfter), other: `back to back: ${v(mi.idleBackToBack)}`, ratio: `${ratio(m(mi.idleAfter), m(mi.idleBackToBack))} itself`, goal: 'within 10 % of back to back', met: has(mi.idleAfter, mi.idleBackToBack) ? m(mi.idleAfter) >= 0.9 * m(mi.idleBackToBack) : undefined});
	row({figure: `manifest by tag within TTL, wrk ${WRK_CONNECTIONS} conns, req/s`, mirror: v(mi.manifestRps), one: v(m1.manifestRps), nginx: v(ng.manifestRps), node: v(node.manifestRps), ratio: `${ratio(m(mi.manifestRps), m(node.manifestRps))} node`, goal: '≥ 0.7× node', met: atLeast(mi.manifestRps, node.manifestRps, 0.7)});
	row({figure: 'manifest p99, ms', mirror: v(mi.manifestP99, 2), one: v(m1.manifestP99, 2), nginx: v(ng.manifestP99, 2), node: v(node.manifestP99, 2), goal: '< 5', met: under(mi.manifestP99, 5)});
	row({figure: 'manifest: CPU per request (all processes), µs', mirror: v(mi.manifestCpuUs), one: v(m1.manifestCpuUs), nginx: v(ng.manifestCpuUs), node: v(node.manifestCpuUs), ratio: `${ratio(m(mi.manifestCpuUs), m(node.manifestCpuUs))} node`});
	row({figure: `${SMALL} layers of ${SMALL_SIZE / 1024} KiB, ${PARALLEL} in parallel (wrk ${WRK_SECONDS} s), req/s`, mirror: v(mi.smallWarmWrk), one: v(m1.smallWarmWrk), nginx: v(ng.smallWarmWrk), node: v(node.smallWarmWrk), ratio: `${ratio(m(mi.smallWarmWrk), m(ng.smallWarmWrk))} nginx`, goal: '≥ 0.5× nginx', met: atLeast(mi.smallWarmWrk, ng.smallWarmWrk, 0.5)});
	row({figure: `${SMALL} layers, ${PARALLEL} in parallel, one pass (node client), req/s`, mirror: v(mi.smallWarmOnce), one: v(m1.smallWarmOnce), nginx: v(ng.smallWarmOnce), node: v(node.smallWarmOnce), ratio: `${ratio(m(mi.smallWarmOnce), m(ng.smallWarmOnce))} nginx`});
	row({figure: `${SMALL} layers: CPU per request (all processes), µs`, mirror: v(mi.smallCpuUs), one: v(m1.smallCpuUs), nginx: v(ng.smallCpuUs), node: v(node.smallCpuUs), ratio: `${ratio(m(mi.smallCpuUs), m(ng.smallCpuUs))} nginx`});
	const herdWall = (f: Figures) => herd(f, h => h.wallMs / 1000);
	row({
		figure: `herd: ${HERD} clients on one uncached ${sizeLabel} blob, wall s (upstream blob GETs)`,
		mirror: mi.herd ? `${fmt(mi.herd.wallMs / 1000, 1)} (${mi.herd.upstreamBlobGets} GET${mi.herd.upstreamBlobGets === 1 ? '' : 's'}, ${mi.herd.ok}/${mi.herd.clients} sha256 ok)` : 'n/a',
		one: m1.herd ? `${fmt(m1.herd.wallMs / 1000, 1)} (${m1.herd.upstreamBlobGets} GET)` : '',
		nginx: ng.herd ? `${fmt(ng.herd.wallMs / 1000, 1)} (static floor)` : 'n/a',
		ratio: `${ratio(m(herdWall(mi)), m(herdWall(ng)))} nginx`,
		goal: '≤ 1.25×, still 1 GET',
		met: mi.herd && ng.herd ? mi.herd.wallMs <= 1.25 * ng.herd.wallMs && mi.herd.upstreamBlobGets === 1 && mi.herd.ok === mi.herd.clients : undefined,
	});
	row({
		figure: `cold ${sizeLabel} through the WAN link (${ctx.wanDescribe}): first byte, ms`,
		mirror: v(mi.coldTtfb, 1),
		one: v(m1.coldTtfb, 1),
		other: `direct: ${v(up.coldTtfb, 1)}`,
		ratio: has(mi.coldTtfb, up.coldTtfb) ? `${m(mi.coldTtfb) - m(up.coldTtfb) >= 0 ? '+' : ''}${fmt(m(mi.coldTtfb) - m(up.coldTtfb), 1)} ms` : 'n/a',
		goal: '≤ direct + 10 ms',
		met: has(mi.coldTtfb, up.coldTtfb) ? m(mi.coldTtfb) <= m(up.coldTtfb) + 10 : undefined,
	});
	row({figure: `cold ${sizeLabel} through the WAN link: total, s`, mirror: v(s(mi.coldTotal), 2), one: v(s(m1.coldTotal), 2), other: `direct: ${v(s(up.coldTotal), 2)}`, ratio: `${ratio(m(mi.coldTotal), m(up.coldTotal))} direct`, goal: '≤ 1.05× direct', met: atMost(mi.coldTotal, up.coldTotal, 1.05)});
	row({
		figure: 'peak RSS during the herd (primary + workers), MiB',
		mirror: v(herd(mi, h => h.peakRssKiB / 1024)),
		one: m1.herd ? fmt(m1.herd.peakRssKiB / 1024) : '',
		nginx: v(herd(ng, h => h.peakRssKiB / 1024)),
		goal: '< 200',
		met: under(herd(mi, h => h.peakRssKiB / 1024), 200),
	});
	const mixed = `mixed load, ${MIXED_CONNECTIONS} connections ${MIXED_S} s`;
	const warmOnly = (values: number[], digits = 0) => (has(values) ? `${v(values, digits)} (warm part only)` : '');
	row({figure: `${mixed}: req/s`, mirror: v(mi.mixedRps), nginx: warmOnly(ng.mixedRps), goal: '≥ 3,300', met: has(mi.mixedRps) ? m(mi.mixedRps) >= 3300 : undefined});
	row({figure: `${mixed}: p99, ms`, mirror: v(mi.mixedP99, 1), nginx: warmOnly(ng.mixedP99, 1), goal: '< 100', met: under(mi.mixedP99, 100)});
	row({figure: `${mixed}: p50 / p90, ms`, mirror: `${v(mi.mixedP50, 1)} / ${v(mi.mixedP90, 1)}`, nginx: has(ng.mixedP50) ? `${v(ng.mixedP50, 1)} / ${v(ng.mixedP90, 1)}` : ''});
	for (const [kind, times] of Object.entries(mi.mixedProbe)) {
		row({figure: `${mixed}: probe, ${kind}, one at a time: p50 / p99 / max, ms (${times.length} requests)`, mirror: `${fmt(percentile(times, 50), 1)} / ${fmt(percentile(times, 99), 1)} / ${fmt(Math.max(...times), 1)}`});
	}
	row({figure: `${mixed}: peak RSS (primary + workers), MiB`, mirror: v(mi.mixedRssMiB), nginx: warmOnly(ng.mixedRssMiB), goal: '< 200', met: under(mi.mixedRssMiB, 200)});
	row({figure: `${mixed}: errors (non-2xx + socket errors)`, mirror: v(mi.mixedErrors), goal: '0', met: has(mi.mixedErrors) ? Math.max(...mi.mixedErrors) === 0 : undefined});

	const table = markdownTable(
		['figure', `this mirror (workers: auto = ${mi.workersSeen || WORKERS})`, 'this mirror (workers: 1, pinned)', `nginx static (${WORKERS} workers)`, `plain node:http (${WORKERS} processes)`, 'other reference', 'ratio', 'goal', 'met'],
		rows.map(r => [r.figure, r.mirror, r.one, r.nginx, r.node, r.other, r.ratio.startsWith('n/a') ? 'n/a' : r.ratio, r.goal, r.met === undefined ? (r.goal ? 'n/a' : '') : r.met ? 'yes' : '**no**']),
	);
	const met = rows.filter(r => r.met === true).length;
	const goals = rows.filter(r => r.goal !== '').length;
	const workersNote =
		ONLY.has('mirror') && mi.workersSeen !== WORKERS ? ` **The mirror had ${mi.workersSeen} worker processes, not ${WORKERS}.**` : '';
	return [
		`## Issue 14: hits at the machine's limit`,
		'',
		`- date: ${new Date().toISOString()}; ${RUNS} run(s) per figure (median, min–max in brackets when more than one); idle gap ${IDLE_S} s; mixed load ${MIXED_RUNS} run(s); herds once`,
		`- machine: ${cpuCount()} cores (${cpuModel()}), node ${process.version}; this mirror: ${sourceVersion()}, ${ctx.mirrorHow || 'not built'}, log level warn, memory cache at its defaults${workersNote}`,
		`- placement: ${placementText()}`,
		`- CPU per request: user + system time of the server's processes (primary and workers, nginx's master and workers) from /proc/PID/stat over the wrk run, divided by its requests`,
		`- mixed load: wrk -t1, ${MIXED_CONNECTIONS} connections, ${MIXED_S} s, a Lua script cycling through a list of paths: per 100 requests ${MIXED_LISTS ? '51' : '52'} manifests (3 by tag, 2 by digest, within the TTL), 48 of the 200 warm 64 KiB layers${MIXED_LISTS ? ', 1 tags/list (of bench/app and of the repository of the cold tags in turn)' : ''}; over that, ${COLD_BLOBS} uncached 4 KiB blobs and ${COLD_TAGS} uncached tags, each once, spread over ${fmt(Math.max(1000, 3300 * MIXED_S))} requests (what the goal's rate gives in ${MIXED_S} s); fresh process and empty cache per run, manifests and layers warmed first; upstream requests it caused per run: ${v(mi.mixedUpstream)}`,
		`- ${met} of ${goals} goals met`,
		'',
		table,
	].join('\n');
}

type Cell = {values: number[]; digits?: number};

function report(ctx: {wanDescribe: string; mirrorHow: string; seconds: number}): string {
	const {upstream: up, mirror: mi, ref, nginx: ng, node} = results;
	const gib = SIZE / (1024 * MiB);
	const sizeLabel = SIZE === 1024 * MiB ? '1 GiB' : `${fmt(SIZE / MiB)} MiB`;
	const s = (values: number[]) => values.map(v => v / 1000);
	const herd = (f: Figures, pick: (h: Herd) => number) => (f.herd ? [pick(f.herd)] : []);
	const herdText = (f: Figures, pick: (h: Herd) => string) => (f.herd ? pick(f.herd) : 'n/a');
	const rss = (f: Figures) => (f.peakRssKiB > 0 ? [f.peakRssKiB / 1024] : []);

	type Row = {
		metric: string;
		cells: [Cell | string, Cell | string, Cell | string, Cell | string, Cell | string];
		/** Ratio of this mirror's median to the reference proxy's and to nginx's (or to the yardstick given). */
		vsRef?: boolean;
		vsNginx?: boolean;
		target?: string;
		met?: boolean | undefined;
	};

	const m = (values: number[]) => median(values);
	const c = (values: number[], digits = 0): Cell => ({values, digits});
	const na = 'n/a';

	const coldTtfbMet = mi.coldTtfb.length && up.coldTtfb.length ? m(mi.coldTtfb) <= m(up.coldTtfb) + 10 : undefined;
	const coldTotalMet = mi.coldTotal.length && up.coldTotal.length ? m(mi.coldTotal) <= 1.05 * m(up.coldTotal) : undefined;
	const warm1Met = mi.warm1.length && ng.warm1.length ? m(mi.warm1) >= 0.8 * m(ng.warm1) : undefined;
	const warm8Met = mi.warm8.length && ng.warm8.length ? m(mi.warm8) >= 0.8 * m(ng.warm8) : undefined;
	const herdBytesMet = mi.herd ? mi.herd.upstreamBlobBytes === SIZE : undefined;
	const herdTtfbMet = mi.herd ? mi.herd.medianTtfbMs < 500 : undefined;
	const herdWallMet = mi.herd && ng.herd ? mi.herd.wallMs <= 1.25 * ng.herd.wallMs : undefined;
	const herdOkMet = mi.herd ? mi.herd.ok === mi.herd.clients : undefined;
	const manifestMet = mi.manifestRps.length && node.manifestRps.length ? m(mi.manifestRps) >= 0.7 * m(node.manifestRps) : undefined;
	const p99Met = mi.manifestP99.length ? m(mi.manifestP99) < 20 : undefined;
	const smallMet = mi.smallWarmWrk.length && ng.smallWarmWrk.length ? m(mi.smallWarmWrk) >= 0.5 * m(ng.smallWarmWrk) : undefined;
	const rssMet = mi.herd ? mi.herd.peakRssKiB / 1024 < 200 : undefined;

	const rows: Row[] = [
		{metric: `cold miss ${sizeLabel}: time to first byte, ms`, cells: [c(up.coldTtfb, 1), c(mi.coldTtfb, 1), c(ref.coldTtfb, 1), na, na], vsRef: true, target: '≤ upstream + 10 ms', met: coldTtfbMet},
		{metric: `cold miss ${sizeLabel}: total, s`, cells: [c(s(up.coldTotal), 2), c(s(mi.coldTotal), 2), c(s(ref.coldTotal), 2), na, na], vsRef: true, target: '≤ 1.05× upstream', met: coldTotalMet},
		{metric: 'cold miss: blob bytes fetched from upstream, × blob', cells: [c(up.coldUpstreamBytes.map(b => b / SIZE), 2), c(mi.coldUpstreamBytes.map(b => b / SIZE), 2), c(ref.coldUpstreamBytes.map(b => b / SIZE), 2), na, na], vsRef: true},
		{metric: 'warm hit, 1 client, MB/s', cells: [c(up.warm1), c(mi.warm1), c(ref.warm1), c(ng.warm1), c(node.warm1)], vsRef: true, vsNginx: true, target: '≥ 0.8× nginx', met: warm1Met},
		{metric: `warm hit, ${PARALLEL} clients, aggregate MB/s`, cells: [c(up.warm8), c(mi.warm8), c(ref.warm8), c(ng.warm8), c(node.warm8)], vsRef: true, vsNginx: true, target: '≥ 0.8× nginx', met: warm8Met},
		{metric: `herd of ${HERD}: blob bytes from upstream, × blob`, cells: [na, c(herd(mi, h => h.upstreamBlobBytes / SIZE), 2), c(herd(ref, h => h.upstreamBlobBytes / SIZE), 2), '0 (static)', na], vsRef: true, target: 'exactly 1×', met: herdBytesMet},
		{metric: `herd of ${HERD}: upstream blob GETs / all upstream requests`, cells: [na, herdText(mi, h => `${h.upstreamBlobGets} / ${h.upstreamRequests}`), herdText(ref, h => `${h.upstreamBlobGets} / ${h.upstreamRequests}`), na, na]},
		{metric: `herd of ${HERD}: wall time, s`, cells: [na, c(herd(mi, h => h.wallMs / 1000), 2), c(herd(ref, h => h.wallMs / 1000), 2), c(herd(ng, h => h.wallMs / 1000), 2), na], vsRef: true, vsNginx: true, target: '≤ 1.25× nginx', met: herdWallMet},
		{metric: `herd of ${HERD}: median time to first byte, ms`, cells: [na, c(herd(mi, h => h.medianTtfbMs), 1), c(herd(ref, h => h.medianTtfbMs), 1), c(herd(ng, h => h.medianTtfbMs), 1), na], vsRef: true, vsNginx: true, target: '< 500 ms', met: herdTtfbMet},
		{metric: `herd of ${HERD}: clients with the right sha256`, cells: [na, herdText(mi, h => `${h.ok}/${h.clients}`), herdText(ref, h => `${h.ok}/${h.clients}`), herdText(ng, h => `${h.ok}/${h.clients}`), na], target: 'all', met: herdOkMet},
		{metric: `${SMALL} small layers, ${PARALLEL} parallel, cold (one pass), req/s`, cells: [c(up.smallCold), c(mi.smallCold), c(ref.smallCold), na, na], vsRef: true},
		{metric: `${SMALL} small layers, ${PARALLEL} parallel, warm (one pass, node client), req/s`, cells: [c(up.smallWarmOnce), c(mi.smallWarmOnce), c(ref.smallWarmOnce), c(ng.smallWarmOnce), c(node.smallWarmOnce)], vsRef: true, vsNginx: true},
		{metric: `${SMALL} small layers, ${PARALLEL} connections, warm (wrk ${WRK_SECONDS} s), req/s`, cells: [c(up.smallWarmWrk), c(mi.smallWarmWrk), c(ref.smallWarmWrk), c(ng.smallWarmWrk), c(node.smallWarmWrk)], vsRef: true, vsNginx: true, target: '≥ 0.5× nginx', met: smallMet},
		{metric: 'small layers warm (wrk): p99, ms', cells: [c(up.smallWarmP99, 2), c(mi.smallWarmP99, 2), c(ref.smallWarmP99, 2), c(ng.smallWarmP99, 2), c(node.smallWarmP99, 2)], vsRef: true, vsNginx: true},
		{metric: `manifest by tag within TTL (wrk, ${WRK_CONNECTIONS} conns), req/s`, cells: [c(up.manifestRps), c(mi.manifestRps), c(ref.manifestRps), c(ng.manifestRps), c(node.manifestRps)], vsRef: true, vsNginx: true, target: '≥ 0.7× node:http', met: manifestMet},
		{metric: 'manifest by tag within TTL: p99, ms', cells: [c(up.manifestP99, 2), c(mi.manifestP99, 2), c(ref.manifestP99, 2), c(ng.manifestP99, 2), c(node.manifestP99, 2)], vsRef: true, vsNginx: true, target: '< 20 ms', met: p99Met},
		{metric: `peak RSS while serving the herd, MiB`, cells: [na, c(herd(mi, h => h.peakRssKiB / 1024)), c(herd(ref, h => h.peakRssKiB / 1024)), c(herd(ng, h => h.peakRssKiB / 1024)), na], vsRef: true, vsNginx: true, target: '< 200 MiB', met: rssMet},
		{metric: 'peak RSS over all its runs, MiB', cells: [c(rss(up)), c(rss(mi)), c(rss(ref)), c(rss(ng)), c(rss(node))], vsRef: true, vsNginx: true},
	];

	const text = (cell: Cell | string): string => (typeof cell === 'string' ? cell : fmtRuns(cell.values, cell.digits ?? 0));
	const med = (cell: Cell | string): number => (typeof cell === 'string' ? Number.NaN : median(cell.values));
	const manifestRow = (row: Row) => row.metric.startsWith('manifest');
	const table = markdownTable(
		['metric', 'upstream (registry)', `this mirror (workers: auto = ${WORKERS})`, 'reference proxy', `nginx static (${WORKERS} workers)`, `node:http (plain, ${WORKERS} processes)`, 'mirror ÷ ref', 'mirror ÷ nginx (÷ node:http for manifests)', 'target (issue 8)', 'met'],
		rows.map(row => [
			row.metric,
			...row.cells.map(text),
			row.vsRef ? ratio(med(row.cells[1]), med(row.cells[2])) : '',
			row.vsNginx ? ratio(med(row.cells[1]), manifestRow(row) ? med(row.cells[4]) : med(row.cells[3])) : '',
			row.target ?? '',
			row.met === undefined ? (row.target ? 'n/a' : '') : row.met ? 'yes' : '**no**',
		]),
	);

	const pin = placementText();
	const noisy = loadLog.filter(entry => entry.foreign > 0.15);
	const worst = loadLog.reduce<LoadEntry | undefined>((max, entry) => (max === undefined || entry.foreign > max.foreign ? entry : max), undefined);
	const steal = loadLog.reduce((max, entry) => Math.max(max, entry.steal), 0);
	const loadText = [
		`Other load on the machine (CPU used by processes outside the benchmark while a figure was measured; ${QUIET ? 'each measurement first waited for under 0.1 core of it' : 'no waiting (BENCH_QUIET=0)'}):`,
		`${loadLog.length} measurements; worst ${worst ? `${fmt(worst.foreign, 2)} cores during "${worst.label}"` : 'n/a'}; highest steal ${fmt(steal, 2)} cores.`,
		noisy.length > 0 ? `Figures taken under more than 0.15 core of other load: ${noisy.map(entry => `${entry.label} (${fmt(entry.foreign, 2)})`).join(', ')}.` : 'No figure was taken under more than 0.15 core of other load.',
	].join(' ');
	const problems = Object.entries(results).flatMap(([name, f]) => f.problems.map(p => `- ${name}: ${p}`));
	return [
		`## Details (issue 8's table, this mirror with workers: auto)`,
		'',
		`- date: ${new Date().toString()}`,
		`- machine: ${cpuCount()} cores (${cpuModel()}), ${(totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, Linux ${release()} ${arch()}, node ${process.version}`,
		`- big layer ${sizeLabel} (${fmt(gib, 2)} GiB), ${SMALL} layers of ${SMALL_SIZE / 1024} KiB; ${RUNS} run(s) per figure: median (min–max); herds ran once`,
		`- upstream: reference registry (docker-registry ${registryVersion()}) with token auth behind the test helpers' counting proxy (\`url\`), behind a WAN throttle in bench/wan.ts (${ctx.wanDescribe}); both mirrors were configured with the throttle's URL`,
		`- "upstream" column: cold = a client downloading through that same path (throttle + counting proxy, with a pull token, the manifest fetched first on the same connection); warm and wrk rows = straight from the registry (\`directUrl\`, bearer token)`,
		`- this mirror: ${sourceVersion()}, ${ctx.mirrorHow}, log level warn, one fresh process and empty data dir per measurement group (cold+warm blob, small layers, manifests, herd)`,
		`- reference proxy: \`docker-registry serve\` with \`proxy.remoteurl\` (and blobdescriptor cache inmemory), fresh storage per group`,
		`- clients: curl (→ /dev/null, or | openssl dgst -sha256 where bytes are checked: cold and herd), wrk -t1, bench/client.ts for one-pass lists`,
		`- cores: ${pin}`,
		`- priority: ${niced ? `the benchmark and every process it starts ran at nice ${NICE} (herd clients at 19)${autogroup ? ', in a session (setsid) of its own whose autogroup had that nice value too' : ''}, so that other work on a shared machine disturbs the figures less` : 'default nice values'}`,
		`- ratios: this mirror's median ÷ the other's median (for times, lower is better; for rates, higher)`,
		'',
		table,
		'',
		loadText,
		'',
		problems.length > 0 ? `Problems seen:\n${problems.join('\n')}` : 'No problems seen (every download had the right status and size; cold and herd downloads had the right sha256).',
		'',
		`Run took ${fmt(ctx.seconds / 60, 1)} min.`,
	].join('\n');
}

/** The commit the mirror was built from, and whether src/ had uncommitted changes. */
function sourceVersion(): string {
	const root = env['BENCH_MIRROR_ROOT'] || repoRoot;
	try {
		const commit = execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], {encoding: 'utf8'}).trim();
		const dirty = execFileSync('git', ['-C', root, 'status', '--porcelain', '--', 'src'], {encoding: 'utf8'}).trim() !== '';
		return `commit ${commit}${dirty ? ' with uncommitted changes in src/' : ''}`;
	} catch {
		return `source at ${root} (not a git checkout)`;
	}
}

function cpuModel(): string {
	try {
		return /model name\s*:\s*(.*)/.exec(execFileSync('cat', ['/proc/cpuinfo'], {encoding: 'utf8'}))?.[1]?.trim() ?? 'unknown CPU';
	} catch {
		return 'unknown CPU';
	}
}

function registryVersion(): string {
	try {
		return execFileSync('docker-registry', ['--version'], {encoding: 'utf8'}).trim().split(/\s+/).at(-1) ?? '?';
	} catch {
		return '?';
	}
}

// --- main ----------------------------------------------------------------------------------

async function main(): Promise<void> {
	const began = performance.now();
	if (NICE !== 0 && process.getuid?.() === 0) {
		// Every thread of this process; children inherit it. Other work on a shared machine then disturbs the figures less.
		if (env['BENCH_IN_SESSION'] === '1') {
			try {
				writeFileSync('/proc/self/autogroup', String(NICE));
				autogroup = true;
			} catch (error) {
				log(`could not set the autogroup's nice value: ${error instanceof Error ? error.message : String(error)}`);
			}
		}

		for (const task of readdirSync(`/proc/${process.pid}/task`)) {
			try {
				setPriority(Number(task), NICE);
			} catch {
				// A thread that just exited.
			}
		}

		niced = true;
	}

	if (pinningEnabled()) {
		await repin(process.pid, CLIENT_CORE);
		for (const child of childrenOf(process.pid)) {
			await repin(child, CLIENT_CORE).catch(() => undefined); // tsx's esbuild service
		}
	}

	const ctx = {} as Ctx;
	let mirrorHow = '';
	if (ONLY.has('mirror') || ONLY.has('mirror1')) {
		log('building this mirror (tsc)');
		ctx.mirrorCommand = await buildMirror();
		cleanups.push(async () => ctx.mirrorCommand?.cleanup());
		mirrorHow = ctx.mirrorCommand.how;
	}

	if (PROFILE_DIR) {
		await mkdir(PROFILE_DIR, {recursive: true});
	}

	log('starting the token server and the upstream registry');
	const tokens = await startTokenServer();
	cleanups.push(async () => tokens.stop());
	const upstream = await startReferenceRegistry({tokenServer: tokens});
	cleanups.push(async () => upstream.stop());
	const wan = await startWan({target: upstream.url, mbps: WAN_MBPS, rttMs: WAN_RTT});
	cleanups.push(async () => wan.stop());
	ctx.upstream = upstream;
	ctx.wan = wan;

	log(`seeding: ${fmt(SIZE / MiB)} MiB layer, ${SMALL} × ${SMALL_SIZE / 1024} KiB layers, a small image`);
	const root = await tempDir('bench-seed-');
	cleanups.push(() => rmSync(root, {recursive: true, force: true}));
	const seedStart = performance.now();
	ctx.seeded = await seed(upstream.directUrl, root, {bigSize: SIZE, smallLayers: SMALL, smallSize: SMALL_SIZE, coldBlobs: COLD_BLOBS, coldTags: COLD_TAGS});
	log(`seeded in ${fmt((performance.now() - seedStart) / 1000, 1)} s`);

	reportSoFar = note => `${issue14Report({wanDescribe: wan.describe, mirrorHow})}\n\n${note}\n\n${report({wanDescribe: wan.describe, mirrorHow, seconds: (performance.now() - began) / 1000})}`;
	const phases: Array<[string, () => Promise<void>]> = [
		['upstream', async () => measureUpstream(ctx)],
		['nginx', async () => measureNginx(ctx)],
		['node', async () => measureNode(ctx)],
		['mirror', async () => measureMirror('mirror', ctx)],
		['mirror1', async () => measureMirror('mirror1', ctx)],
		['ref', async () => measureMirror('ref', ctx)],
	];
	const done: string[] = [];
	for (const [name, phase] of phases.filter(([name]) => ONLY.has(name))) {
		await phase();
		done.push(name);
		checkpoint(`**Partial: ${done.join(', ')} measured so far.**`);
	}

	const out = `${issue14Report({wanDescribe: wan.describe, mirrorHow})}

${report({wanDescribe: wan.describe, mirrorHow, seconds: (performance.now() - began) / 1000})}`;
	let profiles = '';
	if (PROFILE_DIR) {
		const files = readdirSync(PROFILE_DIR).filter(file => file.endsWith('.cpuprofile')).sort();
		profiles = files.map(file => formatSummary(summarise(join(PROFILE_DIR, file), 20), file)).join('\n\n');
	}

	process.stdout.write(`${out}\n${profiles ? `\n## CPU profiles of this mirror\n\n${profiles}\n` : ''}`);
	if (env['BENCH_OUT']) {
		writeFileSync(env['BENCH_OUT'], `${out}\n${profiles ? `\n## CPU profiles of this mirror\n\n${profiles}\n` : ''}`);
	}
}

/**
 * With the kernel's autogroup scheduling on (the default on desktop-ish
 * kernels), nice values only count within one session: re-run this script in
 * its own session (setsid) and give that session's autogroup the nice value.
 * The caller's session is left as it was.
 */
async function inOwnSession(): Promise<boolean> {
	if (NICE === 0 || process.getuid?.() !== 0 || env['BENCH_IN_SESSION'] === '1' || findExecutable('setsid') === null) {
		return false;
	}

	try {
		if (readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'utf8').trim() !== '1') {
			return false;
		}
	} catch {
		return false;
	}

	const child = spawn('setsid', ['--wait', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
		stdio: 'inherit',
		env: {...env, BENCH_IN_SESSION: '1'},
	});
	for (const signal of ['SIGINT', 'SIGTERM'] as const) {
		process.removeAllListeners(signal);
		process.on(signal, () => child.kill(signal));
	}

	const code = await new Promise<number>(resolve => {
		child.once('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 128 : 1)));
	});
	process.exit(code);
}

if (!(await inOwnSession())) {
	try {
		await main();
	} finally {
		await cleanup();
	}
}
