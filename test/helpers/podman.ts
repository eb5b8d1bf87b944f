/**
 * podman (Debian package `podman`, 4.3 on bookworm) isolated from the host's
 * containers config: its own root and runroot under a temp dir, the vfs
 * storage driver, cgroupfs and file events (no systemd needed), and our own
 * registries.conf, containers.conf, storage.conf and signature policy through
 * the environment variables containers/image and containers/storage read.
 *
 * Debian-package notes:
 * - without CONTAINERS_STORAGE_CONF, /etc/containers/storage.conf would be
 *   read (and its driver options applied); an empty one is refused
 *   ("runroot must be set"), so ours names the driver, graphroot and runroot;
 * - `--signature-policy` is a hidden flag of `podman pull` (still works in 4.3);
 *   without it /etc/containers/policy.json applies;
 * - image layers are staged in $TMPDIR (default /var/tmp): moved to the temp dir.
 */
import {mkdir, rm, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {findExecutable, forgetTempDir, run, type RunResult, tempDir} from './process.js';

export type Podman = {
	dir: string;
	registriesConf: string;
	policy: string;
	/** `podman --root ... --runroot ... --storage-driver vfs ... ARGS`; never throws on a non-zero exit. */
	podman(args: string[], timeoutMs?: number): Promise<RunResult>;
	/** `podman pull --signature-policy POLICY ...args`. */
	pull(args: string[], timeoutMs?: number): Promise<RunResult>;
	stop(): Promise<void>;
};

export type RegistryMirrorEntry = {
	/** The name clients use, like docker.io or ghcr.io. */
	prefix: string;
	/** The real registry (unreachable here; only the mirror answers). */
	location: string;
	/** Mirror locations, host:port[/path]; a path is prepended to the repository name. */
	mirrors: Array<{location: string; insecure?: boolean}>;
};

/** A registries.conf (v2 format) with one [[registry]] per entry and its [[registry.mirror]] tables. */
export function registriesConf(entries: RegistryMirrorEntry[]): string {
	const lines: string[] = ['unqualified-search-registries = []'];
	for (const entry of entries) {
		lines.push('', '[[registry]]', `prefix = ${JSON.stringify(entry.prefix)}`, `location = ${JSON.stringify(entry.location)}`);
		for (const mirror of entry.mirrors) {
			lines.push('', '[[registry.mirror]]', `location = ${JSON.stringify(mirror.location)}`);
			if (mirror.insecure === true) {
				lines.push('insecure = true');
			}
		}
	}

	return `${lines.join('\n')}\n`;
}

export async function startPodman(options: {registries: RegistryMirrorEntry[]}): Promise<Podman> {
	const binary = findExecutable('podman');
	if (binary === null) {
		throw new Error('podman is not installed: run `apt-get install -y podman`');
	}

	const dir = await tempDir('podman-');
	const registriesConfPath = join(dir, 'registries.conf');
	const policy = join(dir, 'policy.json');
	const tmp = join(dir, 'tmp');
	await mkdir(tmp);
	await Promise.all([
		writeFile(registriesConfPath, registriesConf(options.registries)),
		writeFile(policy, JSON.stringify({default: [{type: 'insecureAcceptAnything'}]})),
		writeFile(join(dir, 'containers.conf'), ''),
		// An empty storage.conf is refused ("runroot must be set"): name the same places as the flags.
		writeFile(join(dir, 'storage.conf'), [
			'[storage]',
			'driver = "vfs"',
			`runroot = ${JSON.stringify(join(dir, 'run'))}`,
			`graphroot = ${JSON.stringify(join(dir, 'root'))}`,
			'',
		].join('\n')),
		writeFile(join(dir, 'auth.json'), JSON.stringify({auths: {}})),
	]);
	const env: NodeJS.ProcessEnv = {
		...process.env,
		CONTAINERS_REGISTRIES_CONF: registriesConfPath,
		CONTAINERS_CONF: join(dir, 'containers.conf'),
		CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
		REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
		TMPDIR: tmp,
	};
	const global = [
		'--root', join(dir, 'root'),
		'--runroot', join(dir, 'run'),
		'--tmpdir', join(dir, 'libpod-tmp'),
		'--storage-driver', 'vfs',
		'--cgroup-manager', 'cgroupfs',
		'--events-backend', 'file',
	];
	const podman = async (args: string[], timeoutMs = 120_000): Promise<RunResult> => run(binary, [...global, ...args], {env, timeoutMs});
	let stopped = false;
	return {
		dir,
		registriesConf: registriesConfPath,
		policy,
		podman,
		pull: async (args, timeoutMs) => podman(['pull', '--signature-policy', policy, ...args], timeoutMs),
		async stop() {
			if (stopped) {
				return;
			}

			stopped = true;
			// No daemon: nothing runs between commands. vfs layers are full copies; remove them now.
			await rm(dir, {recursive: true, force: true, maxRetries: 3});
			forgetTempDir(dir);
		},
	};
}
