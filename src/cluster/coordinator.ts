/**
 * Coordination between replicas that share one PostgreSQL database.
 *
 * - One fill per blob cluster-wide: a replica fills a digest only while it
 *   holds the session-level advisory lock for that digest, taken on this
 *   replica's dedicated connection. The `fills` table says who holds it and
 *   where the others can read its bytes while it runs; NOTIFY mirror_fills
 *   tells them when it ends. A replica that dies loses its connection, so
 *   PostgreSQL releases its locks and another replica takes over.
 * - One maintenance run at a time (quota, eviction, upload expiry, GC):
 *   whoever holds the maintenance lock for the duration of a run is the
 *   leader for that run.
 */
import {createHash} from 'node:crypto';
import {hostname} from 'node:os';
import pg from 'pg';
import {type Config} from '../config/load.js';
import {type Logger} from '../util/log.js';
import {type Digest} from '../v2/grammar.js';
import {type FillCoordinator} from './coordination.js';

const CHANNEL = 'mirror_fills';
/** The advisory lock one maintenance run holds ('mirror' and a number; the PostgreSQL driver's migration lock is 1, fill locks are per digest). */
const MAINTENANCE_LOCK_KEY = 0x6d_69_72_72_6f_72_03n.toString();

function fillKey(digest: Digest): string {
	return BigInt.asIntN(64, BigInt(`0x${digest.hex.slice(0, 16)}`)).toString();
}

export class Coordinator implements FillCoordinator {
	/** The secret other replicas show to read fills in progress (derived from the shared database URL). */
	readonly clusterKey: string;
	/** Replicas may run anywhere: fills are read over the internal endpoint. */
	readonly sharesFiles = false;
	#lockClient: pg.Client | undefined;
	#connecting: Promise<pg.Client> | undefined;
	readonly #held = new Set<string>();
	readonly #waiters = new Map<string, Set<() => void>>();
	#closed = false;

	constructor(
		private readonly pool: pg.Pool,
		private readonly url: string,
		/** How the other replicas reach this one (set again once the port is known). */
		public self: string,
		private readonly log: Logger,
	) {
		this.clusterKey = createHash('sha256').update(`registry-mirror cluster\n${url}`).digest('hex');
	}

	/** The dedicated connection: locks live as long as it does. */
	async #client(): Promise<pg.Client> {
		if (this.#lockClient) {
			return this.#lockClient;
		}

		this.#connecting ??= (async () => {
			const client = new pg.Client({connectionString: this.url, connectionTimeoutMillis: 5000});
			client.on('error', error => {
				this.log.warn({err: error}, 'cluster: lock connection lost; fills in progress here are no longer exclusive');
			});
			client.on('end', () => {
				if (this.#lockClient === client) {
					this.#lockClient = undefined;
					this.#held.clear();
				}
			});
			client.on('notification', message => {
				if (message.channel === CHANNEL && message.payload) {
					this.#wake(message.payload);
				}
			});
			await client.connect();
			await client.query(`LISTEN ${CHANNEL}`);
			this.#lockClient = client;
			return client;
		})().finally(() => {
			this.#connecting = undefined;
		});
		return this.#connecting;
	}

	async start(): Promise<void> {
		await this.#client();
	}

	/**
	 * Takes the fill lock for `digest` if no replica holds it. The caller must
	 * not ask again for a digest it holds (advisory locks are re-entrant per
	 * session); FillRegistry and ClusterFills make sure of that.
	 */
	async tryAcquireFill(digest: Digest): Promise<boolean> {
		if (this.#held.has(digest.value)) {
			return false;
		}

		const client = await this.#client();
		const {rows} = await client.query<{locked: boolean}>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [fillKey(digest)]);
		if (!rows[0]?.locked) {
			return false;
		}

		this.#held.add(digest.value);
		try {
			await this.pool.query(
				`INSERT INTO fills (digest, owner, started_at) VALUES ($1, $2, $3)
				 ON CONFLICT (digest) DO UPDATE SET owner = excluded.owner, started_at = excluded.started_at`,
				[digest.value, this.self, Date.now()],
			);
		} catch (error) {
			await this.releaseFill(digest);
			throw error;
		}

		return true;
	}

	async releaseFill(digest: Digest): Promise<void> {
		if (!this.#held.delete(digest.value)) {
			return;
		}

		try {
			await this.pool.query('DELETE FROM fills WHERE digest = $1 AND owner = $2', [digest.value, this.self]);
			await this.#lockClient?.query('SELECT pg_advisory_unlock($1::bigint)', [fillKey(digest)]);
			await this.pool.query('SELECT pg_notify($1, $2)', [CHANNEL, digest.value]);
		} catch (error) {
			this.log.warn({err: error, digest: digest.value}, 'cluster: could not release a fill lock');
		}
	}

	/** The replica filling `digest` right now, if any says so. */
	async fillOwner(digest: Digest): Promise<string | undefined> {
		const {rows} = await this.pool.query<{owner: string}>('SELECT owner FROM fills WHERE digest = $1', [digest.value]);
		return rows[0]?.owner;
	}

	/** Resolves when a fill of `digest` ends somewhere, or after `ms`. */
	async waitForFill(digest: Digest, ms: number): Promise<void> {
		await new Promise<void>(resolve => {
			let waiters = this.#waiters.get(digest.value);
			if (!waiters) {
				waiters = new Set();
				this.#waiters.set(digest.value, waiters);
			}

			const done = () => {
				clearTimeout(timer);
				waiters.delete(done);
				if (waiters.size === 0 && this.#waiters.get(digest.value) === waiters) {
					this.#waiters.delete(digest.value);
				}

				resolve();
			};

			const timer = setTimeout(done, ms);
			waiters.add(done);
		});
	}

	#wake(digest: string): void {
		for (const waiter of [...(this.#waiters.get(digest) ?? [])]) {
			waiter();
		}
	}

	/**
	 * Runs `task` while holding the maintenance lock. With `wait`, waits for
	 * the replica running one to finish; without, returns undefined at once
	 * when another replica is at it.
	 */
	async exclusive<T>(task: () => Promise<T>, options: {wait?: boolean} = {}): Promise<T | undefined> {
		const client = await this.pool.connect();
		try {
			if (options.wait) {
				await client.query('SELECT pg_advisory_lock($1::bigint)', [MAINTENANCE_LOCK_KEY]);
			} else {
				const {rows} = await client.query<{locked: boolean}>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [
					MAINTENANCE_LOCK_KEY,
				]);
				if (!rows[0]?.locked) {
					return undefined;
				}
			}

			try {
				return await task();
			} finally {
				await client.query('SELECT pg_advisory_unlock($1::bigint)', [MAINTENANCE_LOCK_KEY]);
			}
		} finally {
			client.release();
		}
	}

	/** Rejects when the lock connection is down and cannot be re-established. */
	async ping(): Promise<void> {
		await (await this.#client()).query('SELECT 1');
	}

	async close(): Promise<void> {
		if (this.#closed) {
			return;
		}

		this.#closed = true;
		const client = this.#lockClient;
		this.#lockClient = undefined;
		this.#held.clear();
		await client?.end().catch(() => undefined);
	}
}

/** Where other replicas reach this one: `cluster.advertise_url`, else derived from `listen` (and the port it got). */
export function advertiseUrl(config: Config, port = config.listen.port): string {
	if (config.advertiseUrl) {
		return config.advertiseUrl;
	}

	const host = ['0.0.0.0', '::', ''].includes(config.listen.host) ? hostname() : config.listen.host;
	return `${config.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
