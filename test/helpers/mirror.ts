/**
 * Starts this mirror in the test process on 127.0.0.1:0 with a config built
 * from an object (as it would be written in mirror.config.yml).
 */
import {createHash} from 'node:crypto';
import {type Server} from 'node:http';
import {openRegistry, type Registry} from '../../src/compose/registry.js';
import {createApp} from '../../src/http/app.js';
import {createServer} from '../../src/http/server.js';
import {parseConfig} from '../../src/config/load.js';
import {silentLogger, createLogger} from '../../src/util/log.js';
import {type Ceph, startCeph} from './ceph.js';
import {type Postgres, startPostgres} from './postgres.js';
import {closeServer, listenLocal, tempDir} from './process.js';

export type Mirror = {
	url: string;
	/** host:port, for image references like `${host}/library/app:1`. */
	host: string;
	registry: Registry;
	dataDir: string;
	stop(): Promise<void>;
};

export type MirrorOptions = {
	upstreams?: Record<string, Record<string, unknown>>;
	namespaces?: Array<Record<string, unknown>>;
	dataDir?: string;
	extra?: Record<string, unknown>;
	port?: number;
};

/**
 * MIRROR_TEST_STORES=s3+postgres runs the same tests on the scale-out
 * drivers: one Ceph (radosgw) and one PostgreSQL per test process, and per
 * data dir its own bucket and database, so a mirror restarted on the same
 * data dir finds its store again.
 */
const sharedStores = process.env['MIRROR_TEST_STORES'];
if (sharedStores !== undefined && sharedStores !== 's3+postgres') {
	throw new Error(`MIRROR_TEST_STORES: only s3+postgres is known, not ${sharedStores}`);
}

let servers: Promise<{ceph: Ceph; postgres: Postgres}> | undefined;
const databases = new Map<string, Promise<string>>();

export async function sharedStoreServers(): Promise<{ceph: Ceph; postgres: Postgres}> {
	servers ??= Promise.all([startCeph(), startPostgres()]).then(([ceph, postgres]) => ({ceph, postgres}));
	return servers;
}

/** Stops the shared Ceph and PostgreSQL, if this test process started them (register with test.after.always). */
export async function stopSharedStoreServers(): Promise<void> {
	const started = servers;
	servers = undefined;
	databases.clear();
	if (started) {
		const {ceph, postgres} = await started;
		await Promise.all([ceph.stop(), postgres.stop()]);
	}
}

/** The storage and metadata config keys of the scale-out drivers, for the store kept in `dataDir`. */
export async function scaleOutStores(
	dataDir: string,
	/** Replicas of one cluster pass the same name (a bucket and a database), each with its own data dir. */
	storeName?: string,
): Promise<{storage: Record<string, unknown>; metadata: Record<string, unknown>}> {
	const {ceph, postgres} = await sharedStoreServers();
	const name = storeName ?? `m${createHash('sha256').update(dataDir).digest('hex').slice(0, 20)}`;
	let database = databases.get(name);
	if (!database) {
		database = postgres.createDatabase(name);
		databases.set(name, database);
	}

	return {
		storage: {
			dir: dataDir,
			driver: 's3',
			s3: {endpoint: ceph.endpoint, bucket: name, region: ceph.region, access_key: ceph.accessKey, secret_key: ceph.secretKey, prefix: 'mirror/'},
		},
		metadata: {driver: 'postgres', url: await database},
	};
}

export async function startMirror(options: MirrorOptions): Promise<Mirror> {
	const dataDir = options.dataDir ?? (await tempDir('mirror-data-'));
	const upstreams = options.upstreams ?? {};
	const stores = sharedStores ? await scaleOutStores(dataDir) : {};
	const config = parseConfig(
		{
			listen: '127.0.0.1:0',
			...stores,
			upstreams,
			namespaces: options.namespaces ?? [
				{prefix: 'private/', local: true},
				...(Object.keys(upstreams)[0] ? [{prefix: '', upstream: Object.keys(upstreams)[0]}] : []),
			],
			...options.extra,
			// `extra.storage` adds keys (max_size, …) to the test's own store rather than replacing it.
			storage: {dir: dataDir, ...(stores as {storage?: object}).storage, ...(options.extra?.['storage'] as object | undefined)},
		},
		process.cwd(),
	);
	const log = process.env['MIRROR_TEST_LOG'] ? createLogger(process.env['MIRROR_TEST_LOG']) : silentLogger();
	const registry = await openRegistry(config, log);
	const app = createApp(registry);
	const server: Server = createServer(app, config);
	const port = await listenLocal(server, options.port ?? 0);
	if (registry.coordinator) {
		registry.coordinator.self = `http://127.0.0.1:${port}`;
	}

	let stopped = false;
	return {
		url: `http://127.0.0.1:${port}`,
		host: `127.0.0.1:${port}`,
		registry,
		dataDir,
		async stop() {
			if (stopped) {
				return;
			}

			stopped = true;
			server.closeAllConnections();
			await closeServer(server);
			await registry.close();
		},
	};
}
