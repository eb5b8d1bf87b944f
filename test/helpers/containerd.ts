/**
 * A private containerd (Debian package `containerd`, 1.6 on bookworm) with its
 * own root, state, opt dir and socket under a short temp dir, and `ctr` bound
 * to it; plus the hosts.toml files `ctr --hosts-dir` reads.
 *
 * Debian-package notes:
 * - the CRI plugin is disabled (it would want /etc/cni, /opt/cni and a
 *   sandbox image); the btrfs/zfs/devmapper/aufs snapshotters are disabled
 *   too, they only log noise when their backing store is missing;
 * - `io.containerd.internal.v1.opt` defaults to /opt/containerd: moved into
 *   the temp dir so the host is not touched;
 * - `ctr` resolves registries itself (client side): `--hosts-dir` is a ctr
 *   flag, the daemon's own config_path is not involved.
 */
import {mkdir, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {findExecutable, forgetTempDir, run, type RunResult, spawnDaemon, stopChild, tail, tempDir, waitFor} from './process.js';

export type Containerd = {
	socket: string;
	dir: string;
	pid: number;
	/** `ctr -a SOCKET -n mirror-test ...args`; never throws on a non-zero exit. */
	ctr(args: string[], timeoutMs?: number): Promise<RunResult>;
	log(): string;
	stop(): Promise<void>;
};

export type HostEntry = {
	/** The mirror's base URL, like http://127.0.0.1:5000 (or with a path, with overridePath). */
	url: string;
	capabilities?: Array<'pull' | 'resolve' | 'push'>;
	/** A CA certificate file to trust for this host (https). */
	ca?: string;
	/** The URL already ends in `/v2` (a mirror served under a path prefix). */
	overridePath?: boolean;
};

/** hosts.toml for one registry: `server` is where containerd goes when no host entry answers. */
export function hostsToml(server: string, hosts: HostEntry[]): string {
	const lines = [`server = ${JSON.stringify(server)}`];
	for (const host of hosts) {
		lines.push('', `[host.${JSON.stringify(host.url)}]`);
		lines.push(`  capabilities = [${(host.capabilities ?? ['pull', 'resolve']).map((capability) => JSON.stringify(capability)).join(', ')}]`);
		if (host.ca !== undefined) {
			lines.push(`  ca = ${JSON.stringify(host.ca)}`);
		}

		if (host.overridePath === true) {
			lines.push('  override_path = true');
		}
	}

	return `${lines.join('\n')}\n`;
}

/** Writes DIR/REGISTRY/hosts.toml for each entry and returns DIR (for `ctr images pull --hosts-dir DIR`). */
export async function writeHostsDir(registries: Record<string, {server: string; hosts: HostEntry[]}>): Promise<string> {
	const dir = await tempDir('hosts-');
	for (const [registry, entry] of Object.entries(registries)) {
		await mkdir(join(dir, registry));
		await writeFile(join(dir, registry, 'hosts.toml'), hostsToml(entry.server, entry.hosts));
	}

	return dir;
}

export async function startContainerd(): Promise<Containerd> {
	const containerdPath = findExecutable('containerd');
	const ctrPath = findExecutable('ctr');
	if (containerdPath === null || ctrPath === null) {
		throw new Error('containerd is not installed: run `apt-get install -y containerd`');
	}

	// Unix socket paths are limited to ~100 chars: keep the dir short.
	const dir = await tempDir('ctd-', tmpdir().length > 40 ? '/tmp' : tmpdir());
	const socket = join(dir, 'c.sock');
	const configPath = join(dir, 'config.toml');
	await writeFile(configPath, [
		'version = 2',
		`root = ${JSON.stringify(join(dir, 'root'))}`,
		`state = ${JSON.stringify(join(dir, 'state'))}`,
		'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
		'[grpc]',
		`  address = ${JSON.stringify(socket)}`,
		'[ttrpc]',
		`  address = ${JSON.stringify(`${socket}.ttrpc`)}`,
		'[plugins."io.containerd.internal.v1.opt"]',
		`  path = ${JSON.stringify(join(dir, 'opt'))}`,
		'',
	].join('\n'));

	const daemon = spawnDaemon(containerdPath, ['--config', configPath]);
	const {child, gone} = daemon;
	const ctr = async (args: string[], timeoutMs = 120_000): Promise<RunResult> =>
		run(ctrPath, ['-a', socket, '-n', 'mirror-test', ...args], {timeoutMs});

	let stopped = false;
	const stop = async (): Promise<void> => {
		if (stopped) {
			return;
		}

		stopped = true;
		await stopChild(child, 10_000);
		await rm(dir, {recursive: true, force: true, maxRetries: 3});
		forgetTempDir(dir);
	};

	try {
		await waitFor(async () => gone() || (await ctr(['version'], 5000)).code === 0, `containerd on ${socket}`, 30_000);
		if (gone()) {
			throw new Error(`containerd exited early (${daemon.exitReason()})`);
		}
	} catch (error) {
		await stop();
		throw new Error(`${error instanceof Error ? error.message : String(error)}\n${tail(daemon.logs())}`);
	}

	return {socket, dir, pid: child.pid ?? 0, ctr, log: daemon.logs, stop};
}

/** The manifest (or index) digest `ctr images ls` records for `ref`, or null. */
export async function imageDigest(containerd: Containerd, ref: string): Promise<string | null> {
	const listed = await containerd.ctr(['images', 'ls']);
	for (const line of listed.stdout.split('\n').slice(1)) {
		const columns = line.trim().split(/\s+/);
		if (columns[0] === ref) {
			return columns.find((column) => column.startsWith('sha256:')) ?? null;
		}
	}

	return null;
}
