/**
 * Opens the drivers a config names: the blob store (filesystem or S3), the
 * metadata store (SQLite or PostgreSQL) and, with PostgreSQL, the cluster
 * coordinator that lets several replicas share them.
 */
import {existsSync} from 'node:fs';
import {hostname} from 'node:os';
import path from 'node:path';
import {Coordinator} from '../cluster/coordinator.js';
import {type Config, ConfigError} from '../config/load.js';
import {type Logger} from '../log.js';
import {type BlobStore} from './blob-store.js';
import {FsBlobStore} from './fs/index.js';
import {type MetadataStore} from './metadata.js';
import {PostgresMetadataStore} from './postgres/index.js';
import {S3BlobStore} from './s3/index.js';
import {SqliteMetadataStore} from './sqlite/index.js';

export type Stores = {
	blobs: BlobStore;
	metadata: MetadataStore;
	/** Set with PostgreSQL metadata: replicas coordinate fills and maintenance through it (offline: maintenance only). */
	coordinator?: Coordinator;
	/** Named readiness checks beyond the local storage directory. */
	checks: Record<string, () => Promise<unknown>>;
	close(): Promise<void>;
};

/** Where other replicas reach this one: `cluster.advertise_url`, else derived from `listen`. */
export function advertiseUrl(config: Config, port = config.listen.port): string {
	if (config.advertiseUrl) {
		return config.advertiseUrl;
	}

	const host = ['0.0.0.0', '::', ''].includes(config.listen.host) ? hostname() : config.listen.host;
	return `${config.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * `offline` (CLI commands beside a running server): no coordinator
 * connection, and a missing SQLite store is an error rather than created.
 */
export async function openStores(config: Config, log: Logger, options: {offline?: boolean} = {}): Promise<Stores> {
	const sqliteFile = path.join(config.storage.dir, 'mirror.db');
	if (options.offline && !config.postgresUrl && !existsSync(sqliteFile)) {
		throw new ConfigError(`config: storage.dir: no store at ${config.storage.dir} (nothing has been served from it yet)`);
	}

	const checks: Record<string, () => Promise<unknown>> = {};
	const blobs: BlobStore = config.storage.s3 ? new S3BlobStore(config.storage.s3, config.storage.dir) : new FsBlobStore(config.storage.dir);
	if (blobs.ping) {
		checks['s3'] = async () => blobs.ping!();
	}

	if (!options.offline) {
		try {
			await blobs.init();
		} catch (error) {
			throw new ConfigError(`config: storage: ${(error as Error).message}`);
		}
	}

	let metadata: MetadataStore;
	let coordinator: Coordinator | undefined;
	if (config.postgresUrl) {
		let store: PostgresMetadataStore;
		try {
			store = await PostgresMetadataStore.open(config.postgresUrl);
		} catch (error) {
			throw new ConfigError(`config: metadata.url: ${(error as Error).message}`);
		}

		metadata = store;
		checks['database'] = async () => store.ping();
		// Offline (CLI), only its maintenance lock is used: it takes part in no fill and opens no lock connection.
		coordinator = new Coordinator(store.pool, config.postgresUrl, options.offline ? 'cli' : advertiseUrl(config), log);
		if (!options.offline) {
			await coordinator.start();
			checks['cluster'] = async () => coordinator!.ping();
		}
	} else {
		const store = new SqliteMetadataStore(sqliteFile);
		metadata = store;
		checks['database'] = async () => store.cachedBytes();
	}

	return {
		blobs,
		metadata,
		coordinator,
		checks,
		async close() {
			await coordinator?.close();
			await metadata.close();
			blobs.close?.();
		},
	};
}
