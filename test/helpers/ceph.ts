/**
 * A throwaway single-node Ceph cluster with S3 through radosgw: one monitor,
 * one memstore OSD and radosgw, each a plain child process in the foreground
 * (`-f`) with its config, keyrings, sockets, data and logs in one temp dir.
 * No manager daemon (mgr commands would hang without one), no systemd,
 * everything on 127.0.0.1 and fresh free ports.
 *
 * Steps: keyrings with ceph-authtool (mon., client.admin and client.rgw are
 * imported into the monitor's keyring before its mkfs, so no `ceph auth` call
 * is needed later), a monmap with monmaptool, `ceph-mon --mkfs` and start;
 * `ceph osd new` (the only `ceph` CLI call), `ceph-osd --mkfs` and start;
 * radosgw, then `radosgw-admin user create` with a random key pair.
 */
import {type ChildProcess, spawn} from 'node:child_process';
import {randomBytes, randomUUID} from 'node:crypto';
import {closeSync, openSync} from 'node:fs';
import {mkdir, readFile, rm, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {CreateBucketCommand, DeleteBucketCommand, S3Client, type S3ClientConfig} from '@aws-sdk/client-s3';
import {findExecutable, stopChild, forgetTempDir, freePort, run, type RunResult, tail, tempDir, trackChild, waitFor} from './process.js';

export type Ceph = {
	/** radosgw's S3 endpoint, like http://127.0.0.1:PORT. */
	endpoint: string;
	accessKey: string;
	secretKey: string;
	/** Ceph accepts any region in SigV4; the SDK needs one. */
	region: string;
	/** Stops radosgw, the OSD and the monitor (each by its pid, waiting for its exit) and removes the temp dir. */
	stop(): Promise<void>;
};

const binaries = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'ceph', 'ceph-authtool', 'monmaptool'] as const;

/** Debian puts the object classes (rgw needs cls_rgw, cls_lock, …) here. */
const classDir = '/usr/lib/x86_64-linux-gnu/rados-classes';

/** Every `ceph` CLI call gets this: it would otherwise wait forever for an unreachable monitor. */
const cliTimeoutMs = 30_000;

type LoggedDaemon = {name: string; child: ChildProcess; logFile: string; gone(): boolean; exitReason(): string};

/**
 * Starts `binary` with stdout and stderr appended to `logFile`. Through `setpriv --pdeathsig SIGKILL`
 * (which execs, so the pid is the daemon's own) when available: a test worker that is killed outright
 * (an ava timeout, SIGKILL) runs no exit hook, and Ceph daemons would otherwise live on as orphans.
 */
function spawnLogged(name: string, binary: string, args: string[], logFile: string): LoggedDaemon {
	const fd = openSync(logFile, 'a');
	let child: ChildProcess;
	try {
		const setpriv = findExecutable('setpriv');
		child = setpriv === null
			? spawn(binary, args, {stdio: ['ignore', fd, fd]})
			: spawn(setpriv, ['--pdeathsig', 'SIGKILL', '--', binary, ...args], {stdio: ['ignore', fd, fd]});
	} finally {
		closeSync(fd);
	}

	trackChild(child, 'SIGKILL');
	let spawnError = '';
	child.once('error', (error) => {
		spawnError = error.message;
	});
	return {
		name,
		child,
		logFile,
		gone: () => child.exitCode !== null || child.signalCode !== null || spawnError !== '',
		exitReason: () => spawnError || `code ${child.exitCode ?? child.signalCode}`,
	};
}

async function readTail(file: string, lines = 30): Promise<string> {
	return tail(await readFile(file, 'utf8').catch(() => ''), lines);
}

function randomKey(length: number, alphabet: string): string {
	const bytes = randomBytes(length);
	let out = '';
	for (const byte of bytes) {
		out += alphabet[byte % alphabet.length];
	}

	return out;
}

function describe(result: RunResult): string {
	return `exit ${result.code}\n${tail(result.stdout, 10)}\n${tail(result.stderr)}`;
}

function cephConf(dir: string, fsid: string, monPort: number, rgwPort: number): string {
	return [
		'[global]',
		`fsid = ${fsid}`,
		`mon_host = v2:127.0.0.1:${monPort}`,
		'public_addr = 127.0.0.1',
		'cluster_addr = 127.0.0.1',
		'ms_bind_msgr2 = true',
		'ms_bind_msgr1 = false',
		`keyring = ${dir}/$name.keyring`,
		`run_dir = ${dir}/run`,
		`admin_socket = ${dir}/run/$name.asok`,
		`pid_file = ${dir}/run/$name.pid`,
		`log_file = ${dir}/log/$name.log`,
		'auth_cluster_required = cephx',
		'auth_service_required = cephx',
		'auth_client_required = cephx',
		'auth_allow_insecure_global_id_reclaim = true',
		'mon_allow_pool_size_one = true',
		'osd_pool_default_size = 1',
		'osd_pool_default_min_size = 1',
		'osd_pool_default_pg_num = 8',
		'osd_pool_default_pg_autoscale_mode = off',
		'osd_crush_chooseleaf_type = 0',
		'mon_max_pg_per_osd = 1000',
		'mon_data_avail_warn = 1',
		'mon_data_avail_crit = 0',
		'paxos_propose_interval = 0.05',
		'paxos_min_wait = 0.01',
		'',
		'[mon.a]',
		`mon_data = ${dir}/mon.a`,
		'',
		'[osd]',
		`osd_data = ${dir}/osd`,
		'osd_objectstore = memstore',
		'memstore_device_bytes = 4294967296',
		`osd_class_dir = ${classDir}`,
		'',
		'[client.rgw]',
		`rgw_frontends = beast endpoint=127.0.0.1:${rgwPort} tcp_nodelay=1`,
		`rgw_data = ${dir}/rgw`,
		'',
	].join('\n');
}

export async function startCeph(): Promise<Ceph> {
	for (const name of binaries) {
		if (findExecutable(name) === null) {
			throw new Error(`${name} is not installed: run \`apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common\``);
		}
	}

	const dir = await tempDir('ceph-');
	await Promise.all(['run', 'log', 'osd', 'rgw'].map(async (sub) => mkdir(join(dir, sub))));
	const fsid = randomUUID();
	const monPort = await freePort();
	let rgwPort = await freePort();
	while (rgwPort === monPort) {
		rgwPort = await freePort();
	}

	const conf = join(dir, 'ceph.conf');
	await writeFile(conf, cephConf(dir, fsid, monPort, rgwPort));
	const endpoint = `http://127.0.0.1:${rgwPort}`;
	const accessKey = randomKey(20, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789');
	const secretKey = randomKey(40, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789');

	const daemons: LoggedDaemon[] = [];
	const stop = async (): Promise<void> => {
		// radosgw, then the OSD, then the monitor; nothing here needs to survive, so the grace is short.
		for (const daemon of [...daemons].reverse()) {
			if (daemon.child.pid !== undefined) {
				// By its pid, waiting for 'exit' (a zombie still passes kill -0).
				await stopChild(daemon.child, 2000);
			}
		}

		await rm(dir, {recursive: true, force: true, maxRetries: 3});
		forgetTempDir(dir);
	};

	/** Runs a setup command; throws with its output on a non-zero exit. */
	const step = async (cmd: string, args: string[], opts: {input?: string; timeoutMs?: number} = {}): Promise<string> => {
		const result = await run(cmd, args, {timeoutMs: opts.timeoutMs ?? cliTimeoutMs, ...(opts.input === undefined ? {} : {input: opts.input})});
		if (result.code !== 0) {
			throw new Error(`${cmd} ${args.join(' ')}: ${describe(result)}`);
		}

		return result.stdout;
	};

	const started = (name: string, binary: string, args: string[]): LoggedDaemon => {
		const daemon = spawnLogged(name, binary, args, join(dir, 'log', `${name}.stderr`));
		daemons.push(daemon);
		return daemon;
	};

	const checkAlive = (): void => {
		for (const daemon of daemons) {
			if (daemon.gone()) {
				throw new Error(`${daemon.name} exited early (${daemon.exitReason()})`);
			}
		}
	};

	try {
		// Keyrings. The monitor's holds mon., client.admin and client.rgw, so the latter two exist from the start.
		const monKeyring = join(dir, 'mon.a.keyring');
		const adminKeyring = join(dir, 'client.admin.keyring');
		const rgwKeyring = join(dir, 'client.rgw.keyring');
		await Promise.all([
			step('ceph-authtool', ['--create-keyring', monKeyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']),
			step('ceph-authtool', [
				'--create-keyring', adminKeyring, '--gen-key', '-n', 'client.admin',
				'--cap', 'mon', 'allow *', '--cap', 'osd', 'allow *', '--cap', 'mds', 'allow *', '--cap', 'mgr', 'allow *',
			]),
			step('ceph-authtool', ['--create-keyring', rgwKeyring, '--gen-key', '-n', 'client.rgw', '--cap', 'mon', 'allow rw', '--cap', 'osd', 'allow rwx']),
			step('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, join(dir, 'monmap')]),
		]);
		await step('ceph-authtool', [monKeyring, '--import-keyring', adminKeyring]);
		await step('ceph-authtool', [monKeyring, '--import-keyring', rgwKeyring]);

		// Monitor.
		await step('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap'), '--keyring', monKeyring, '-c', conf]);
		started('mon.a', 'ceph-mon', ['-f', '-i', 'a', '-c', conf]);

		// OSD: registered with the monitor (which also tells us it is up), then created and started.
		const osdUuid = randomUUID();
		const osdKey = (await step('ceph-authtool', ['--gen-print-key'])).trim();
		const osdNewJson = join(dir, 'osd-new.json');
		await writeFile(osdNewJson, JSON.stringify({cephx_secret: osdKey}));
		const osdId = (
			await step('ceph', ['-c', conf, '--connect-timeout', '20', 'osd', 'new', osdUuid, '-i', osdNewJson], {timeoutMs: cliTimeoutMs})
		).trim();
		if (osdId !== '0') {
			throw new Error(`ceph osd new answered ${JSON.stringify(osdId)}, expected 0`);
		}

		await writeFile(join(dir, 'osd.0.keyring'), `[osd.0]\n\tkey = ${osdKey}\n`);
		await step('ceph-osd', ['--mkfs', '-i', '0', '--osd-uuid', osdUuid, '-c', conf]);
		started('osd.0', 'ceph-osd', ['-f', '-i', '0', '-c', conf]);

		// radosgw creates its pools itself (they go active once the OSD is up) and then serves HTTP.
		const rgw = started('client.rgw', 'radosgw', ['-f', '-n', 'client.rgw', '-c', conf]);
		await waitFor(
			async () => {
				checkAlive();
				const response = await fetch(`${endpoint}/`, {signal: AbortSignal.timeout(2000)});
				await response.arrayBuffer();
				return true;
			},
			`radosgw on ${endpoint}`,
			60_000,
		);
		checkAlive();

		await step('radosgw-admin', [
			'-c', conf, '--client_mount_timeout=20', 'user', 'create', '--uid=test', '--display-name=test', `--access-key=${accessKey}`, `--secret=${secretKey}`,
		]);
		if (rgw.gone()) {
			throw new Error(`radosgw exited (${rgw.exitReason()})`);
		}

		// radosgw answers HTTP before it can store anything: a mirror's first CreateBucket once got a body that
		// was not S3 XML. Ready means a bucket can be made (and removed again).
		const probe = s3ClientFor({endpoint, accessKey, secretKey, region: 'us-east-1', stop: async () => undefined});
		const bucket = `ready-${randomBytes(4).toString('hex')}`;
		await waitFor(
			async () => {
				checkAlive();
				await probe.send(new CreateBucketCommand({Bucket: bucket})).catch((error: {name?: string}) => {
					if (error.name !== 'BucketAlreadyOwnedByYou') {
						throw error;
					}
				});
				await probe.send(new DeleteBucketCommand({Bucket: bucket}));
				return true;
			},
			`radosgw creating a bucket on ${endpoint}`,
			60_000,
		);
		probe.destroy();
	} catch (error) {
		const logs: string[] = [];
		for (const daemon of daemons) {
			const stderr = await readTail(daemon.logFile, 10);
			const log = await readTail(join(dir, 'log', `${daemon.name}.log`), 20);
			logs.push(`--- ${daemon.name} (${daemon.gone() ? daemon.exitReason() : 'running'})\n${stderr}\n${log}`);
		}

		await stop();
		throw new Error(`startCeph: ${error instanceof Error ? error.message : String(error)}\n${logs.join('\n')}`);
	}

	return {endpoint, accessKey, secretKey, region: 'us-east-1', stop};
}

/**
 * An S3 client for `ceph`, set up as radosgw wants it: path-style bucket
 * addressing, and checksums only where an operation requires them (with the
 * SDK's default, streamed uploads use chunked encoding, which radosgw answers with 411).
 */
export function s3ClientFor(ceph: Ceph, more: Partial<S3ClientConfig> = {}): S3Client {
	return new S3Client({
		...more,
		endpoint: ceph.endpoint,
		region: ceph.region,
		credentials: {accessKeyId: ceph.accessKey, secretAccessKey: ceph.secretKey},
		forcePathStyle: true,
		requestChecksumCalculation: 'WHEN_REQUIRED',
		responseChecksumValidation: 'WHEN_REQUIRED',
	});
}
