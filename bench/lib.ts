/**
 * Small helpers shared by the benchmark: child servers started by pid (and
 * pinned to a core), /proc polling for RSS, HTTP waits, statistics, tables.
 */
import {type ChildProcess, spawn} from 'node:child_process';
import {readdirSync, readFileSync} from 'node:fs';
import {performance} from 'node:perf_hooks';
import {setTimeout as sleep} from 'node:timers/promises';
import {appendCapped, findExecutable, stopChild, tail, trackChild} from '../test/helpers/process.js';

export {sleep};

const CLOCK_TICKS = 100; // USER_HZ on Linux

export const SERVER_CORE = 0;
export const CLIENT_CORE = 1;

/** Pinning is on when the machine has at least two cores and BENCH_PIN is not 0. */
export function pinningEnabled(): boolean {
	return process.env['BENCH_PIN'] !== '0' && findExecutable('taskset') !== null && cpuCount() >= 2;
}

export function cpuCount(): number {
	try {
		return readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter(line => line.startsWith('processor')).length || 1;
	} catch {
		return 1;
	}
}

/**
 * Where a process may run: one core, or `'all'` (every core: `taskset -c
 * 0-N`, needed because the bench process pins itself to the client core and
 * its children would inherit that).
 */
export type Cores = number | 'all';

/** `cmd args` prefixed with `taskset -c CORE` (or `-c 0-N` for 'all') when pinning is on. */
export function pinned(core: Cores, cmd: string, args: string[]): [string, string[]] {
	if (!pinningEnabled()) {
		return [cmd, args];
	}

	return ['taskset', ['-c', core === 'all' ? `0-${cpuCount() - 1}` : String(core), cmd, ...args]];
}

let clientPlacement: Cores = CLIENT_CORE;

/** Where the clients (curl, wrk, bench/client.ts) run from now on: the client core, or every core while unpinned servers are measured. */
export function setClientCores(cores: Cores): void {
	clientPlacement = cores;
}

export function clientCores(): Cores {
	return clientPlacement;
}

/** Moves every thread of a running process to `core` (`taskset -a -p -c`). */
export async function repin(pid: number, core: number): Promise<void> {
	if (!pinningEnabled()) {
		return;
	}

	await new Promise<void>((resolve, reject) => {
		const child = spawn('taskset', ['-a', '-p', '-c', String(core), String(pid)], {stdio: 'ignore'});
		child.once('error', reject);
		child.once('exit', code => (code === 0 ? resolve() : reject(new Error(`taskset -p ${pid} exited ${code}`))));
	});
}

export type MemoryStatus = {rssKiB: number; hwmKiB: number};

/** VmRSS and VmHWM (peak RSS) of a process, from /proc/PID/status. */
export function memoryOf(pid: number): MemoryStatus | undefined {
	try {
		const status = readFileSync(`/proc/${pid}/status`, 'utf8');
		const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
		return {rssKiB: field('VmRSS'), hwmKiB: field('VmHWM')};
	} catch {
		return undefined;
	}
}

/** The pids of a process's direct children (/proc/PID/task/*\/children). */
export function childrenOf(pid: number): number[] {
	try {
		return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
			.trim()
			.split(/\s+/)
			.filter(Boolean)
			.map(Number);
	} catch {
		return [];
	}
}

/** Polls a set of pids every 100 ms and keeps the highest RSS seen (and VmHWM, which the kernel keeps exactly). */
export class RssPoller {
	peakKiB = 0;
	readonly #timer: NodeJS.Timeout;

	constructor(private readonly pids: () => number[]) {
		this.#timer = setInterval(() => this.sample(), 100);
		this.#timer.unref();
	}

	sample(): void {
		for (const pid of this.pids()) {
			const memory = memoryOf(pid);
			if (memory) {
				this.peakKiB = Math.max(this.peakKiB, memory.rssKiB, memory.hwmKiB);
			}
		}
	}

	stop(): number {
		this.sample();
		clearInterval(this.#timer);
		return this.peakKiB;
	}
}

/**
 * Polls a process and its direct children (a primary and its workers, nginx's
 * master and workers) every 100 ms and keeps the highest sum of their RSS.
 */
export class TreeRssPoller {
	peakKiB = 0;
	readonly #timer: NodeJS.Timeout;

	constructor(private readonly root: () => number | undefined) {
		this.#timer = setInterval(() => this.sample(), 100);
		this.#timer.unref();
	}

	sample(): void {
		const root = this.root();
		if (root === undefined) {
			return;
		}

		const sum = [root, ...childrenOf(root)].reduce((total, pid) => total + (memoryOf(pid)?.rssKiB ?? 0), 0);
		this.peakKiB = Math.max(this.peakKiB, sum);
	}

	stop(): number {
		this.sample();
		clearInterval(this.#timer);
		return this.peakKiB;
	}
}

/** CPU seconds (user + system) used so far by a process and its live direct children. */
export function cpuSecondsOf(root: number): number {
	let ticks = 0;
	for (const pid of [root, ...childrenOf(root)]) {
		try {
			const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
			const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
			ticks += Number(rest[11]) + Number(rest[12]);
		} catch {
			// Gone meanwhile.
		}
	}

	return ticks / CLOCK_TICKS;
}

export type ServerProcess = {
	name: string;
	pid: number;
	child: ChildProcess;
	logs(): string;
	/** SIGTERM by pid (SIGKILL after the grace time) and wait for the exit. */
	stop(graceMs?: number): Promise<void>;
};

/** Spawns a server process pinned to `core`; its output is kept (capped) for error messages. */
export function spawnServer(name: string, cmd: string, args: string[], opts: {core?: Cores; env?: NodeJS.ProcessEnv; cwd?: string} = {}): ServerProcess {
	const [command, argv] = opts.core === undefined ? [cmd, args] : pinned(opts.core, cmd, args);
	const child = spawn(command, argv, {stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd});
	trackChild(child);
	let output = '';
	const collect = (chunk: Buffer): void => {
		output = appendCapped(output, chunk.toString('utf8'), 100_000);
	};

	child.stdout?.on('data', collect);
	child.stderr?.on('data', collect);
	child.once('error', error => {
		output += `\nspawn error: ${error.message}`;
	});
	if (child.pid === undefined) {
		throw new Error(`${name}: could not start ${command}`);
	}

	return {
		name,
		pid: child.pid,
		child,
		logs: () => output,
		async stop(graceMs = 10_000) {
			await stopChild(child, graceMs);
		},
	};
}

/** Waits until GET `url` answers one of `statuses`, or the process died. */
export async function waitHttp(server: ServerProcess, url: string, statuses: number[] = [200], timeoutMs = 30_000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	let last = '';
	for (;;) {
		if (server.child.exitCode !== null || server.child.signalCode !== null) {
			throw new Error(`${server.name} exited (${server.child.exitCode ?? server.child.signalCode}) before answering ${url}:\n${tail(server.logs())}`);
		}

		try {
			const response = await fetch(url, {signal: AbortSignal.timeout(2000)});
			await response.arrayBuffer();
			if (statuses.includes(response.status)) {
				return;
			}

			last = `HTTP ${response.status}`;
		} catch (error) {
			last = error instanceof Error ? error.message : String(error);
		}

		if (Date.now() > deadline) {
			throw new Error(`${server.name}: timed out waiting for ${url} (${last}):\n${tail(server.logs())}`);
		}

		await sleep(50);
	}
}

// --- statistics and formatting ------------------------------------------------------------

export function median(values: number[]): number {
	const sorted = values.filter(v => Number.isFinite(v)).sort((a, b) => a - b);
	if (sorted.length === 0) {
		return Number.NaN;
	}

	const mid = Math.floor(sorted.length / 2);
	return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function fmt(value: number | undefined, digits = 0): string {
	if (value === undefined || !Number.isFinite(value)) {
		return 'n/a';
	}

	return value.toLocaleString('en-US', {minimumFractionDigits: digits, maximumFractionDigits: digits});
}

/** A value with the spread of its samples: `123 (110–130)`. */
export function fmtRuns(values: number[], digits = 0): string {
	const finite = values.filter(v => Number.isFinite(v));
	if (finite.length === 0) {
		return 'n/a';
	}

	if (finite.length === 1) {
		return fmt(finite[0], digits);
	}

	return `${fmt(median(finite), digits)} (${fmt(Math.min(...finite), digits)}–${fmt(Math.max(...finite), digits)})`;
}

export function ratio(a: number, b: number, digits = 2): string {
	if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) {
		return 'n/a';
	}

	return `${(a / b).toFixed(digits)}×`;
}

export function markdownTable(header: string[], rows: string[][]): string {
	const line = (cells: string[]) => `| ${cells.map(cell => cell.replace(/\|/g, '\\|')).join(' | ')} |`;
	return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function log(message: string): void {
	process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// --- other load on the machine --------------------------------------------------------------

/** user+nice+system and steal jiffies of the whole machine. */
function machineTicks(): {busy: number; steal: number} {
	const fields = (/^cpu\s+(.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? '').trim().split(/\s+/).map(Number);
	return {busy: (fields[0] ?? 0) + (fields[1] ?? 0) + (fields[2] ?? 0), steal: fields[7] ?? 0};
}

/** CPU jiffies of this process and every live descendant (reaped ones are in their parents' cutime/cstime). */
function treeTicks(root: number): number {
	let total = 0;
	const stack = [root];
	const seen = new Set<number>();
	while (stack.length > 0) {
		const pid = stack.pop()!;
		if (seen.has(pid)) {
			continue;
		}

		seen.add(pid);
		try {
			const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
			const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
			// fields after the comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
			total += Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
		} catch {
			continue;
		}

		for (const task of safeReaddir(`/proc/${pid}/task`)) {
			stack.push(...childrenOfTask(pid, Number(task)));
		}
	}

	return total;
}

function safeReaddir(dir: string): string[] {
	try {
		return readdirSync(dir);
	} catch {
		return [];
	}
}

function childrenOfTask(pid: number, tid: number): number[] {
	try {
		return readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
	} catch {
		return [];
	}
}

/** CPU used on this machine by processes outside the benchmark's tree, in cores (1.0 = one core busy), over a window. */
export class ForeignLoad {
	#machine = machineTicks();
	#ours = treeTicks(process.pid);
	#at = performance.now();

	/** Cores of foreign CPU (and of steal) since the last call. */
	take(): {foreign: number; steal: number; seconds: number} {
		const machine = machineTicks();
		const ours = treeTicks(process.pid);
		const now = performance.now();
		const seconds = (now - this.#at) / 1000;
		const foreignTicks = Math.max(0, machine.busy - this.#machine.busy - (ours - this.#ours));
		const stealTicks = machine.steal - this.#machine.steal;
		this.#machine = machine;
		this.#ours = ours;
		this.#at = now;
		return {foreign: seconds > 0 ? foreignTicks / CLOCK_TICKS / seconds : 0, steal: seconds > 0 ? stealTicks / CLOCK_TICKS / seconds : 0, seconds};
	}
}

/**
 * Waits (up to `maxWaitMs`) until the process tree under `root` is idle: under
 * `threshold` of a core over a 0.5 s window. The mirror's port answers as
 * soon as its first worker listens; the others are still loading their
 * modules, CPU that must not be counted in the first measurement.
 */
export async function waitTreeIdle(root: number, threshold = 0.05, maxWaitMs = 30_000): Promise<number> {
	const started = performance.now();
	for (;;) {
		const before = treeTicks(root);
		await sleep(500);
		const cores = (treeTicks(root) - before) / CLOCK_TICKS / 0.5;
		if (cores < threshold || performance.now() - started > maxWaitMs) {
			return performance.now() - started;
		}
	}
}

/**
 * Waits (up to `maxWaitMs`) until processes outside the benchmark use less
 * than `threshold` of a core over a 0.5 s window. Returns the last load seen.
 */
export async function waitQuiet(threshold = 0.1, maxWaitMs = 120_000): Promise<{foreign: number; waitedMs: number}> {
	const started = performance.now();
	for (;;) {
		const probe = new ForeignLoad();
		await sleep(500);
		const {foreign} = probe.take();
		const waitedMs = performance.now() - started;
		if (foreign < threshold || waitedMs > maxWaitMs) {
			return {foreign, waitedMs};
		}
	}
}

export type LoadEntry = {label: string; foreign: number; steal: number; seconds: number; waitedMs: number};

/**
 * Runs each measurement once the machine is quiet (other processes under 0.1
 * core, waiting at most `maxWaitMs` each and `budgetMs` over the run; waits
 * under `slackMs` are not charged), and records the foreign load during it.
 */
export function quietRunner(options: {enabled: boolean; budgetMs: number; maxWaitMs: number; slackMs: number}): {
	q: <T>(label: string, fn: () => Promise<T>) => Promise<T>;
	loadLog: LoadEntry[];
} {
	const loadLog: LoadEntry[] = [];
	let budgetMs = options.budgetMs;
	const q = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
		const quiet = options.enabled && budgetMs > 0 ? await waitQuiet(0.1, Math.min(options.maxWaitMs, budgetMs)) : {foreign: 0, waitedMs: 0};
		budgetMs -= Math.max(0, quiet.waitedMs - options.slackMs);
		if (quiet.waitedMs > 2000) {
			log(`waited ${fmt(quiet.waitedMs / 1000, 1)} s for other processes to calm down (last ${fmt(quiet.foreign, 2)} cores)`);
		}

		const load = new ForeignLoad();
		const result = await fn();
		const taken = load.take();
		loadLog.push({label, ...taken, waitedMs: quiet.waitedMs});
		if (taken.foreign > 0.15) {
			log(`note: other processes used ${fmt(taken.foreign, 2)} cores during "${label}"`);
		}

		return result;
	};

	return {q, loadLog};
}
