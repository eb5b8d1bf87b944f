/**
 * A throwaway PostgreSQL 15 cluster: `initdb` into a temp dir and `postgres`
 * in the foreground as a child, listening on 127.0.0.1 and a free port (its
 * unix socket in the temp dir too), trust auth for the `postgres` superuser,
 * no fsync. initdb and postgres refuse to run as root: when the tests run as
 * root, the temp dir is chowned to the postgres user, initdb runs through
 * `runuser -u postgres` and the server through `setpriv` (which execs, so the
 * child's pid is the postmaster's own). Otherwise both run as the current user
 * (the server still through `setpriv`, for its parent-death signal).
 */
import {type ChildProcess, spawn} from 'node:child_process';
import {closeSync, constants, openSync} from 'node:fs';
import {access, chown, readFile, rm} from 'node:fs/promises';
import {join} from 'node:path';
import pg from 'pg';
import {exited, forgetTempDir, freePort, run, tail, tempDir, trackChild, waitFor} from './process.js';

export type Postgres = {
	/** postgres://postgres@127.0.0.1:PORT/postgres */
	url: string;
	/** Fast shutdown (SIGINT to the postmaster by its pid), waits for its exit, removes the temp dir. */
	stop(): Promise<void>;
	/** Creates a fresh, empty database and returns its url. */
	createDatabase(name: string): Promise<string>;
};

const binDir = '/usr/lib/postgresql/15/bin';

/** Several mirror replicas, each with a pool, connect at once. */
const maxConnections = 200;

async function postgresUser(): Promise<{uid: number; gid: number}> {
	const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
	if (uid.code !== 0 || gid.code !== 0) {
		throw new Error('running as root, but there is no postgres user to run initdb and postgres as (the postgresql-15 package creates it)');
	}

	return {uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim())};
}

async function selectOne(url: string): Promise<boolean> {
	const client = new pg.Client({connectionString: url, connectionTimeoutMillis: 2000});
	try {
		await client.connect();
		const result = await client.query<{one: number}>('SELECT 1 AS one');
		return result.rows[0]?.one === 1;
	} finally {
		await client.end().catch(() => undefined);
	}
}

export async function startPostgres(): Promise<Postgres> {
	const initdb = join(binDir, 'initdb');
	const postgres = join(binDir, 'postgres');
	try {
		await access(postgres, constants.X_OK);
	} catch {
		throw new Error(`${postgres} is not installed: run \`apt-get install -y postgresql-15\``);
	}

	const asRoot = process.getuid?.() === 0;
	// As root the postgres user must be able to reach the data dir: /tmp is world-traversable (TMPDIR may not be).
	const dir = await tempDir('postgres-', asRoot ? '/tmp' : undefined);
	const dataDir = join(dir, 'data');
	const logFile = join(dir, 'postgres.log');
	if (asRoot) {
		const {uid, gid} = await postgresUser();
		await chown(dir, uid, gid);
	}

	let child: ChildProcess | null = null;
	const stop = async (): Promise<void> => {
		if (child !== null && child.exitCode === null && child.signalCode === null) {
			const done = exited(child);
			// SIGINT is the fast shutdown: it does not wait for clients to disconnect (SIGTERM would).
			child.kill('SIGINT');
			const running = child;
			const timer = setTimeout(() => {
				running.kill('SIGKILL');
			}, 10_000);
			await done;
			clearTimeout(timer);
		}

		await rm(dir, {recursive: true, force: true, maxRetries: 3});
		forgetTempDir(dir);
	};

	const port = await freePort();
	const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
	try {
		const initdbArgs = ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-locale', '--encoding=UTF8', '--no-instructions'];
		const init = asRoot
			? await run('runuser', ['-u', 'postgres', '--', initdb, ...initdbArgs], {timeoutMs: 60_000})
			: await run(initdb, initdbArgs, {timeoutMs: 60_000});
		if (init.code !== 0) {
			throw new Error(`initdb failed (exit ${init.code})\n${tail(init.stdout, 10)}\n${tail(init.stderr)}`);
		}

		const serverArgs = [
			'-D', dataDir,
			'-k', dir,
			'-p', String(port),
			'-c', 'listen_addresses=127.0.0.1',
			'-c', `max_connections=${maxConnections}`,
			'-c', 'fsync=off',
			'-c', 'synchronous_commit=off',
			'-c', 'full_page_writes=off',
		];
		// setpriv execs (the child's pid is the postmaster's) and, with --pdeathsig, makes a test worker that is
		// killed outright (no exit hook runs) take the server along rather than leave it orphaned.
		const setprivArgs = [...(asRoot ? ['--reuid=postgres', '--regid=postgres', '--init-groups'] : []), '--pdeathsig', 'SIGINT', '--'];
		const fd = openSync(logFile, 'a');
		try {
			child = spawn('setpriv', [...setprivArgs, postgres, ...serverArgs], {stdio: ['ignore', fd, fd], cwd: dir});
		} finally {
			closeSync(fd);
		}

		trackChild(child, 'SIGINT');
		let spawnError = '';
		child.once('error', (error) => {
			spawnError = error.message;
		});
		const server = child;
		const gone = (): boolean => server.exitCode !== null || server.signalCode !== null || spawnError !== '';
		await waitFor(async () => gone() || selectOne(url), `postgres on 127.0.0.1:${port}`, 30_000);
		if (gone()) {
			throw new Error(`postgres exited early (${spawnError || `code ${server.exitCode ?? server.signalCode}`})`);
		}
	} catch (error) {
		const log = await readFile(logFile, 'utf8').catch(() => '');
		await stop();
		throw new Error(`startPostgres: ${error instanceof Error ? error.message : String(error)}\n${tail(log)}`);
	}

	const createDatabase = async (name: string): Promise<string> => {
		const client = new pg.Client({connectionString: url, connectionTimeoutMillis: 5000});
		await client.connect();
		try {
			await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
		} finally {
			await client.end();
		}

		return `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(name)}`;
	};

	return {url, stop, createDatabase};
}
