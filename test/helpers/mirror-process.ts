/**
 * The mirror as a child process (`node --import tsx src/main.ts --config FILE`,
 * cwd the repository root), for tests that kill it: a YAML config written to a
 * temp dir, a fixed port and data dir, so `restart()` comes back on the same
 * port with the same store.
 */
import {type ChildProcess, spawn} from 'node:child_process';
import {writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {stringify} from 'yaml';
import {type RunResult, appendCapped, exited, freePort, tail, tempDir, trackChild, waitFor} from './process.js';

/** The repository root (this file is test/helpers/mirror-process.ts). */
export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export type MirrorProcessOptions = {
	upstreams?: Record<string, Record<string, unknown>>;
	/** Default: `private/` is local, everything else goes to the first upstream. */
	namespaces?: Array<Record<string, unknown>>;
	dataDir?: string;
	/** More top-level config keys. */
	extra?: Record<string, unknown>;
	env?: NodeJS.ProcessEnv;
};

export type MirrorProcess = {
	url: string;
	port: number;
	/** The pid of the running child (changes on restart). */
	readonly pid: number;
	dataDir: string;
	configFile: string;
	/** stdout + stderr of the current child (its last megabyte). */
	logs(): string;
	/** Sends `signal` (default SIGKILL) to the child by its pid and waits until it has exited. */
	kill(signal?: NodeJS.Signals): Promise<void>;
	/** Starts the mirror again (after kill/stop) with the same config, port and data dir. */
	restart(): Promise<void>;
	/** SIGTERM, SIGKILL after 5 s; safe to call more than once. */
	stop(): Promise<void>;
	/** Runs another command of the CLI on this config: `node --import tsx src/main.ts ARGS --config FILE`. */
	command(args: string[], timeoutMs?: number): Promise<RunResult>;
};

export async function startMirrorProcess(options: MirrorProcessOptions = {}): Promise<MirrorProcess> {
	const dir = await tempDir('mirror-proc-');
	const dataDir = options.dataDir ?? join(dir, 'data');
	const configFile = join(dir, 'mirror.config.yml');
	const port = await freePort();
	const upstreams = options.upstreams ?? {};
	const first = Object.keys(upstreams)[0];
	const config = {
		listen: `127.0.0.1:${port}`,
		storage: {dir: dataDir},
		log: {level: process.env['MIRROR_TEST_LOG'] ?? 'info'},
		upstreams,
		namespaces: options.namespaces ?? [{prefix: 'private/', local: true}, ...(first === undefined ? [] : [{prefix: '', upstream: first}])],
		...options.extra,
	};
	await writeFile(configFile, stringify(config));
	const url = `http://127.0.0.1:${port}`;
	const env = {...process.env, ...options.env};
	delete env['LOG_LEVEL'];

	let child: ChildProcess | undefined;
	let output = '';

	async function start(): Promise<void> {
		output = '';
		const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--config', configFile], {
			cwd: repoRoot,
			env,
			stdio: ['ignore', 'pipe', 'pipe'],
		});
		child = proc;
		trackChild(proc);
		const collect = (chunk: Buffer): void => {
			output = appendCapped(output, chunk.toString('utf8'));
		};

		proc.stdout?.on('data', collect);
		proc.stderr?.on('data', collect);
		const gone = (): boolean => proc.exitCode !== null || proc.signalCode !== null;
		try {
			await waitFor(
				async () => {
					if (gone()) {
						throw new Error(`the mirror exited (${proc.exitCode ?? proc.signalCode})`);
					}

					const response = await fetch(`${url}/v2/`, {signal: AbortSignal.timeout(2000)});
					await response.arrayBuffer();
					return response.status < 500;
				},
				`the mirror process on ${url}`,
				60_000, // a loaded machine compiling TypeScript in three processes (primary and two workers) takes a while
			);
			// With several workers the port answers as soon as the first listens: wait for all of them.
			await waitFor(async () => gone() || output.includes('registry mirror ready'), `the mirror on ${url} to say it is ready`, 60_000);
		} catch (error) {
			proc.kill('SIGKILL');
			await exited(proc);
			throw new Error(`${error instanceof Error ? error.message : String(error)}\n${tail(output)}`);
		}

		if (gone()) {
			throw new Error(`the mirror exited early (${proc.exitCode ?? proc.signalCode}):\n${tail(output)}`);
		}
	}

	async function kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
		const proc = child;
		if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
			return;
		}

		const done = exited(proc);
		process.kill(proc.pid!, signal);
		await done;
	}

	await start();
	return {
		url,
		port,
		get pid() {
			return child?.pid ?? 0;
		},
		dataDir,
		configFile,
		logs: () => output,
		kill,
		async restart() {
			await kill('SIGKILL');
			await start();
		},
		async stop() {
			const proc = child;
			if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
				return;
			}

			const done = exited(proc);
			proc.kill('SIGTERM');
			const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
			await done;
			clearTimeout(timer);
		},
		async command(args, timeoutMs = 60_000) {
			return runIn(repoRoot, [...args, '--config', configFile], {...env, LOG_LEVEL: 'silent'}, timeoutMs);
		},
	};
}

/** `node --import tsx src/main.ts ARGS` in `cwd`, to completion; SIGKILLed after `timeoutMs`. */
async function runIn(cwd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
	return new Promise((resolve, reject) => {
		const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {cwd, env, stdio: ['ignore', 'pipe', 'pipe']});
		trackChild(proc);
		let stdout = '';
		let stderr = '';
		proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
			stdout = appendCapped(stdout, chunk);
		});
		proc.stderr.setEncoding('utf8').on('data', (chunk: string) => {
			stderr = appendCapped(stderr, chunk);
		});
		const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
		proc.once('error', (error) => {
			clearTimeout(timer);
			reject(error);
		});
		proc.once('close', (code, signal) => {
			clearTimeout(timer);
			resolve({code: code ?? (signal === null ? -1 : 128), stdout, stderr});
		});
	});
}
