/**
 * The servers under test, each its own process pinned to the server core:
 * this mirror (built with tsc, run like `npm start`), the reference registry
 * in proxy mode, and the plain node:http server.
 */
import {randomBytes} from 'node:crypto';
import {existsSync, statSync} from 'node:fs';
import {rm, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {forgetTempDir, freePort, run, tempDir} from '../test/helpers/process.js';
import {type Cores, log, type ServerProcess, spawnServer, waitHttp, waitTreeIdle} from './lib.js';

export const repoRoot = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');

export type MirrorCommand = {cmd: string; args: string[]; how: string; cleanup(): Promise<void>};

/**
 * Builds src/ with tsc into bench/.dist-PID (what `npm start` does into dist/); falls back to tsx when the build fails.
 * BENCH_MIRROR_ROOT=DIR builds DIR/src with DIR/tsconfig.json instead (another checkout, to compare a change).
 */
export async function buildMirror(): Promise<MirrorCommand> {
	const sourceRoot = process.env['BENCH_MIRROR_ROOT'] || repoRoot;
	const outDir = join(repoRoot, 'bench', `.dist-${process.pid}`);
	const tsc = join(repoRoot, 'node_modules', '.bin', 'tsc');
	const result = await run(tsc, ['-p', join(sourceRoot, 'tsconfig.json'), '--outDir', outDir], {timeoutMs: 180_000});
	const cleanup = async () => rm(outDir, {recursive: true, force: true});
	if (result.code === 0 && existsSync(join(outDir, 'main.js'))) {
		const from = sourceRoot === repoRoot ? '' : ` of ${sourceRoot}`;
		return {cmd: process.execPath, args: [join(outDir, 'main.js')], how: `tsc build${from}, \`node main.js\` (as \`npm start\`)`, cleanup};
	}

	log(`tsc failed (${result.code}); running src/main.ts with tsx instead:\n${result.stdout}${result.stderr}`);
	await cleanup();
	return {
		cmd: process.execPath,
		args: ['--import', 'tsx', join(sourceRoot, 'src', 'main.ts')],
		how: 'tsc build FAILED; ran `node --import tsx src/main.ts`',
		cleanup: async () => undefined,
	};
}

export type RunningServer = {name: string; url: string; server: ServerProcess; dataDir: string; stop(): Promise<void>};

async function removeDir(dir: string): Promise<void> {
	await rm(dir, {recursive: true, force: true});
	forgetTempDir(dir);
}

export async function startThisMirror(
	command: MirrorCommand,
	upstreamUrl: string,
	/** `workers` unset: the config leaves the key out (its default, `auto`: one per core the process may use). */
	opts: {core?: Cores; workers?: number; tagTtl?: string; profileDir?: string; profileName?: string} = {},
): Promise<RunningServer> {
	const dir = await tempDir('bench-mirror-');
	const dataDir = join(dir, 'data');
	const port = await freePort();
	const configPath = join(dir, 'mirror.yml');
	await writeFile(
		configPath,
		[
			`listen: 127.0.0.1:${port}`,
			`storage: {dir: ${JSON.stringify(dataDir)}}`,
			'log: {level: warn}',
			...(opts.workers === undefined ? [] : [`workers: ${opts.workers}`]),
			'upstreams:',
			`  docker.io: {url: ${JSON.stringify(upstreamUrl)}, tag_ttl: ${opts.tagTtl ?? '5m'}}`,
			'namespaces:',
			'  - {prefix: "", upstream: docker.io}',
			'',
		].join('\n'),
	);
	// Several workers (forked with the primary's flags) would all write one named file: let node name each by pid then.
	const named = opts.workers === 1 ? ['--cpu-prof-name', `${opts.profileName ?? 'mirror'}.cpuprofile`] : [];
	const profile = opts.profileDir ? ['--cpu-prof', '--cpu-prof-dir', opts.profileDir, ...named] : [];
	const [first, ...rest] = command.args;
	const args = [...profile, first!, ...rest, '--config', configPath];
	const server = spawnServer('this mirror', command.cmd, args, {core: opts.core, cwd: dir});
	const url = `http://127.0.0.1:${port}`;
	await waitHttp(server, `${url}/v2/`, [200]);
	await waitTreeIdle(server.child.pid!); // every worker started, not only the first to listen
	return {
		name: 'this mirror',
		url,
		server,
		dataDir,
		async stop() {
			await server.stop(30_000);
			await removeDir(dir);
		},
	};
}

export async function startReferenceProxy(upstreamUrl: string, opts: {core?: Cores} = {}): Promise<RunningServer> {
	const dir = await tempDir('bench-refproxy-');
	const dataDir = join(dir, 'data');
	const port = await freePort();
	const configPath = join(dir, 'config.yml');
	await writeFile(
		configPath,
		[
			'version: 0.1',
			'log:',
			'  level: warn',
			'  accesslog:',
			'    disabled: true',
			'storage:',
			'  cache:',
			'    blobdescriptor: inmemory',
			'  filesystem:',
			`    rootdirectory: ${JSON.stringify(dataDir)}`,
			'  maintenance:',
			'    uploadpurging:',
			'      enabled: false',
			'http:',
			`  addr: 127.0.0.1:${port}`,
			`  secret: ${randomBytes(16).toString('hex')}`,
			'proxy:',
			`  remoteurl: ${JSON.stringify(upstreamUrl)}`,
			'',
		].join('\n'),
	);
	const server = spawnServer('reference proxy', '/usr/bin/docker-registry', ['serve', configPath], {core: opts.core});
	const url = `http://127.0.0.1:${port}`;
	await waitHttp(server, `${url}/v2/`, [200]);
	return {
		name: 'reference proxy',
		url,
		server,
		dataDir,
		async stop() {
			await server.stop(10_000);
			await removeDir(dir);
		},
	};
}

/** Whether the reference proxy has committed a blob to its own storage (it stores in the background). */
export function referenceProxyHas(dataDir: string, digest: string, size: number): boolean {
	const hex = digest.slice('sha256:'.length);
	const file = join(dataDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
	try {
		return statSync(file).size === size;
	} catch {
		return false;
	}
}

/** `workers` > 1: that many node:http processes sharing the port (node:cluster), as the mirror's workers do. */
export async function startNodeServer(root: string, mediaType: string, opts: {core?: Cores; workers?: number} = {}): Promise<RunningServer> {
	const port = await freePort();
	const server = spawnServer(
		'node:http server',
		process.execPath,
		['--import', 'tsx', join(repoRoot, 'bench', 'node-server.ts'), String(port), root, mediaType, String(opts.workers ?? 1)],
		{core: opts.core, cwd: repoRoot},
	);
	const url = `http://127.0.0.1:${port}`;
	await waitHttp(server, `${url}/v2/`, [200]);
	return {
		name: 'node:http server',
		url,
		server,
		dataDir: '',
		async stop() {
			await server.stop();
		},
	};
}
