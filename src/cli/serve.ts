/**
 * `registry-mirror serve`: load the config, open the stores, listen, and
 * drain on SIGTERM. With `workers` > 1 (auto: one per core) the process is
 * a primary that forks that many workers sharing the listening socket (node's
 * cluster module): it sweeps the scratch space once, keeps the fill and
 * maintenance locks (cluster/workers.ts), sums the workers' metrics and
 * starts a new worker when one dies.
 */
import cluster, {type Worker} from 'node:cluster';
import {randomBytes} from 'node:crypto';
import {type Server} from 'node:http';
import client from 'prom-client';
import {loadHtpasswd, openRegistry, sweepLeftovers, type Registry} from '../compose/registry.js';
import {createApp} from '../http/app.js';
import {createServer} from '../http/server.js';
import {type Config} from '../config/load.js';
import {createLogger, type Logger} from '../util/log.js';
import {advertiseUrl} from '../cluster/coordinator.js';
import {LockTable, PrimaryLink, WorkerCoordinator} from '../cluster/workers.js';
import {openStores} from '../store/open.js';

/** The cluster key of one machine's workers, handed to them by the primary. */
const WORKER_KEY_ENV = 'MIRROR_WORKER_CLUSTER_KEY';
/** How long in-flight responses get to finish on SIGTERM before their connections are cut. */
const DRAIN_MS = 10_000;

export async function serve(config: Config): Promise<void> {
	const log = createLogger(process.env['LOG_LEVEL'] ?? config.logLevel);
	if (cluster.isWorker) {
		await serveWorker(config, log.child({worker: cluster.worker!.id}));
	} else if (config.workers > 1) {
		await servePrimary(config, log);
	} else {
		await serveAlone(config, log);
	}
}

/** `exclusive`: a port of this process's own, even in a worker (a cluster worker's listen is otherwise shared). */
async function listen(server: Server, port: number, host: string, exclusive = false): Promise<number> {
	await new Promise<void>((resolve, reject) => {
		server.once('error', reject);
		server.listen({port, host, exclusive}, resolve);
	});
	const address = server.address();
	return typeof address === 'object' && address ? address.port : port;
}

function ready(config: Config, log: Logger, port: number, extra: Record<string, unknown> = {}): void {
	log.info(
		{listen: `${config.listen.host}:${port}`, tls: Boolean(config.tls), storage: config.storage.dir, upstreams: [...config.upstreams.keys()], ...extra},
		'registry mirror ready',
	);
	if (!config.auth) {
		log.warn('no auth configured: anyone who can reach this port may pull, and push to local namespaces');
	}
}

/** Stops taking requests, lets the ones in flight finish (cut after DRAIN_MS), closes the stores, exits. */
function drainOnSignals(servers: Server[], registry: Registry, log: Logger): void {
	let stopping = false;
	const stop = (signal: string) => {
		if (stopping) {
			return;
		}

		stopping = true;
		log.info({signal}, 'shutting down: draining requests and fills');
		for (const server of servers) {
			server.close();
			server.closeIdleConnections();
		}

		setTimeout(() => {
			for (const server of servers) {
				server.closeAllConnections();
			}
		}, DRAIN_MS).unref();
		void registry.close().finally(() => {
			log.flush();
			process.exit(0);
		});
	};

	process.on('SIGTERM', () => {
		stop('SIGTERM');
	});
	process.on('SIGINT', () => {
		stop('SIGINT');
	});
}

/** One process does everything (`workers: 1`). */
async function serveAlone(config: Config, log: Logger): Promise<void> {
	const registry = await openRegistry(config, log);
	const server = createServer(createApp(registry), config);
	const port = await listen(server, config.listen.port, config.listen.host);
	if (registry.coordinator && !config.advertiseUrl) {
		registry.coordinator.self = advertiseUrl(config, port);
	}

	ready(config, log, port);
	drainOnSignals([server], registry, log);
}

async function serveWorker(config: Config, log: Logger): Promise<void> {
	const clusterKey = process.env[WORKER_KEY_ENV] ?? '';
	const primary = new PrimaryLink({send: message => process.send?.(message), on: (event, listener) => process.on(event, listener)});
	const registry = await openRegistry(config, log, {worker: {primary, clusterKey}});
	const app = createApp(registry);
	const server = createServer(app, config);
	// Its own port for the other workers (and replicas) to read its fills in progress: the shared one lands on any worker.
	const internal = createServer(app, {tls: undefined});
	const shared = registry.coordinator instanceof WorkerCoordinator;
	const internalPort = await listen(internal, 0, shared ? '127.0.0.1' : config.listen.host, true);
	if (registry.coordinator) {
		registry.coordinator.self = shared ? `http://127.0.0.1:${internalPort}` : advertiseUrl({...config, tls: undefined}, internalPort);
	}

	registry.metrics.shareWithPrimary(async () => (await primary.ask('metrics')) as string);

	await listen(server, config.listen.port, config.listen.host);
	log.debug({internal: internalPort}, 'worker ready');
	// The primary is gone (killed): nobody coordinates fills any more, so stop rather than serve alone.
	process.on('disconnect', () => {
		log.warn('the primary process is gone; this worker stops');
		process.exit(1);
	});
	drainOnSignals([server, internal], registry, log);
}

/** The primary: forks the workers and coordinates them; serves no requests itself. */
async function servePrimary(config: Config, log: Logger): Promise<void> {
	// What would stop every worker at start-up stops the primary first, with one line.
	loadHtpasswd(config);
	// Before any worker can start a fill: what interrupted ones left behind goes.
	const stores = await openStores(config);
	try {
		await sweepLeftovers(stores.blobs, log);
	} finally {
		await stores.close();
	}

	const aggregator = new client.AggregatorRegistry();
	const locks = new LockTable({metrics: async () => aggregator.clusterMetrics()});
	const env = {[WORKER_KEY_ENV]: randomBytes(32).toString('hex')};
	let stopping = false;
	let listening = 0;

	const started = new Set<number>();
	const fork = (): Worker => {
		const worker = cluster.fork(env);
		locks.attach(worker.id, worker);
		worker.once('listening', address => {
			started.add(worker.id);
			if (++listening === config.workers) {
				ready(config, log, address.port, {workers: config.workers});
			}
		});
		return worker;
	};

	cluster.on('exit', (worker, code, signal) => {
		locks.exited(worker.id);
		if (stopping) {
			if (Object.keys(cluster.workers ?? {}).length === 0) {
				log.flush();
				process.exit(process.exitCode ?? 0);
			}

			return;
		}

		if (!started.has(worker.id)) {
			// It never served: a new one would fail the same way (its error is on stderr above).
			log.error({worker: worker.id, code, signal}, 'a worker failed to start; stopping');
			stop('SIGTERM');
			process.exitCode = 1;
			return;
		}

		log.warn({worker: worker.id, code, signal}, 'worker exited; starting another');
		setTimeout(fork, 1000).unref();
	});

	const stop = (signal: NodeJS.Signals) => {
		if (stopping) {
			return;
		}

		stopping = true;
		log.info({signal}, 'shutting down: workers drain their requests and fills');
		for (const worker of Object.values(cluster.workers ?? {})) {
			worker?.process.kill('SIGTERM');
		}

		// A worker that does not finish in time is cut.
		setTimeout(() => {
			for (const worker of Object.values(cluster.workers ?? {})) {
				worker?.process.kill('SIGKILL');
			}
		}, DRAIN_MS + 5000).unref();
	};

	process.on('SIGTERM', () => {
		stop('SIGTERM');
	});
	process.on('SIGINT', () => {
		stop('SIGINT');
	});

	for (let index = 0; index < config.workers; index++) {
		fork();
	}
}
