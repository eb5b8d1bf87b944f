/**
 * The composition root: openRegistry(config) opens the stores and builds
 * every service and layer for a config, wired downward only (see the
 * README's Architecture section). Nothing else constructs services; the
 * HTTP application (http/app.ts) is built around what this returns.
 */
import {Htpasswd} from '../auth/htpasswd.js';
import {ClusterBlobs} from '../cluster/cluster-blobs.js';
import {type FillCoordinator} from '../cluster/coordination.js';
import {Coordinator, advertiseUrl} from '../cluster/coordinator.js';
import {type PrimaryLink, WorkerCoordinator} from '../cluster/workers.js';
import {Peers} from '../cluster/peers.js';
import {type Config, ConfigError} from '../config/load.js';
import {type BlobSource} from '../fill/source.js';
import {StoredBlobs} from '../fill/stored.js';
import {UpstreamFills} from '../fill/upstream-fills.js';
import {LocalWriter} from '../local/push.js';
import {LocalService} from '../local/service.js';
import {UploadService} from '../local/uploads.js';
import {Metrics} from '../ops/metrics.js';
import {Notifier} from '../ops/notify.js';
import {ProxyBlobs} from '../proxy/blobs.js';
import {ProxyManifests} from '../proxy/manifests.js';
import {ProxyService} from '../proxy/service.js';
import {NamespaceRouter} from '../service/namespaces.js';
import {AccessRecorder} from '../store/access.js';
import {type BlobStore} from '../store/blob-store.js';
import {Maintenance} from '../store/maintenance.js';
import {type MetadataStore} from '../store/metadata.js';
import {type Stores, openStores} from '../store/open.js';
import {Quota, type Exclusive, alone} from '../store/quota.js';
import {type Logger} from '../util/log.js';
import {upstreamClients} from './upstreams.js';
import {type UpstreamClient} from '../upstream/client.js';

export type Registry = {
	config: Config;
	log: Logger;
	metadata: MetadataStore;
	blobs: BlobStore;
	/** The fill layer: this process's fills in flight. */
	fills: UpstreamFills;
	access: AccessRecorder;
	upstreams: Map<string, UpstreamClient>;
	proxy: ProxyService;
	local: LocalService;
	writer: LocalWriter;
	uploads: UploadService;
	namespaces: NamespaceRouter;
	htpasswd?: Htpasswd;
	maintenance: Maintenance;
	metrics: Metrics;
	notifier: Notifier;
	/** With PostgreSQL or workers: the shared locks and fill hand-over among replicas or workers. */
	coordinator?: FillCoordinator;
	/** With PostgreSQL or workers: the cluster layer, and the key the others show to read fills here. */
	cluster?: {blobs: ClusterBlobs; key: string};
	/** Readiness checks of the shared stores (S3, PostgreSQL), by name. */
	checks: Record<string, () => Promise<unknown>>;
	/** Signs this registry's Bearer tokens; shared by every replica of one store. */
	tokenSecret: Buffer;
	/** In a worker: tells the other workers this one changed the store, once they have taken note. */
	announceChange?: () => Promise<void>;
	close(): Promise<void>;
};

/** The htpasswd file of `auth`, or a config error naming the key. */
export function loadHtpasswd(config: Config): Htpasswd | undefined {
	if (!config.auth) {
		return undefined;
	}

	try {
		return Htpasswd.load(config.auth.htpasswd);
	} catch (error) {
		throw new ConfigError(`config: auth.htpasswd: ${(error as Error).message}`);
	}
}

/**
 * The cluster coordinator over the store's PostgreSQL. Offline (CLI), only its
 * maintenance lock is used: it takes part in no fill and opens no lock connection.
 */
export async function openCoordinator(config: Config, postgres: Stores['postgres'], log: Logger, options: {offline?: boolean} = {}): Promise<Coordinator | undefined> {
	if (!postgres) {
		return undefined;
	}

	const coordinator = new Coordinator(postgres.pool, postgres.url, options.offline ? 'cli' : advertiseUrl(config), log);
	if (!options.offline) {
		await coordinator.start();
	}

	return coordinator;
}

/** Removes what interrupted fills left in the store's scratch space (before anything fills again). */
export async function sweepLeftovers(blobs: Pick<BlobStore, 'sweepTemp'>, log: Logger): Promise<void> {
	const leftovers = await blobs.sweepTemp();
	if (leftovers > 0) {
		log.info({count: leftovers}, 'removed leftovers of interrupted fills');
	}
}

export type RegistryOptions = {
	/**
	 * In a worker process (`workers` > 1): the channel to the primary, which
	 * coordinates fills and maintenance among workers (SQLite) and has swept
	 * the scratch space before starting them.
	 */
	worker?: {primary: PrimaryLink; clusterKey: string};
};

export async function openRegistry(config: Config, log: Logger, options: RegistryOptions = {}): Promise<Registry> {
	const htpasswd = loadHtpasswd(config);
	const stores = await openStores(config);
	const {blobs, metadata} = stores;
	const {worker} = options;
	const coordinator: FillCoordinator | undefined =
		(await openCoordinator(config, stores.postgres, log)) ?? (worker ? new WorkerCoordinator(worker.primary, '', worker.clusterKey) : undefined);
	const checks = {...stores.checks, ...(coordinator ? {cluster: async () => coordinator.ping()} : {})};
	if (worker) {
		worker.primary.onStoreChanged(() => metadata.generationChanged());
	} else {
		await sweepLeftovers(blobs, log);
	}

	/** With several replicas, maintenance runs on one at a time; a replica finding another at it skips its turn. */
	const exclusive: Exclusive = coordinator ? async task => coordinator.exclusive(task) : alone;
	const access = new AccessRecorder(metadata, undefined, log);
	const upstreams = new Map<string, UpstreamClient>();
	const metrics = new Metrics({
		fillsInFlight: () => fills.size,
		storeBytes: async () => ({cached: await metadata.cachedBytes(), pushed: await metadata.pushedBytes()}),
		maxSize: config.storage.maxSize,
		upstreams: () =>
			[...upstreams.values()].map(client => ({
				name: client.name,
				url: client.config.url,
				state: client.breaker.state,
				rateLimitRemaining: client.rateLimitRemaining,
				offline: client.config.offline,
				...client.health,
			})),
	});
	const upstream = upstreamClients(config, upstreams, metrics, log);

	const uploads = new UploadService(metadata, blobs, log);
	await exclusive(async () => uploads.sweep());
	const sweeper = setInterval(() => void exclusive(async () => uploads.sweep()).catch(error => log.warn({err: error}, 'upload sweep failed')), 60 * 60_000);
	sweeper.unref();

	const maintenance = new Maintenance(metadata, blobs, access, log, config.storage.maxSize);
	const stored = new StoredBlobs({index: metadata, content: blobs, access});
	const fills = new UpstreamFills(stored, {
		content: blobs,
		index: metadata,
		quota: config.storage.maxSize === undefined ? undefined : new Quota(maintenance, exclusive, log),
		onFetched: (name, bytes) => metrics.bytesFetched.inc({upstream: name}, bytes),
		onResume: (name, digest, from, error) => {
			metrics.fillResumes.inc({upstream: name});
			log.warn({upstream: name, digest: digest.value, from, reason: error.message}, 'upstream body broke; resuming the fill from where it stopped');
		},
	});
	const cluster = coordinator
		? {blobs: new ClusterBlobs(fills, {coordinator, peers: new Peers(coordinator.clusterKey), content: blobs, log}), key: coordinator.clusterKey}
		: undefined;
	const source: BlobSource = cluster?.blobs ?? fills;
	const manifests = new ProxyManifests({
		metadata,
		upstream,
		access,
		log,
		onResult: (name, outcome) => {
			metrics.cache.inc({kind: 'manifest', outcome, upstream: name});
			if (outcome === 'stale') {
				metrics.staleServed.inc({upstream: name});
			}
		},
	});
	const proxyBlobs = new ProxyBlobs({source, upstream, onResult: (name, outcome) => metrics.cache.inc({kind: 'blob', outcome, upstream: name})});
	return {
		config,
		log,
		metadata,
		blobs,
		fills,
		access,
		upstreams,
		proxy: new ProxyService(manifests, proxyBlobs, metadata, upstream),
		local: new LocalService(metadata, blobs, access),
		writer: new LocalWriter(metadata),
		uploads,
		namespaces: new NamespaceRouter(config),
		htpasswd,
		maintenance,
		metrics,
		notifier: new Notifier(config.notifications, log),
		coordinator,
		cluster,
		checks,
		tokenSecret: Buffer.from(await metadata.sharedSecret('token-secret'), 'hex'),
		announceChange: worker ? async () => worker.primary.storeChanged() : undefined,
		async close() {
			clearInterval(sweeper);
			await fills.drain();
			await access.close();
			await coordinator?.close();
			await stores.close();
		},
	};
}
