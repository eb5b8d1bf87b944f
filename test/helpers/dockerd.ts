import {existsSync} from 'node:fs';
import {mkdir, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {findExecutable, forgetTempDir, run, type RunResult, spawnDaemon, stopChild, tail, tempDir, waitFor} from './process.js';

export type Dockerd = {
	socket: string;
	docker(args: string[], timeoutMs?: number): Promise<RunResult>;
	stop(): Promise<void>;
	log(): string;
};

export type DockerdOptions = {mirrorUrl: string; insecureRegistries?: string[]};

/** An isolated Docker engine (own data/exec root, socket, no networking changes) using `mirrorUrl` as registry mirror. */
export async function startDockerd(opts: DockerdOptions): Promise<Dockerd> {
	const dockerdPath = findExecutable('dockerd');
	const dockerPath = findExecutable('docker');
	if (dockerdPath === null || dockerPath === null) {
		throw new Error(`${dockerdPath === null ? 'dockerd' : 'docker'} is not installed: run \`apt-get install -y docker.io\``);
	}

	// Unix socket paths are limited to ~100 chars (containerd's lives at D/exec/containerd/containerd.sock).
	const dir = await tempDir('dk-', tmpdir().length > 40 ? '/tmp' : tmpdir());
	const socket = join(dir, 'docker.sock');
	const configFile = join(dir, 'daemon.json');
	const cliConfig = join(dir, 'cli');
	await mkdir(cliConfig);
	await writeFile(configFile, JSON.stringify({
		'registry-mirrors': [opts.mirrorUrl],
		'insecure-registries': [new URL(opts.mirrorUrl).host, ...(opts.insecureRegistries ?? [])],
	}));

	// SIGTERM lets dockerd shut down the containerd it started as well.
	const daemon = spawnDaemon(dockerdPath, [
		'--data-root', join(dir, 'root'),
		'--exec-root', join(dir, 'exec'),
		'-H', `unix://${socket}`,
		'--pidfile', join(dir, 'pid'),
		'--iptables=false',
		'--ip6tables=false',
		'--bridge=none',
		'--storage-driver=vfs',
		'--config-file', configFile,
	]);
	const {child: proc, gone} = daemon;

	const env: NodeJS.ProcessEnv = {...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: cliConfig};
	delete env['DOCKER_CONTEXT'];
	delete env['DOCKER_TLS_VERIFY'];
	const docker = async (args: string[], timeoutMs = 120_000): Promise<RunResult> => run(dockerPath, args, {env, timeoutMs});

	let stopped = false;
	const stop = async (): Promise<void> => {
		if (stopped) {
			return;
		}

		stopped = true;
		await stopChild(proc, 15_000);
		// A container or build step on the host network leaves dockerd's bind mount of the host's
		// network namespace behind (exec/netns/default): unmount it, or the removal fails with EBUSY.
		const netns = join(dir, 'exec', 'netns', 'default');
		if (existsSync(netns)) {
			await run('umount', [netns], {timeoutMs: 10_000}).catch(() => undefined);
		}

		// Vfs layers are full copies: remove them right away rather than at process exit.
		await rm(dir, {recursive: true, force: true, maxRetries: 3});
		forgetTempDir(dir);
	};

	try {
		await waitFor(async () => gone() || (await docker(['info'], 10_000)).code === 0, `dockerd on ${socket}`, 60_000);
		if (gone()) {
			throw new Error(`dockerd exited early (${daemon.exitReason()})`);
		}
	} catch (error) {
		await stop();
		throw new Error(`${error instanceof Error ? error.message : String(error)}\n${tail(daemon.logs())}`);
	}

	return {socket, docker, stop, log: daemon.logs};
}
