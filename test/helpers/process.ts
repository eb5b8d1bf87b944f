import {type ChildProcess, spawn} from 'node:child_process';
import {accessSync, constants, rmSync} from 'node:fs';
import {mkdtemp} from 'node:fs/promises';
import {type Server} from 'node:http';
import {createServer} from 'node:net';
import {tmpdir} from 'node:os';
import {delimiter, join} from 'node:path';
import {setTimeout as sleep} from 'node:timers/promises';

export type RunResult = {code: number; stdout: string; stderr: string};

export type RunOptions = {env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number};

/** A free TCP port on 127.0.0.1 (listen on port 0, read it, close). */
export async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const server = createServer();
		server.unref();
		server.once('error', reject);
		server.listen(0, '127.0.0.1', () => {
			const address = server.address();
			if (address === null || typeof address === 'string') {
				server.close();
				reject(new Error('freePort: could not read the listening port'));
				return;
			}

			server.close(() => {
				resolve(address.port);
			});
		});
	});
}

/**
 * Runs a command to completion and collects its output. Never throws on a non-zero exit;
 * rejects only if the command cannot be started or exceeds `timeoutMs` (it is then SIGKILLed).
 */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
	const timeoutMs = opts.timeoutMs ?? 60_000;
	return new Promise((resolve, reject) => {
		const child = spawn(cmd, args, {env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe']});
		let stdout = '';
		let stderr = '';
		let timedOut = false;
		child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
			stdout += chunk;
		});
		child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
			stderr += chunk;
		});
		const timer = setTimeout(() => {
			timedOut = true;
			child.kill('SIGKILL');
		}, timeoutMs);
		child.once('error', (error) => {
			clearTimeout(timer);
			reject(new Error(`run: cannot start ${cmd}: ${error.message}`));
		});
		child.once('close', (code, signal) => {
			clearTimeout(timer);
			if (timedOut) {
				reject(new Error(`run: ${cmd} ${args.join(' ')} timed out after ${timeoutMs} ms\n${tail(stderr)}`));
				return;
			}

			resolve({code: code ?? (signal === null ? -1 : 128), stdout, stderr});
		});
		child.stdin.on('error', () => {
			// The command may exit without reading its input (EPIPE); its exit code tells the story.
		});
		child.stdin.end(opts.input ?? '');
	});
}

/** Polls `check` (every 100 ms, errors count as "not yet") until it returns true. */
export async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	let lastError = '';
	for (;;) {
		try {
			if (await check()) {
				return;
			}
		} catch (error) {
			lastError = error instanceof Error ? error.message : String(error);
		}

		if (Date.now() > deadline) {
			throw new Error(`timed out waiting for ${what}${lastError === '' ? '' : ` (last error: ${lastError})`}`);
		}

		await sleep(100);
	}
}

const tempDirs = new Set<string>();
const children = new Map<ChildProcess, NodeJS.Signals>();
let exitHookInstalled = false;

function installExitHook(): void {
	if (exitHookInstalled) {
		return;
	}

	exitHookInstalled = true;
	// Last-resort cleanup if a test forgot to stop something (or crashed before its teardown).
	process.once('exit', () => {
		for (const [child, signal] of children) {
			if (child.exitCode === null && child.signalCode === null) {
				child.kill(signal);
			}
		}

		for (const dir of tempDirs) {
			try {
				rmSync(dir, {recursive: true, force: true});
			} catch {
				// Best effort only.
			}
		}
	});
}

/** A fresh directory under os.tmpdir() (or `base`); removed when the test process exits. */
export async function tempDir(prefix: string, base: string = tmpdir()): Promise<string> {
	const dir = await mkdtemp(join(base, prefix));
	installExitHook();
	tempDirs.add(dir);
	return dir;
}

/** Forget a temp dir (e.g. because the caller already removed it). */
export function forgetTempDir(dir: string): void {
	tempDirs.delete(dir);
}

/** Make sure `child` gets `signal` if the test process exits while it still runs. */
export function trackChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
	installExitHook();
	children.set(child, signal);
	child.once('exit', () => {
		children.delete(child);
	});
}

/** Resolves when `child` has exited (immediately if it already has). */
export async function exited(child: ChildProcess): Promise<void> {
	if (child.exitCode !== null || child.signalCode !== null) {
		return;
	}

	await new Promise<void>((resolve) => {
		child.once('exit', () => {
			resolve();
		});
	});
}

/** SIGTERM the child by its pid, SIGKILL after `graceMs`, and wait until it has exited. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
	if (child.exitCode !== null || child.signalCode !== null) {
		return;
	}

	const done = exited(child);
	child.kill('SIGTERM');
	const timer = setTimeout(() => {
		child.kill('SIGKILL');
	}, graceMs);
	await done;
	clearTimeout(timer);
}

/** Absolute path of an executable found on PATH (plus the sbin dirs), or null. */
export function findExecutable(name: string): string | null {
	const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
	for (const dir of dirs) {
		if (dir === '') {
			continue;
		}

		const candidate = join(dir, name);
		try {
			accessSync(candidate, constants.X_OK);
			return candidate;
		} catch {
			// Not here.
		}
	}

	return null;
}

/** The last `lines` lines of a log, for error messages. */
export function tail(text: string, lines = 30): string {
	return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Appends to a string buffer, keeping at most the last `max` characters. */
export function appendCapped(buffer: string, chunk: string, max = 1_000_000): string {
	const next = buffer + chunk;
	return next.length > max ? next.slice(next.length - max) : next;
}

/** Listens on 127.0.0.1:`port` (0 = any free port) and resolves with the port. */
export async function listenLocal(server: Server, port = 0): Promise<number> {
	await new Promise<void>((resolve, reject) => {
		const onError = (error: Error): void => {
			reject(error);
		};

		server.once('error', onError);
		server.listen(port, '127.0.0.1', () => {
			server.off('error', onError);
			resolve();
		});
	});
	const address = server.address();
	if (address === null || typeof address === 'string') {
		throw new Error('listenLocal: could not read the listening port');
	}

	return address.port;
}

/** Closes an HTTP server and every connection it holds (keep-alive ones included). */
export async function closeServer(server: Server): Promise<void> {
	if (!server.listening) {
		return;
	}

	const closed = new Promise<void>((resolve) => {
		server.close(() => {
			resolve();
		});
	});
	server.closeAllConnections();
	await closed;
}

/** A long-running child (a daemon under test) with its output collected for error messages. */
export type Daemon = {
	child: ChildProcess;
	logs: () => string;
	/** Whether it exited or could not start. */
	gone: () => boolean;
	/** Why it is gone, for an error message. */
	exitReason: () => string;
};

export function spawnDaemon(binary: string, args: string[], stopSignal: NodeJS.Signals = 'SIGTERM'): Daemon {
	const child = spawn(binary, args, {stdio: ['ignore', 'pipe', 'pipe']});
	trackChild(child, stopSignal);
	let logs = '';
	const collect = (chunk: Buffer): void => {
		logs = appendCapped(logs, chunk.toString('utf8'));
	};

	child.stdout?.on('data', collect);
	child.stderr?.on('data', collect);
	let spawnError = '';
	child.once('error', (error) => {
		spawnError = error.message;
	});
	return {
		child,
		logs: () => logs,
		gone: () => child.exitCode !== null || child.signalCode !== null || spawnError !== '',
		exitReason: () => spawnError || `code ${child.exitCode ?? child.signalCode}`,
	};
}
