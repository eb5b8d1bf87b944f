/**
 * The mirror as a child process, as people run it: `node --import tsx
 * src/main.ts --config FILE` from the repository root, with a config file
 * written from an object (JSON is YAML). Needed where the in-process
 * `startMirror` cannot go, such as `tls:` (served by cli/serve.ts).
 */
import {type ChildProcess, spawn} from 'node:child_process';
import {writeFile} from 'node:fs/promises';
import {join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import {appendCapped, stopChild, tail, tempDir, trackChild, waitFor} from './process.js';
import {rawFetch} from './tls.js';

export type MirrorChild = {
	/** http(s)://127.0.0.1:PORT (with the prefix, if any, not included). */
	url: string;
	host: string;
	port: number;
	pid: number;
	dataDir: string;
	configPath: string;
	log(): string;
	stop(): Promise<void>;
};

export type MirrorChildOptions = {
	/** The config document (as in mirror.config.yml); `listen` and `storage.dir` are filled in when absent. */
	config: Record<string, unknown>;
	/** PEM of the CA that signed `tls.cert`, so readiness can be checked over https. */
	ca?: string;
	timeoutMs?: number;
};

const repoRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));

export async function startMirrorChild(options: MirrorChildOptions): Promise<MirrorChild> {
	const dir = await tempDir('mirror-child-');
	const dataDir = join(dir, 'data');
	const configPath = join(dir, 'mirror.config.yml');
	const document: Record<string, unknown> = {listen: '127.0.0.1:0', storage: {dir: dataDir}, log: {level: 'info'}, ...options.config};
	await writeFile(configPath, `${JSON.stringify(document, null, 2)}\n`);

	// At least info: the "registry mirror ready" line tells the port, and tests may read the request lines.
	const verbose = ['debug', 'trace'].includes(process.env['MIRROR_TEST_LOG'] ?? '');
	const env: NodeJS.ProcessEnv = {...process.env, LOG_LEVEL: verbose ? process.env['MIRROR_TEST_LOG'] : 'info'};
	delete env['MIRROR_CONFIG'];
	const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', '--config', configPath], {
		cwd: repoRoot,
		env,
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	trackChild(child, 'SIGKILL');
	let logs = '';
	let port = 0;
	let pending = '';
	child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
		logs = appendCapped(logs, chunk);
		pending += chunk;
		let newline = pending.indexOf('\n');
		while (newline >= 0) {
			const line = pending.slice(0, newline);
			pending = pending.slice(newline + 1);
			newline = pending.indexOf('\n');
			if (port === 0 && line.includes('registry mirror ready')) {
				try {
					const entry = JSON.parse(line) as {listen?: unknown};
					const match = typeof entry.listen === 'string' ? /:(\d+)$/.exec(entry.listen) : null;
					port = match ? Number(match[1]) : 0;
				} catch {
					// Not JSON: keep waiting (the readiness check fails with the log below).
				}
			}
		}
	});
	child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
		logs = appendCapped(logs, chunk);
	});
	let spawnError = '';
	child.once('error', (error) => {
		spawnError = error.message;
	});
	const gone = (): boolean => child.exitCode !== null || child.signalCode !== null || spawnError !== '';

	const tls = document['tls'] !== undefined;
	const scheme = tls ? 'https' : 'http';
	const prefix = typeof document['prefix'] === 'string' ? document['prefix'].replace(/\/+$/, '') : '';
	const stop = async (): Promise<void> => {
		await stopChild(child, 10_000);
	};

	try {
		await waitFor(async () => {
			if (gone()) {
				return true;
			}

			if (port === 0) {
				return false;
			}

			const response = await rawFetch(`${scheme}://127.0.0.1:${port}${prefix}/v2/`, {ca: options.ca, timeoutMs: 2000});
			return response.status === 200 || response.status === 401;
		}, 'the mirror child process', options.timeoutMs ?? 30_000);
		if (gone()) {
			throw new Error(`the mirror exited early (${spawnError || `code ${child.exitCode ?? child.signalCode}`})`);
		}
	} catch (error) {
		await stop();
		throw new Error(`${error instanceof Error ? error.message : String(error)}\n${tail(logs)}`);
	}

	return {
		url: `${scheme}://127.0.0.1:${port}`,
		host: `127.0.0.1:${port}`,
		port,
		pid: child.pid ?? 0,
		dataDir,
		configPath,
		log: () => logs,
		stop,
	};
}
