/**
 * One replica on the scale-out drivers (blobs in Ceph through radosgw's S3,
 * metadata in PostgreSQL) against one on the single-node drivers (files on
 * disk, SQLite): cold and warm throughput of a big blob.
 *
 *   node --import tsx bench/scale-out.ts
 *
 * Both replicas are this mirror built with tsc (as `npm start`, see
 * bench/servers.ts), each its own process pinned to the server core, up for
 * the whole run (warmed up with a small image and a big blob first, then
 * left idle at least BENCH_IDLE_S before each of its measured pulls). The upstream is the
 * reference registry with token auth behind the test helpers' counting proxy,
 * unpaced, on loopback. Every (variant, run) pulls a blob of its own, seeded
 * beforehand, so every cold pull is a real miss.
 *
 * Per run and variant: cold = the first GET of the blob (the manifest fetched
 * first by digest on the same connection; sha256 checked); warm = GET of the
 * same blob again, 1 client, then CLIENTS clients at once (aggregate MB/s);
 * then (BENCH_VERIFY=all, the default, or only in run 1 with first) the warm
 * downloads again through sha256, untimed. Runs alternate which variant goes
 * first. Also per run, as context: the upstream alone (a blob of its own,
 * with a pull token, through the same counting proxy) and radosgw alone (the
 * mirror's multipart settings for a PUT from this process, and presigned GETs
 * with the same curl clients), plus the latency of an S3 HEAD.
 *
 * Knobs: BENCH_SIZE_MB (256), BENCH_RUNS (3), BENCH_VERIFY (all|first),
 * BENCH_PIN (0 = no taskset), BENCH_NICE (-10, as root), BENCH_QUIET (0 = do
 * not wait for other processes to calm down before a measurement),
 * BENCH_QUIET_BUDGET_S (60), BENCH_RESULTS (bench/RESULTS.md; '-' = do not
 * write, only print), BENCH_PROFILE=DIR (CPU profiles of the replicas),
 * BENCH_NODE_ARGS (more node flags for the replicas), BENCH_VARIANTS
 * (disk,ceph), BENCH_IDLE_S (30: see IDLE_NOTE).
 */
import {execFileSync} from 'node:child_process';
import {createReadStream, readdirSync, readFileSync} from 'node:fs';
import {readFile, rm, writeFile} from 'node:fs/promises';
import {arch, loadavg, release, setPriority, totalmem} from 'node:os';
import {join} from 'node:path';
import {performance} from 'node:perf_hooks';
import {CreateBucketCommand, GetObjectCommand, HeadObjectCommand, type S3Client} from '@aws-sdk/client-s3';
import {Upload} from '@aws-sdk/lib-storage';
import {getSignedUrl} from '@aws-sdk/s3-request-presigner';
import {stringify} from 'yaml';
import {type Ceph, s3ClientFor, startCeph} from '../test/helpers/ceph.js';
import {type Postgres, startPostgres} from '../test/helpers/postgres.js';
import {forgetTempDir, freePort, tempDir} from '../test/helpers/process.js';
import {type ReferenceRegistry, startReferenceRegistry} from '../test/helpers/reference-registry.js';
import {type TokenServer, startTokenServer} from '../test/helpers/token-server.js';
import {
	CLIENT_CORE,
	cpuCount,
	fmt,
	fmtRuns,
	log,
	markdownTable,
	median,
	pinningEnabled,
	ratio,
	repin,
	RssPoller,
	SERVER_CORE,
	type ServerProcess,
	sleep,
	spawnServer,
	waitHttp,
	quietRunner,
	type LoadEntry,
} from './lib.js';
import {type Download, download, type Parallel, parallelDownload} from './measure.js';
import {seed, tokenFor} from './seed.js';
import {buildMirror, type MirrorCommand, repoRoot} from './servers.js';
import {PART_SIZE, QUEUE_SIZE, REQUEST_HANDLER} from '../src/store/s3/index.js';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';

// --- settings ------------------------------------------------------------------------------

const env = process.env;
const num = (name: string, fallback: number): number => {
	const value = env[name];
	return value === undefined || value === '' ? fallback : Number(value);
};

const MiB = 1024 * 1024;
const SIZE = Math.round(num('BENCH_SIZE_MB', 256) * MiB);
const RUNS = Math.max(1, Math.floor(num('BENCH_RUNS', 3)));
const CLIENTS = 4;
/** Each replica is left idle at least this long before each of its measured pulls: the same state for every figure (see IDLE_NOTE). */
const IDLE_MS = Math.max(0, num('BENCH_IDLE_S', 30)) * 1000;
const IDLE_NOTE =
	'on this machine a replica that has sat idle for about 30 s serves big blobs markedly slower for a while afterwards, with far more of its CPU in GC (the cause is not settled: neither --no-memory-reducer nor a fixed 16 MB semi-space avoids it); the wait puts every measured pull in that state, the usual one of a replica between bursts of pulls, rather than only the pulls that follow the other variant\'s turn';
const VERIFY_ALL = env['BENCH_VERIFY'] !== 'first';
const NICE = num('BENCH_NICE', -10);
const QUIET = env['BENCH_QUIET'] !== '0';
/** A directory: the replicas run with `--cpu-prof` into it (summarise with bench/profile.ts). */
const PROFILE_DIR = env['BENCH_PROFILE'];
/** More node/V8 flags for the replicas, space-separated (e.g. `--trace-gc`). */
const NODE_ARGS = (env['BENCH_NODE_ARGS'] ?? '').split(/\s+/).filter(Boolean);
const RESULTS_FILE = env['BENCH_RESULTS'] === '-' ? undefined : env['BENCH_RESULTS'] || join(repoRoot, 'bench', 'RESULTS.md');
const SECTION = '## Scale-out drivers: one replica on Ceph + PostgreSQL against disk + SQLite';
const BUCKET = 'bench-scale-out';
const PREFIX = 'mirror/';
const RAW_BUCKET = 'bench-raw';
const ACCEPT = [
	'application/vnd.docker.distribution.manifest.v2+json',
	'application/vnd.docker.distribution.manifest.list.v2+json',
	'application/vnd.oci.image.manifest.v1+json',
	'application/vnd.oci.image.index.v1+json',
].join(', ');

const ALL_VARIANTS = ['disk', 'ceph'] as const;
type Variant = (typeof ALL_VARIANTS)[number];
/** BENCH_VARIANTS=disk (or ceph) measures one only; Ceph and PostgreSQL still start, for the radosgw row. */
const VARIANTS: Variant[] = ALL_VARIANTS.filter(v => (env['BENCH_VARIANTS'] ?? ALL_VARIANTS.join(',')).split(',').map(x => x.trim()).includes(v));
const LABEL: Record<Variant, string> = {disk: 'disk + SQLite', ceph: 'Ceph (S3) + PostgreSQL'};

// --- results -------------------------------------------------------------------------------

type Figures = {coldMbps: number[]; coldTtfb: number[]; warm1: number[]; warm1Ttfb: number[]; warmN: number[]};
const figures = (): Figures => ({coldMbps: [], coldTtfb: [], warm1: [], warm1Ttfb: [], warmN: []});
const results = {disk: figures(), ceph: figures(), upstream: figures(), radosgw: figures()};
const rawPut: number[] = [];
const headMs: number[] = [];
const problems: string[] = [];
let checkedDownloads = 0;
let hashedDownloads = 0;

function problem(message: string): void {
	problems.push(message);
	log(`PROBLEM: ${message}`);
}

function check(what: string, d: Download, expected: {bytes: number; digest?: string}): boolean {
	checkedDownloads++;
	if (d.error || d.status !== 200 || d.bytes !== expected.bytes || (expected.digest !== undefined && d.sha256 !== expected.digest)) {
		problem(`${what}: status ${d.status}, ${d.bytes} of ${expected.bytes} bytes, ${d.sha256 ?? ''} ${d.error ?? ''}`.trim());
		return false;
	}

	if (expected.digest !== undefined) {
		hashedDownloads++;
	}

	return true;
}

const mbps = (d: Download): number => d.bytes / d.totalMs / 1000;

// --- other load on the machine ---------------------------------------------------------------

const {q, loadLog} = quietRunner({enabled: QUIET, budgetMs: num('BENCH_QUIET_BUDGET_S', 60) * 1000, maxWaitMs: 10_000, slackMs: 500});

// --- CPU of the processes involved ----------------------------------------------------------

const CPU_GROUPS = ['mirror', 'other', 'ceph', 'postgres', 'upstream'] as const;
type CpuGroup = (typeof CPU_GROUPS)[number];
const CPU_LABEL: Record<CpuGroup, string> = {mirror: 'the replica measured', other: 'the other replica (idle)', ceph: 'Ceph (mon, OSD, radosgw)', postgres: 'PostgreSQL', upstream: 'upstream registry'};
const CLOCK_TICKS = 100; // USER_HZ on Linux

function statOf(pid: number): {comm: string; ticks: number} | undefined {
	try {
		const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
		const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
		return {comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), ticks: Number(rest[11]) + Number(rest[12])};
	} catch {
		return undefined;
	}
}

function childPids(pid: number): number[] {
	try {
		return readdirSync(`/proc/${pid}/task`).flatMap(task => {
			try {
				return readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
			} catch {
				return [];
			}
		});
	} catch {
		return [];
	}
}

/** The pids of every replica. */
const replicaPids: number[] = [];

/** utime+stime of this process's descendants by group (a process's own descendants count with it): the replica `mirrorPid`, the other replicas, Ceph's daemons, PostgreSQL, docker-registry. */
function cpuTicks(mirrorPid: number): Record<CpuGroup, number> {
	const totals: Record<CpuGroup, number> = {mirror: 0, other: 0, ceph: 0, postgres: 0, upstream: 0};
	const walk = (pid: number, group: CpuGroup | undefined): void => {
		const stat = statOf(pid);
		if (!stat) {
			return;
		}

		const own: CpuGroup | undefined =
			group ??
			(pid === mirrorPid
				? 'mirror'
				: replicaPids.includes(pid)
					? 'other'
					: ['ceph-mon', 'ceph-osd', 'radosgw'].includes(stat.comm)
					? 'ceph'
					: stat.comm === 'postgres'
						? 'postgres'
						: stat.comm.startsWith('docker-registry')
							? 'upstream'
							: undefined);
		if (own) {
			totals[own] += stat.ticks;
		}

		for (const child of childPids(pid)) {
			walk(child, own);
		}
	};

	for (const child of childPids(process.pid)) {
		walk(child, undefined);
	}

	return totals;
}

/** Cores busy per group while `fn` ran (the replica: `mirrorPid`, 0 for none), recorded under `key`. */
const cpuLog = new Map<string, Array<Record<CpuGroup, number>>>();
async function withCpu<T>(key: string, mirrorPid: number, fn: () => Promise<T>): Promise<T> {
	const before = cpuTicks(mirrorPid);
	const started = performance.now();
	const result = await fn();
	const after = cpuTicks(mirrorPid);
	const seconds = (performance.now() - started) / 1000;
	const cores = Object.fromEntries(CPU_GROUPS.map(group => [group, (after[group] - before[group]) / CLOCK_TICKS / seconds])) as Record<CpuGroup, number>;
	cpuLog.set(key, [...(cpuLog.get(key) ?? []), cores]);
	return result;
}

// --- servers -------------------------------------------------------------------------------

type Replica = {variant: Variant; url: string; server: ServerProcess; stop(): Promise<void>};

/** This mirror (the tsc build) with the drivers of `variant`, pinned to the server core, like startThisMirror in bench/servers.ts. */
async function startReplica(command: MirrorCommand, variant: Variant, upstreamUrl: string, backends: {ceph: Ceph; databaseUrl: string}): Promise<Replica> {
	const dir = await tempDir(`bench-scale-out-${variant}-`);
	const dataDir = join(dir, 'data');
	const port = await freePort();
	const {ceph} = backends;
	const drivers =
		variant === 'disk'
			? {storage: {dir: dataDir}}
			: {
					storage: {
						dir: dataDir,
						driver: 's3',
						s3: {endpoint: ceph.endpoint, bucket: BUCKET, region: ceph.region, access_key: ceph.accessKey, secret_key: ceph.secretKey, prefix: PREFIX},
					},
					metadata: {driver: 'postgres', url: backends.databaseUrl},
				};
	const config = {
		listen: `127.0.0.1:${port}`,
		...drivers,
		log: {level: 'warn'},
		upstreams: {'docker.io': {url: upstreamUrl, tag_ttl: '5m'}},
		namespaces: [{prefix: '', upstream: 'docker.io'}],
	};
	const configPath = join(dir, 'mirror.yml');
	await writeFile(configPath, stringify(config));
	const profile = PROFILE_DIR ? ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR, '--cpu-prof-name', `scale-out-${variant}.cpuprofile`] : [];
	const server = spawnServer(`mirror (${LABEL[variant]})`, command.cmd, [...NODE_ARGS, ...profile, ...command.args, '--config', configPath], {
		core: SERVER_CORE,
		cwd: dir,
	});
	const url = `http://127.0.0.1:${port}`;
	try {
		await waitHttp(server, `${url}/v2/`, [200], 60_000);
	} catch (error) {
		await server.stop();
		await rm(dir, {recursive: true, force: true});
		forgetTempDir(dir);
		throw error;
	}

	return {
		variant,
		url,
		server,
		async stop() {
			await server.stop(30_000);
			await rm(dir, {recursive: true, force: true});
			forgetTempDir(dir);
		},
	};
}

/** The mirror's own S3 settings (src/store/s3/bucket.ts). */
function s3Client(ceph: Ceph): S3Client {
	return s3ClientFor(ceph, {requestHandler: REQUEST_HANDLER});
}

// --- the measurements ------------------------------------------------------------------------

type Blob = {repo: string; digest: string; size: number; manifestDigest: string};

const blobPath = (blob: Blob): string => `/v2/${blob.repo}/blobs/${blob.digest}`;
const manifestPath = (blob: Blob): string => `/v2/${blob.repo}/manifests/${blob.manifestDigest}`;
const blobCount = (upstream: ReferenceRegistry): number => upstream.count({kind: 'blob', method: 'GET'});

async function getOk(url: string, headers: Record<string, string> = {}): Promise<void> {
	const response = await fetch(url, {headers});
	await response.arrayBuffer();
	if (response.status !== 200) {
		throw new Error(`GET ${url}: HTTP ${response.status}`);
	}
}

/**
 * Untimed: a small image through the replica, cold then warm, so the first measured request does not pay for JIT
 * and connection setup; then a big blob of its own, cold and warm (both checked), so that run 1 finds the replica
 * in the same state as the later runs (see IDLE_NOTE).
 */
async function warmUp(replica: Replica, small: {repo: string; manifestDigest: string; digests: string[]}, big: Blob): Promise<void> {
	for (let pass = 0; pass < 2; pass++) {
		await getOk(`${replica.url}/v2/${small.repo}/manifests/${small.manifestDigest}`, {accept: ACCEPT});
		for (const digest of small.digests) {
			await getOk(`${replica.url}/v2/${small.repo}/blobs/${digest}`);
		}
	}

	const url = `${replica.url}${blobPath(big)}`;
	for (const pass of ['cold', 'warm']) {
		check(`${LABEL[replica.variant]} warm-up (${pass})`, await download(url, {headers: {accept: ACCEPT}, hash: true}), {bytes: big.size, digest: big.digest});
	}
}

async function measureReplica(replica: Replica, blob: Blob, run: number, upstream: ReferenceRegistry): Promise<void> {
	const f = results[replica.variant];
	const label = LABEL[replica.variant];
	const url = `${replica.url}${blobPath(blob)}`;
	const prime = `${replica.url}${manifestPath(blob)}`;
	const headers = {accept: ACCEPT};
	const expected = {bytes: blob.size};

	const before = blobCount(upstream);
	const pid = replica.server.pid;
	const cold = await q(`${replica.variant} cold, run ${run}`, async () => withCpu(`${replica.variant} cold`, pid, async () => download(url, {headers, prime, hash: true})));
	if (check(`${label} cold, run ${run}`, cold, {...expected, digest: blob.digest})) {
		f.coldMbps.push(mbps(cold));
		f.coldTtfb.push(cold.ttfbMs);
	}

	const afterCold = blobCount(upstream);
	if (afterCold - before !== 1) {
		problem(`${label} cold, run ${run}: ${afterCold - before} upstream blob GETs (expected 1)`);
	}

	await sleep(200);
	const one = await q(`${replica.variant} warm 1, run ${run}`, async () => withCpu(`${replica.variant} warm 1`, pid, async () => download(url, {headers, prime})));
	if (check(`${label} warm 1 client, run ${run}`, one, expected)) {
		f.warm1.push(mbps(one));
		f.warm1Ttfb.push(one.ttfbMs);
	}

	const many = await q(`${replica.variant} warm ${CLIENTS}, run ${run}`, async () =>
		withCpu(`${replica.variant} warm ${CLIENTS}`, pid, async () => parallelDownload(url, CLIENTS, {headers})),
	);
	if (many.downloads.map(d => check(`${label} warm ${CLIENTS} clients, run ${run}`, d, expected)).every(Boolean)) {
		f.warmN.push(many.mbps);
	}

	if (VERIFY_ALL || run === 1) {
		// The same downloads through sha256 (untimed: one core of hashing would cap the warm figures).
		check(`${label} warm 1 client (sha256), run ${run}`, await download(url, {headers, hash: true}), {...expected, digest: blob.digest});
		const hashed = await parallelDownload(url, CLIENTS, {headers, hash: true});
		for (const d of hashed.downloads) {
			check(`${label} warm ${CLIENTS} clients (sha256), run ${run}`, d, {...expected, digest: blob.digest});
		}
	}

	const after = blobCount(upstream);
	if (after !== afterCold) {
		problem(`${label}, run ${run}: warm downloads reached the upstream (${after - afterCold} blob GETs)`);
	}

	const cores = (phase: string): string => fmt(cpuLog.get(`${replica.variant} ${phase}`)?.at(-1)?.mirror, 2);
	log(
		`${label}, run ${run}: replica busy ${cores('cold')}/${cores('warm 1')}/${cores(`warm ${CLIENTS}`)} cores; cold ${fmt(mbps(cold))} MB/s (first byte ${fmt(cold.ttfbMs, 1)} ms), warm ${fmt(mbps(one))} MB/s (first byte ${fmt(one.ttfbMs, 1)} ms), ` +
			`${CLIENTS} clients ${fmt(many.mbps)} MB/s`,
	);
}

/** The upstream alone, along the path the mirrors use (counting proxy, pull token, manifest first): the ceiling of a cold pull. */
async function measureUpstream(upstream: ReferenceRegistry, blob: Blob, run: number): Promise<void> {
	const f = results.upstream;
	const headers = {authorization: `Bearer ${await tokenFor(upstream.url, blob.repo)}`, accept: ACCEPT};
	const d = await q(`upstream alone, run ${run}`, async () => download(`${upstream.url}${blobPath(blob)}`, {headers, prime: `${upstream.url}${manifestPath(blob)}`, hash: true}));
	if (check(`upstream alone, run ${run}`, d, {bytes: blob.size, digest: blob.digest})) {
		f.coldMbps.push(mbps(d));
		f.coldTtfb.push(d.ttfbMs);
	}
}

/** radosgw alone: a PUT with the mirror's multipart settings (from this process), presigned GETs with the same curl clients, and HEAD latency. */
async function measureRadosgw(s3: S3Client, file: string, blob: Blob, run: number): Promise<void> {
	const f = results.radosgw;
	const key = `raw/run-${run}`;
	const started = performance.now();
	await q(`radosgw PUT, run ${run}`, async () => withCpu('radosgw PUT', 0, async () =>
		new Upload({
			client: s3,
			params: {Bucket: RAW_BUCKET, Key: key, Body: createReadStream(file, {highWaterMark: MiB}), ContentType: 'application/octet-stream'},
			partSize: PART_SIZE,
			queueSize: QUEUE_SIZE,
			leavePartsOnError: false,
		}).done()),
	);
	rawPut.push(blob.size / (performance.now() - started) / 1000);

	const url = await getSignedUrl(s3, new GetObjectCommand({Bucket: RAW_BUCKET, Key: key}), {expiresIn: 900});
	const one = await q(`radosgw GET 1, run ${run}`, async () => withCpu('radosgw warm 1', 0, async () => download(url)));
	if (check(`radosgw GET 1 client, run ${run}`, one, {bytes: blob.size})) {
		f.warm1.push(mbps(one));
		f.warm1Ttfb.push(one.ttfbMs);
	}

	const many: Parallel = await q(`radosgw GET ${CLIENTS}, run ${run}`, async () => withCpu(`radosgw warm ${CLIENTS}`, 0, async () => parallelDownload(url, CLIENTS)));
	if (many.downloads.map(d => check(`radosgw GET ${CLIENTS} clients, run ${run}`, d, {bytes: blob.size})).every(Boolean)) {
		f.warmN.push(many.mbps);
	}

	if (run === 1) {
		check(`radosgw GET (sha256), run ${run}`, await download(url, {hash: true}), {bytes: blob.size, digest: blob.digest});
	}

	for (let i = 0; i < 20; i++) {
		const t = performance.now();
		await s3.send(new HeadObjectCommand({Bucket: RAW_BUCKET, Key: key}));
		headMs.push(performance.now() - t);
	}
}

// --- the report ------------------------------------------------------------------------------

function cpuModel(): string {
	try {
		return /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown CPU';
	} catch {
		return 'unknown CPU';
	}
}

function sourceVersion(): string {
	try {
		const commit = execFileSync('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD'], {encoding: 'utf8'}).trim();
		const dirty = execFileSync('git', ['-C', repoRoot, 'status', '--porcelain', '--', 'src'], {encoding: 'utf8'}).trim() !== '';
		return `commit ${commit}${dirty ? ' with uncommitted changes in src/' : ''}`;
	} catch {
		return 'source not in a git checkout';
	}
}

function version(cmd: string, args: string[], pattern: RegExp): string {
	try {
		const out = execFileSync(cmd, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']});
		return pattern.exec(out)?.[1] ?? '?';
	} catch {
		return '?';
	}
}

type Meta = {seconds: number; mirrorHow: string; loadBefore: number[]; loadAfter: number[]; peakRss: Partial<Record<Variant, number>>; stored: string};

function report(meta: Meta): string {
	const c = (values: number[], digits = 0): string => fmtRuns(values, digits);
	const na = 'n/a';
	const rows: string[][] = [
		[`upstream alone (reference registry through its counting proxy)`, c(results.upstream.coldMbps), c(results.upstream.coldTtfb, 1), na, na, na],
		...VARIANTS.map(v => [`**${LABEL[v]}**`, c(results[v].coldMbps), c(results[v].coldTtfb, 1), c(results[v].warm1), c(results[v].warmN), c(results[v].warm1Ttfb, 1)]),
	];
	if (VARIANTS.length === ALL_VARIANTS.length) {
		rows.push([
			'Ceph ÷ disk (medians)',
			ratio(median(results.ceph.coldMbps), median(results.disk.coldMbps)),
			ratio(median(results.ceph.coldTtfb), median(results.disk.coldTtfb)),
			ratio(median(results.ceph.warm1), median(results.disk.warm1)),
			ratio(median(results.ceph.warmN), median(results.disk.warmN)),
			ratio(median(results.ceph.warm1Ttfb), median(results.disk.warm1Ttfb)),
		]);
	}

	rows.push([`radosgw alone (presigned GET, no mirror)`, na, na, c(results.radosgw.warm1), c(results.radosgw.warmN), c(results.radosgw.warm1Ttfb, 1)]);
	const table = markdownTable(
		['variant', 'cold MB/s', 'cold first byte, ms', 'warm 1 client, MB/s', `warm ${CLIENTS} clients, aggregate MB/s`, 'warm 1 client first byte, ms'],
		rows,
	);
	const cpuRows = [
		...VARIANTS.flatMap(v => ['cold', 'warm 1', `warm ${CLIENTS}`].map(phase => [`${LABEL[v]}: ${phase === 'cold' ? 'cold' : `warm, ${phase.slice(5)} client${phase === 'warm 1' ? '' : 's'}`}`, `${v} ${phase}`])),
		['radosgw alone: PUT from this process', 'radosgw PUT'],
		['radosgw alone: GET, 1 client', 'radosgw warm 1'],
		[`radosgw alone: GET, ${CLIENTS} clients`, `radosgw warm ${CLIENTS}`],
	].map(([label, key]) => [label!, ...CPU_GROUPS.map(group => fmt(median((cpuLog.get(key!) ?? []).map(cores => cores[group])), 2))]);
	const cpuTable = markdownTable(['during', ...CPU_GROUPS.map(group => CPU_LABEL[group])], cpuRows);
	const foreign = loadLog.map(entry => entry.foreign);
	const worst = loadLog.reduce<LoadEntry | undefined>((max, entry) => (max === undefined || entry.foreign > max.foreign ? entry : max), undefined);
	const noisy = loadLog.filter(entry => entry.foreign > 0.15);
	const steal = loadLog.reduce((max, entry) => Math.max(max, entry.steal), 0);
	const la = (values: number[]): string => values.map(v => v.toFixed(2)).join(', ');
	const pin = pinningEnabled()
		? `each replica pinned with \`taskset\` to core ${SERVER_CORE}; everything else (this process with the upstream's counting proxy, token server, upstream registry, Ceph's mon/OSD/radosgw, PostgreSQL, the curl clients) on core ${CLIENT_CORE} — the storage backends stand in for other machines, as the upstream does`
		: 'no pinning (fewer than 2 cores or BENCH_PIN=0)';
	return [
		SECTION,
		'',
		`\`node --import tsx bench/scale-out.ts\` (BENCH_RUNS=${RUNS}, BENCH_SIZE_MB=${fmt(SIZE / MiB)}), ${new Date().toString()}; the run took ${fmt(meta.seconds / 60, 1)} min.`,
		'',
		`- machine: ${cpuCount()} cores (${cpuModel()}), ${(totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, Linux ${release()} ${arch()}, node ${process.version}; load average (1, 5, 15 min) ${la(meta.loadBefore)} at the start, ${la(meta.loadAfter)} at the end`,
		`- other load while measuring (CPU of processes outside the benchmark${QUIET ? '; each measurement first waited up to 10 s, 60 s in all, for under 0.1 core of it' : ''}): median ${fmt(median(foreign), 2)} cores over ${loadLog.length} measurements, worst ${worst ? `${fmt(worst.foreign, 2)} during "${worst.label}"` : na}, highest steal ${fmt(steal, 2)}${noisy.length > 0 ? `; over 0.15 core during ${noisy.map(entry => `"${entry.label}" (${fmt(entry.foreign, 2)})`).join(', ')}` : ''}`,
		`- the replicas: this mirror, ${sourceVersion()}, ${meta.mirrorHow}, log level warn, one process per variant up for the whole run (warmed up with a small image and a big blob of its own, cold and warm), ${IDLE_MS > 0 ? `left idle at least ${fmt(IDLE_MS / 1000)} s before each of its measured pulls (${IDLE_NOTE})` : 'not left idle before its pulls (BENCH_IDLE_S=0)'}${NODE_ARGS.length > 0 ? `, node flags \`${NODE_ARGS.join(' ')}\`` : ''}; disk: \`storage: {dir}\` (files + SQLite); Ceph: \`storage.driver: s3\` on a single-node Ceph ${version('ceph', ['--version'], /ceph version (\S+)/)} (mon, memstore OSD, radosgw with beast; test/helpers/ceph.ts) and \`metadata.driver: postgres\` on PostgreSQL ${version('/usr/lib/postgresql/15/bin/postgres', ['--version'], /(\d+\.\d+)/)} (fsync off; test/helpers/postgres.ts); both stores are RAM (memstore, and the page cache for the disk files)`,
		`- blob: ${fmt(SIZE / MiB)} MiB of random bytes, a new one per variant and run (seeded with bench/seed.ts into docker-registry ${version('docker-registry', ['--version'], /(\S+)\s*$/)} with token auth), pulled through the counting proxy unpaced on loopback; ${RUNS} runs, variants alternating which goes first; figures are median (min–max)`,
		`- cold: curl fetches the manifest by digest, then the blob on the same connection, through \`openssl dgst -sha256\`; warm: the same blob again to /dev/null (1 client with the manifest first, then ${CLIENTS} curls at once, aggregate = bytes ÷ wall time)${VERIFY_ALL ? ', then 1 and ' : ', then in run 1 only 1 and '}${CLIENTS} more through sha256 (untimed)`,
		`- radosgw alone: presigned GETs of an object put from this process with the mirror's multipart settings (${PART_SIZE / MiB} MiB parts, ${QUEUE_SIZE} in flight): PUT ${fmtRuns(rawPut)} MB/s; S3 HEAD of an object from this process (keep-alive SDK client): median ${fmt(median(headMs), 2)} ms over ${headMs.length}`,
		`- cores: ${pin}`,
		`- peak RSS of the replica: ${VARIANTS.map(v => `${LABEL[v]} ${fmt((meta.peakRss[v] ?? Number.NaN) / 1024)} MiB`).join(', ')}`,
		'',
		table,
		'',
		`CPU busy while each figure was measured, in cores (1.00 = one core all the time; median over the runs; utime+stime from /proc; the curl/openssl clients and this process, which hosts the upstream's counting proxy and the radosgw PUT, are not counted):`,
		'',
		cpuTable,
		'',
		problems.length > 0
			? `Problems seen:\n${problems.map(p => `- ${p}`).join('\n')}`
			: `No problems seen: ${checkedDownloads} downloads with the right status and size, ${hashedDownloads} of them (every cold one${VERIFY_ALL ? ' and a sha256 pass of every warm one' : ''}) with the right sha256; each cold pull cost exactly 1 upstream blob GET and the warm ones none; ${meta.stored}.`,
		'',
	].join('\n');
}

/** Replaces this section in RESULTS.md (from its heading to the next `## `), or appends it. */
async function writeSection(file: string, section: string): Promise<void> {
	const current = await readFile(file, 'utf8').catch(() => '');
	const start = current.indexOf(`\n${SECTION}\n`);
	if (start === -1) {
		await writeFile(file, `${current.replace(/\n*$/, '\n')}\n${section}`);
		return;
	}

	const next = current.indexOf('\n## ', start + SECTION.length + 1);
	const after = next === -1 ? '' : current.slice(next);
	await writeFile(file, `${current.slice(0, start + 1)}${section}${after}`);
}

// --- main ----------------------------------------------------------------------------------

type Stop = {name: string; stop: () => Promise<void>};
const stops: Stop[] = [];
let stopping: Promise<void> | undefined;

/** Stops every server by its own handle, the last started first. */
async function stopAll(): Promise<void> {
	stopping ??= (async () => {
		for (const {name, stop} of [...stops].reverse()) {
			try {
				await stop();
			} catch (error) {
				log(`stopping ${name}: ${error instanceof Error ? error.message : String(error)}`);
			}
		}
	})();
	await stopping;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
	process.once(signal, () => {
		log(`${signal}: stopping`);
		void stopAll().finally(() => process.exit(130));
	});
}

function renice(): void {
	if (NICE === 0 || process.getuid?.() !== 0) {
		return;
	}

	// Every thread of this process; the children inherit it.
	for (const task of readdirSync(`/proc/${process.pid}/task`)) {
		try {
			setPriority(Number(task), NICE);
		} catch {
			// A thread that just exited.
		}
	}
}

/** This process (the upstream's counting proxy) and tsx's esbuild service to the client core; a tsc build already running keeps both. */
async function pinSelf(): Promise<void> {
	if (!pinningEnabled()) {
		return;
	}

	await repin(process.pid, CLIENT_CORE);
	const children = (() => {
		try {
			return readdirSync(`/proc/${process.pid}/task`).flatMap(task =>
				readFileSync(`/proc/${process.pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number),
			);
		} catch {
			return [];
		}
	})();
	for (const child of children) {
		try {
			if (readFileSync(`/proc/${child}/comm`, 'utf8').trim() === 'esbuild') {
				await repin(child, CLIENT_CORE);
			}
		} catch {
			// Gone meanwhile.
		}
	}
}

async function main(): Promise<void> {
	const began = performance.now();
	const loadBefore = loadavg();
	renice();
	log(`building this mirror (tsc); ${fmt(SIZE / MiB)} MiB blobs, ${RUNS} runs`);
	const building = buildMirror();
	building.catch(() => undefined);
	stops.push({name: 'the mirror build', stop: async () => (await building.catch(() => undefined))?.cleanup()});
	await pinSelf();
	const starting: Array<Promise<unknown>> = [];

	try {
		const tokens: TokenServer = await startTokenServer();
		stops.push({name: 'token server', stop: async () => tokens.stop()});
		const upstream = await startReferenceRegistry({tokenServer: tokens});
		stops.push({name: 'upstream registry', stop: async () => upstream.stop()});

		log('starting Ceph and PostgreSQL');
		const cephStarting = startCeph();
		const postgresStarting = startPostgres();
		starting.push(cephStarting, postgresStarting);
		// Registered as soon as each is up, whatever happens to the other.
		cephStarting.then(ceph => stops.push({name: 'Ceph', stop: async () => ceph.stop()}), () => undefined);
		postgresStarting.then(pg => stops.push({name: 'PostgreSQL', stop: async () => pg.stop()}), () => undefined);

		// One blob per variant and run and one more per variant for its warm-up, plus one for the upstream and radosgw rows.
		// blobs[variant][0] is its warm-up blob, blobs[variant][run] the one of that run.
		log(`seeding ${VARIANTS.length * (RUNS + 1) + 1} blobs of ${fmt(SIZE / MiB)} MiB`);
		const seedStart = performance.now();
		const blobs: Record<Variant, Blob[]> = {disk: [], ceph: []};
		let reference: Blob | undefined;
		let referenceFile = '';
		let small: {repo: string; manifestDigest: string; digests: string[]} | undefined;
		for (let i = 0; i <= VARIANTS.length * (RUNS + 1); i++) {
			const root = await tempDir('bench-scale-out-seed-');
			const seeded = await seed(upstream.directUrl, root, {bigSize: SIZE, smallLayers: 1, smallSize: 4096});
			const blob = {repo: seeded.big.repo, digest: seeded.big.digest, size: seeded.big.size, manifestDigest: seeded.big.manifestDigest};
			if (i === 0) {
				// Its file stays for the radosgw PUTs.
				reference = blob;
				referenceFile = seeded.big.file;
				small = {repo: seeded.small.repo, manifestDigest: seeded.small.manifestDigest, digests: seeded.small.digests};
				stops.push({name: 'seed files', stop: async () => rm(root, {recursive: true, force: true}).then(() => forgetTempDir(root))});
			} else {
				blobs[VARIANTS[(i - 1) % VARIANTS.length]!].push(blob);
				await rm(root, {recursive: true, force: true});
				forgetTempDir(root);
			}
		}

		log(`seeded in ${fmt((performance.now() - seedStart) / 1000, 1)} s`);
		const [ceph, postgres]: [Ceph, Postgres] = await Promise.all([cephStarting, postgresStarting]);
		const databaseUrl = await postgres.createDatabase('bench_scale_out');
		const s3 = s3Client(ceph);
		stops.push({name: 'S3 client', stop: async () => s3.destroy()});
		await s3.send(new CreateBucketCommand({Bucket: RAW_BUCKET}));

		const command = await building;
		log(`mirror: ${command.how}`);
		const replicas: Partial<Record<Variant, Replica>> = {};
		for (const variant of VARIANTS) {
			const replica = await startReplica(command, variant, upstream.url, {ceph, databaseUrl});
			stops.push({name: `mirror (${variant})`, stop: async () => replica.stop()});
			replicas[variant] = replica;
			replicaPids.push(replica.server.pid);
			await warmUp(replica, small!, blobs[variant][0]!);
		}

		const pollers = Object.fromEntries(VARIANTS.map(v => [v, new RssPoller(() => [replicas[v]!.server.pid])])) as Partial<Record<Variant, RssPoller>>;
		const lastUsed = Object.fromEntries(VARIANTS.map(v => [v, performance.now()])) as Partial<Record<Variant, number>>;
		for (let run = 1; run <= RUNS; run++) {
			log(`run ${run} of ${RUNS}`);
			await measureUpstream(upstream, reference!, run);
			const order = run % 2 === 1 ? VARIANTS : [...VARIANTS].reverse();
			for (const variant of order) {
				const idle = performance.now() - lastUsed[variant]!;
				if (idle < IDLE_MS) {
					log(`${LABEL[variant]}: idle ${fmt(idle / 1000, 1)} s, waiting ${fmt((IDLE_MS - idle) / 1000, 1)} s more`);
					await sleep(IDLE_MS - idle);
				}

				await measureReplica(replicas[variant]!, blobs[variant][run]!, run, upstream);
				lastUsed[variant] = performance.now();
			}

			await measureRadosgw(s3, referenceFile, reference!, run);
		}

		const peakRss = Object.fromEntries(VARIANTS.map(v => [v, pollers[v]!.stop()])) as Partial<Record<Variant, number>>;

		// The Ceph replica's blobs are in the bucket (and complete), not somewhere on its disk.
		let inBucket = 0;
		for (const blob of blobs.ceph) {
			const hex = blob.digest.slice('sha256:'.length);
			try {
				const head = await s3.send(new HeadObjectCommand({Bucket: BUCKET, Key: `${PREFIX}blobs/sha256/${hex.slice(0, 2)}/${hex}`}));
				if (head.ContentLength === blob.size) {
					inBucket++;
				} else {
					problem(`${blob.digest} is in the bucket with ${head.ContentLength} bytes`);
				}
			} catch (error) {
				problem(`${blob.digest} is not in the bucket: ${error instanceof Error ? error.name : String(error)}`);
			}
		}

		const stored = VARIANTS.includes('ceph') ? `the Ceph replica's ${inBucket}/${blobs.ceph.length} blobs were complete objects in its bucket` : 'no Ceph replica ran';
		const section = report({
			seconds: (performance.now() - began) / 1000,
			mirrorHow: command.how,
			loadBefore,
			loadAfter: loadavg(),
			peakRss,
			stored,
		});
		process.stdout.write(`\n${section}\n`);
		if (RESULTS_FILE) {
			await writeSection(RESULTS_FILE, section);
			log(`written to ${RESULTS_FILE}`);
		}
	} finally {
		await Promise.allSettled(starting); // so that a backend still starting is registered before the stops run
		await stopAll();
	}

	log(`done in ${fmt((performance.now() - began) / 60_000, 1)} min`);
}

await main();
