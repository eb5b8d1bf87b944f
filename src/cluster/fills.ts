/**
 * Cache fills across replicas: one upstream download per blob for the whole
 * cluster, and every client served progressively wherever it landed.
 *
 * A replica that misses a blob either takes the digest's fill lock and fills
 * it as a single replica would (blob-fill.ts), or finds the replica holding
 * the lock and reads that replica's growing fill over the internal endpoint
 * (`GET /_mirror/fills/<digest>`, see fillEndpoint), which holds back the
 * last byte until the digest checks just as it does for local clients.
 *
 * A client's stream follows the bytes, not a replica: when its source fails
 * (the filling replica died, a connection broke), it carries on from the
 * byte it reached, from the store if the blob landed meanwhile, from a new
 * owner, or by filling here once the dead replica's lock is released.
 */
import {Readable} from 'node:stream';
import {type Context} from 'koa';
import got from 'got';
import {parseRange} from '../http/range.js';
import {type Logger} from '../log.js';
import {type Fill, type FillRegistry} from '../proxy/blob-fill.js';
import {type BlobResult} from '../services.js';
import {type BlobStore, type ByteRange} from '../store/blob-store.js';
import {type MetadataStore} from '../store/metadata.js';
import {RegistryError} from '../v2/errors.js';
import {type Digest, parseDigest} from '../v2/grammar.js';
import {type Coordinator} from './coordinator.js';

export const FILL_ENDPOINT = '/_mirror/fills/';
const KEY_HEADER = 'x-mirror-cluster-key';
/** How long a replica waits for another's fill before answering 503 (the owner has not answered yet). */
const CLAIM_TIMEOUT_MS = 30_000;
/** Sources a client's stream may go through before it gives up. */
const MAX_SOURCES = 4;

/** What a replica asking for a blob it does not hold brings along (see ClusterFills.get). */
export type Asker = {
	start: () => Promise<Fill>;
	found: () => Promise<number | undefined>;
	/** Whether a fill bringing the bytes in from `origin` (an upstream's name) may serve the asker. */
	mayShare: (origin: string | undefined) => Promise<boolean>;
};

type Claim = {kind: 'stored'; size: number} | {kind: 'local'; fill: Fill; size: number | undefined} | {kind: 'remote'; owner: string; size: number};

export type ClusterFillDeps = {
	coordinator: Coordinator;
	fills: FillRegistry;
	blobs: BlobStore;
	metadata: MetadataStore;
	log: Logger;
};

export class ClusterFills {
	readonly #claims = new Map<string, Promise<Claim>>();

	constructor(private readonly deps: ClusterFillDeps) {}

	/**
	 * A blob this replica does not hold. `start` joins or begins this
	 * replica's own fill (it is only called with the cluster lock held, or
	 * when a local fill already runs) and resolves once the upstream answered.
	 * `found` says whether the store now holds the blob for the asking
	 * repository (a fill elsewhere may have just landed); it is asked instead
	 * of the store itself, so a blob another upstream brought in is not handed
	 * out under a name whose upstream does not have it. `scope` keeps the
	 * lookups of different upstreams apart.
	 */
	async get(digest: Digest, scope: string, asker: Asker): Promise<BlobResult & {source: Claim['kind']}> {
		const {start} = asker;
		const claim = await this.#claim(digest, scope, asker);
		if (claim.kind === 'local' && claim.size === undefined) {
			// The upstream sent no length: nothing to resume against; serve this fill as it is.
			return {size: undefined, source: 'local', open: range => claim.fill.createReader(range)};
		}

		const size = claim.size!;
		return {
			size,
			source: claim.kind,
			stored: claim.kind === 'stored',
			open: range => Readable.from(this.#follow(digest, range ?? {start: 0, end: size - 1}, size, start, claim), {objectMode: false}),
		};
	}

	/** Where this replica gets the bytes: one lookup per digest at a time in this process. */
	async #claim(digest: Digest, scope: string, asker: Asker): Promise<Claim> {
		const key = `${scope}\n${digest.value}`;
		let pending = this.#claims.get(key);
		if (!pending) {
			pending = this.#findSource(digest, asker).finally(() => this.#claims.delete(key));
			this.#claims.set(key, pending);
		}

		return pending;
	}

	async #stored(digest: Digest): Promise<number | undefined> {
		if (!(await this.deps.metadata.getBlob(digest.value))) {
			return undefined;
		}

		return this.deps.blobs.size(digest);
	}

	async #findSource(digest: Digest, {start, found, mayShare}: Asker): Promise<Claim> {
		const {coordinator, fills} = this.deps;
		const deadline = Date.now() + CLAIM_TIMEOUT_MS;
		for (;;) {
			if (fills.get(digest)) {
				const fill = await start(); // joins the fill this replica runs
				return {kind: 'local', fill, size: fill.size};
			}

			const stored = await found();
			if (stored !== undefined) {
				return {kind: 'stored', size: stored};
			}

			let locked: boolean;
			let owner: string | undefined;
			try {
				locked = await coordinator.tryAcquireFill(digest);
				owner = locked ? undefined : await coordinator.fillOwner(digest);
			} catch (error) {
				// PostgreSQL is unreachable: serve the client as a single replica would rather than fail it.
				this.deps.log.warn({err: error, digest: digest.value}, 'cluster: cannot coordinate this fill; fetching it here');
				const fill = await start();
				return {kind: 'local', fill, size: fill.size};
			}

			if (locked) {
				return this.#fillHere(digest, {start, found, mayShare});
			}

			if (owner && owner !== coordinator.self) {
				const remote = await this.#remoteSize(owner, digest).catch(() => undefined);
				if (remote) {
					if (!(await mayShare(remote.origin))) {
						throw new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value}});
					}

					return {kind: 'remote', owner, size: remote.size};
				}
			}

			if (Date.now() > deadline) {
				throw new RegistryError('UNAVAILABLE', {message: 'another replica is fetching this blob; try again', headers: {'Retry-After': '5'}});
			}

			await coordinator.waitForFill(digest, 100);
		}
	}

	/** With the lock held: fill here, unless the blob landed between the check and the lock. */
	async #fillHere(digest: Digest, {start, found}: Asker): Promise<Claim> {
		const {coordinator} = this.deps;
		let fill: Fill;
		try {
			const stored = await found();
			if (stored !== undefined) {
				await coordinator.releaseFill(digest);
				return {kind: 'stored', size: stored};
			}

			fill = await start();
		} catch (error) {
			await coordinator.releaseFill(digest);
			throw error;
		}

		void fill.done.catch(() => undefined).finally(() => void coordinator.releaseFill(digest));
		return {kind: 'local', fill, size: fill.size};
	}

	async *#follow(digest: Digest, range: ByteRange, size: number, start: () => Promise<Fill>, first: Claim): AsyncGenerator<Uint8Array> {
		let position = range.start;
		let claim: Claim | undefined = first;
		let sources = 0;
		while (position <= range.end) {
			try {
				// The client already has bytes of this digest: any verified copy of it will do now.
				const current: Claim =
					claim ?? (await this.#claim(digest, '', {start, found: async () => this.#stored(digest), mayShare: async () => true}));
				claim = undefined;
				sources++;
				if (current.size !== size) {
					throw new Error(`replicas disagree on the size of ${digest.value}: ${size} and ${String(current.size)}`);
				}

				const wanted = {start: position, end: range.end};
				const source =
					current.kind === 'stored'
						? this.deps.blobs.createReadStream(digest, wanted, size)
						: current.kind === 'local'
							? current.fill.createReader(wanted)
							: await this.#remote(current.owner, digest, wanted);
				for await (const chunk of source) {
					position += (chunk as Uint8Array).length;
					yield chunk as Uint8Array;
				}

				if (position <= range.end) {
					throw new Error(`source ended at byte ${position} of ${range.end + 1}`);
				}
			} catch (error) {
				if (sources >= MAX_SOURCES) {
					throw error;
				}

				this.deps.log.warn({err: error, digest: digest.value, position}, 'cluster: blob source failed; carrying on from another');
			}
		}
	}

	async #remoteSize(owner: string, digest: Digest): Promise<{size: number; origin: string | undefined} | undefined> {
		const response = await got.head(`${owner}${FILL_ENDPOINT}${digest.value}`, {
			headers: {[KEY_HEADER]: this.deps.coordinator.clusterKey},
			retry: {limit: 0},
			throwHttpErrors: false,
			timeout: {connect: 2000, response: 10_000},
		});
		const size = Number(response.headers['x-blob-size']);
		const origin = response.headers['x-fill-origin'];
		return response.statusCode === 200 && Number.isSafeInteger(size) ? {size, origin: typeof origin === 'string' ? origin : undefined} : undefined;
	}

	async #remote(owner: string, digest: Digest, range: ByteRange): Promise<Readable> {
		const stream = got.stream(`${owner}${FILL_ENDPOINT}${digest.value}`, {
			headers: {[KEY_HEADER]: this.deps.coordinator.clusterKey, range: `bytes=${range.start}-${range.end}`},
			retry: {limit: 0},
			timeout: {connect: 2000, response: 10_000, socket: 60_000},
		});
		await new Promise<void>((resolve, reject) => {
			stream.once('response', () => resolve());
			stream.once('error', reject);
		});
		return stream;
	}
}

/**
 * The internal endpoint other replicas read fills in progress from. Not part
 * of the registry API: it answers only requests carrying the cluster key.
 */
export function fillEndpoint(deps: {coordinator: Coordinator; fills: FillRegistry; blobs: BlobStore}) {
	return async (ctx: Context): Promise<void> => {
		if (ctx.get(KEY_HEADER) !== deps.coordinator.clusterKey) {
			ctx.status = 403;
			return;
		}

		let digest: Digest;
		try {
			digest = parseDigest(ctx.path.slice(ctx.path.lastIndexOf('/') + 1));
		} catch {
			ctx.status = 400;
			return;
		}

		let size: number | undefined;
		let open: ((range: ByteRange) => Readable) | undefined;
		const fill = deps.fills.get(digest);
		if (fill) {
			await fill.ready.catch(() => undefined);
			if (fill.state !== 'failed' && fill.size !== undefined) {
				size = fill.size;
				open = range => fill.createReader(range);
				if (fill.origin !== undefined) {
					ctx.set('X-Fill-Origin', fill.origin);
				}
			}
		}

		if (open === undefined) {
			// Finished a moment ago: the bytes are in the store.
			size = await deps.blobs.size(digest);
			open = size === undefined ? undefined : range => deps.blobs.createReadStream(digest, range, size);
		}

		if (open === undefined || size === undefined) {
			ctx.status = 404;
			return;
		}

		ctx.set('X-Blob-Size', String(size));
		const ranged = size > 0 ? parseRange(ctx.get('range') || undefined, size) : undefined;
		const range = ranged ?? {start: 0, end: size - 1};
		ctx.status = ranged ? 206 : 200;
		ctx.length = Math.max(0, range.end - range.start + 1);
		if (ctx.method === 'GET' && ctx.length > 0) {
			ctx.body = open(range);
		} else if (ctx.method === 'GET') {
			ctx.body = '';
		}
	};
}
