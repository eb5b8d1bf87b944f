/**
 * Opens the drivers a config names: the blob store (filesystem or S3) and
 * the metadata store (SQLite or PostgreSQL). With PostgreSQL it hands over
 * the connection pool, which the composition root gives the cluster
 * coordinator.
 */
import {existsSync} from 'node:fs';
import path from 'node:path';
import {type Config, ConfigError} from '../config/load.js';
import {type BlobStore} from './blob-store.js';
import {FsBlobStore} from './fs/index.js';
import {type MetadataStore} from './metadata.js';
import {PostgresMetadataStore} from './postgres/index.js';
import {S3BlobStore} from './s3/index.js';
import {SqliteMetadataStore} from './sqlite/index.js';

export type Stores = {
	blobs: BlobStore;
	metadata: MetadataStore;
	/** Set with PostgreSQL metadata: what the cluster coordinator connects with. */
	postgres?: {pool: PostgresMetadataStore['pool']; url: string};
	/** Named readiness checks beyond the local storage directory. */
	checks: Record<string, () => Promise<unknown>>;
	close(): Promise<void>;
};

/**
 * `offline` (CLI commands beside a running server): the blob store is not
 * initialised, and a missing SQLite store is an error rather than created.
 */
export async function openStores(config: Config, options: {offline?: boolean} = {}): Promise<Stores> {
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
	let postgres: Stores['postgres'];
	if (config.postgresUrl) {
		let store: PostgresMetadataStore;
		try {
			store = await PostgresMetadataStore.open(config.postgresUrl);
		} catch (error) {
			throw new ConfigError(`config: metadata.url: ${(error as Error).message}`);
		}

		metadata = store;
		checks['database'] = async () => store.ping();
		postgres = {pool: store.pool, url: config.postgresUrl};
	} else {
		const store = new SqliteMetadataStore(sqliteFile);
		metadata = store;
		checks['database'] = async () => store.cachedBytes();
	}

	return {
		blobs,
		metadata,
		postgres,
		checks,
		async close() {
			await metadata.close();
			blobs.close?.();
		},
	};
}
