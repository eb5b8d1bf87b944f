/**
 * The clients. All of them run pinned to the client core:
 *   - curl for big downloads (a C client: the node http client tops out near
 *     1 GB/s here, curl near 3 GB/s), piped into `openssl dgst -sha256` where
 *     the bytes must be checked;
 *   - wrk for requests/s and latency percentiles;
 *   - bench/client.ts (node) for one pass over a list of URLs.
 */
import {spawn} from 'node:child_process';
import {writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {performance} from 'node:perf_hooks';
import {tempDir} from '../test/helpers/process.js';
import {clientCores, pinned} from './lib.js';
import {repoRoot} from './servers.js';
import type {ManyResult} from './client.js';

type Headers = Record<string, string>;

export type Download = {status: number; bytes: number; ttfbMs: number; totalMs: number; sha256?: string; error?: string};

function headerArgs(headers: Headers): string[] {
	return Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
}

function shellQuote(value: string): string {
	return `'${value.replace(/'/g, `'\\''`)}'`;
}

type Exec = {code: number; stdout: string; stderr: string; startedAt: number; endedAt: number};

function exec(cmd: string, args: string[], input?: string): Promise<Exec> {
	return new Promise((resolve, reject) => {
		const startedAt = performance.now();
		const child = spawn(cmd, args, {stdio: ['pipe', 'pipe', 'pipe']});
		let stdout = '';
		let stderr = '';
		child.stdout.setEncoding('utf8').on('data', (part: string) => {
			stdout += part;
		});
		child.stderr.setEncoding('utf8').on('data', (part: string) => {
			stderr += part;
		});
		child.once('error', reject);
		child.once('close', code => resolve({code: code ?? -1, stdout, stderr, startedAt, endedAt: performance.now()}));
		child.stdin.on('error', () => undefined);
		child.stdin.end(input ?? '');
	});
}

const WRITE_OUT = '%{stderr}W %{http_code} %{size_download} %{time_starttransfer} %{time_total}\\n';

/**
 * One curl download of `url` (after an untimed `prime` request on the same
 * connection, when given); body to /dev/null or through `openssl dgst -sha256`.
 */
function curlCommand(url: string, opts: {headers?: Headers; prime?: string; hash?: boolean; nice?: number}): [string, string[]] {
	const curl = [
		'curl', '-sS', '--max-time', '900', ...headerArgs(opts.headers ?? {}), '-w', WRITE_OUT,
		...(opts.prime ? ['-o', '/dev/null', opts.prime] : []),
		'-o', opts.hash ? '-' : '/dev/null', url,
	];
	const nice = opts.nice ? ['nice', '-n', String(opts.nice)] : [];
	// Without hashing, curl itself (no shell in between); with it, curl | openssl dgst.
	const [cmd, args] = opts.hash
		? pinned(clientCores(), 'bash', ['-c', `set -o pipefail; ${curl.map(shellQuote).join(' ')} | openssl dgst -sha256 -r`])
		: pinned(clientCores(), curl[0]!, curl.slice(1));
	return nice.length > 0 ? [nice[0]!, [...nice.slice(1), cmd, ...args]] : [cmd, args];
}

function parseDownload(result: Exec, hash: boolean): Download {
	const lines = result.stderr.split('\n').filter(line => line.startsWith('W '));
	const last = lines.at(-1)?.split(' ') ?? [];
	const download: Download = {
		status: Number(last[1] ?? 0),
		bytes: Number(last[2] ?? 0),
		ttfbMs: Number(last[3] ?? Number.NaN) * 1000,
		totalMs: Number(last[4] ?? Number.NaN) * 1000,
	};
	if (hash) {
		const hex = /^([0-9a-f]{64})/.exec(result.stdout.trim())?.[1];
		download.sha256 = hex ? `sha256:${hex}` : undefined;
	}

	if (result.code !== 0) {
		download.error = `exit ${result.code}: ${result.stderr.split('\n').filter(line => !line.startsWith('W ')).join(' ').slice(0, 300)}`;
	}

	return download;
}

export async function download(url: string, opts: {headers?: Headers; prime?: string; hash?: boolean} = {}): Promise<Download> {
	const [cmd, args] = curlCommand(url, opts);
	return parseDownload(await exec(cmd, args), opts.hash === true);
}

export type Parallel = {wallMs: number; bytes: number; mbps: number; downloads: Download[]};

/** `clients` downloads of `url` started together; aggregate MB/s over the wall time. */
export async function parallelDownload(url: string, clients: number, opts: {headers?: Headers; hash?: boolean; nice?: number; prime?: string} = {}): Promise<Parallel> {
	const commands = Array.from({length: clients}, () => curlCommand(url, opts));
	const started = performance.now();
	const results = await Promise.all(commands.map(async ([cmd, args]) => exec(cmd, args)));
	const wallMs = Math.max(...results.map(result => result.endedAt)) - started;
	const downloads = results.map(result => parseDownload(result, opts.hash === true));
	const bytes = downloads.reduce((sum, d) => sum + d.bytes, 0);
	return {wallMs, bytes, mbps: bytes / wallMs / 1000, downloads};
}

export type WrkResult = {rps: number; p50Ms: number; p90Ms: number; p99Ms: number; requests: number; non2xx: number; socketErrors: string; raw: string};

function toMs(text: string | undefined): number {
	const match = /^([\d.]+)(us|ms|s|m)$/.exec(text ?? '');
	if (!match) {
		return Number.NaN;
	}

	const value = Number(match[1]);
	return match[2] === 'us' ? value / 1000 : match[2] === 'ms' ? value : match[2] === 's' ? value * 1000 : value * 60_000;
}

/** wrk -t1 -cN -dS --latency; `paths` (optional) are cycled through by a Lua script. */
export async function wrk(url: string, opts: {headers?: Headers; seconds: number; connections: number; paths?: string[]; timeoutS?: number}): Promise<WrkResult> {
	const args = ['-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency', ...(opts.timeoutS ? ['--timeout', `${opts.timeoutS}s`] : []), ...headerArgs(opts.headers ?? {})];
	if (opts.paths) {
		const dir = await tempDir('bench-wrk-');
		const list = join(dir, 'paths.txt');
		const script = join(dir, 'cycle.lua');
		await writeFile(list, `${opts.paths.join('\n')}\n`);
		await writeFile(
			script,
			[
				'local paths = {}',
				`for line in io.lines(${JSON.stringify(list)}) do paths[#paths + 1] = line end`,
				'local i = 0',
				'request = function()',
				'  i = i % #paths + 1',
				'  return wrk.format("GET", paths[i])',
				'end',
				'',
			].join('\n'),
		);
		args.push('-s', script);
	}

	args.push(url);
	const [cmd, argv] = pinned(clientCores(), 'wrk', args);
	const result = await exec(cmd, argv);
	const out = result.stdout;
	const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
	const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN);
	const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
	const socketErrors = /Socket errors:[^\n]*/.exec(out)?.[0] ?? '';
	return {
		rps,
		p50Ms: toMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1]),
		p90Ms: toMs(/^\s+90%\s+(\S+)/m.exec(out)?.[1]),
		p99Ms: toMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1]),
		requests,
		non2xx,
		socketErrors,
		raw: result.code === 0 ? out : `${out}\n${result.stderr}`,
	};
}

/** One pass over `urls`, `parallel` at a time (bench/client.ts). */
export async function manyOnce(urls: string[], parallel: number, headers: Headers = {}): Promise<ManyResult & {rps: number}> {
	const [cmd, args] = pinned(clientCores(), process.execPath, ['--import', 'tsx', join(repoRoot, 'bench', 'client.ts')]);
	const result = await exec(cmd, args, JSON.stringify({mode: 'many', urls, parallel, headers}));
	if (result.code !== 0) {
		throw new Error(`bench/client.ts failed (${result.code}): ${result.stderr}`);
	}

	const parsed = JSON.parse(result.stdout) as ManyResult;
	return {...parsed, rps: (parsed.requests / parsed.wallMs) * 1000};
}
