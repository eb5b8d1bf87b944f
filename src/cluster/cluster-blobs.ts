/**
 * The cluster layer: one upstream download per blob for the whole cluster,
 * and every client served progressively wherever the fill runs. It wraps the
 * fill layer with the same interface.
 *
 * A replica that misses a blob either takes the digest's fill lock and fills
 * it through the layer below, as a single replica would, or finds the replica
 * holding the lock and reads that replica's growing fill over the internal
 * endpoint (see peers.ts), which holds back the last byte until the digest
 * checks just as it does for local clients.
 *
 * A client's stream follows the bytes, not a replica: when its source fails
 * (the filling replica died, a connection broke), it carries on from the
 * byte it reached, from the store if the blob landed meanwhile, from a new
 * owner, or by filling here once the dead replica's lock is released.
 */
import {Readable} from 'node:stream';
import {type BlobContent, type ByteRange} from '../store/blob-store.js';
import {type BlobRequest, type BlobResult, type BlobSource} from '../fill/source.js';
import {type UpstreamFills} from '../fill/upstream-fills.js';
import {type Logger} from '../util/log.js';
import {SingleFlight} from '../util/single-flight.js';
import {RegistryError} from '../v2/errors.js';
import {type Digest} from '../v2/grammar.js';
import {type FillCoordinator} from './coordination.js';
import {FollowedFill} from './followed-fill.js';
import {type Peers} from './peers.js';

/** How long a replica waits for another's fill before answering 503 (the owner has not answered yet). */
const CLAIM_TIMEOUT_MS = 30_000;
/** Sources a client's stream may go through before it gives up. */
const MAX_SOURCES = 4;

/**
 * Where this replica gets the bytes: from the layer below (stored, or a fill
 * here), or from the replica filling it (through its temp `file` when that
 * replica is a worker of this machine).
 */
type Claim = {kind: 'here'; result: BlobResult} | {kind: 'remote'; owner: string; size: number; file?: string};

/** What the internal endpoint serves another replica: a fill running here (and its temp file), or the stored blob. */
export type PeerBlob = {size: number; origin: string | undefined; file?: string; open(range: ByteRange): Readable};

export type ClusterBlobsDeps = {
	coordinator: FillCoordinator;
	peers: Peers;
	content: Pick<BlobContent, 'size' | 'createReadStream'>;
	log: Logger;
};

export class ClusterBlobs implements BlobSource {
	/** One lookup per upstream and digest at a time in this process. */
	readonly #claims = new SingleFlight<string, Claim>();
	/** Other workers' fills followed through their temp files, by file. */
	readonly #followed = new Map<string, Promise<FollowedFill>>();

	constructor(
		private readonly below: UpstreamFills,
		private readonly deps: ClusterBlobsDeps,
	) {}

	async find(request: BlobRequest): Promise<BlobResult | undefined> {
		return this.below.find(request);
	}

	async mayShare(request: BlobRequest, origin: string | undefined): Promise<boolean> {
		return this.below.mayShare(request, origin);
	}

	async get(request: BlobRequest): Promise<BlobResult> {
		if (request.origin.offline) {
			return this.below.get(request); // never fetched: what the store holds, or BLOB_UNKNOWN
		}

		const found = await this.below.find(request);
		if (found?.stored) {
			return found;
		}

		const claim: Claim = found ? {kind: 'here', result: found} : await this.#claim(request);
		if (claim.kind === 'here' && claim.result.size === undefined) {
			return claim.result; // the upstream sent no length: nothing to resume against; serve this fill as it is
		}

		const size = claim.kind === 'here' ? claim.result.size! : claim.size;
		return {
			size,
			outcome: claim.kind === 'here' ? claim.result.outcome : 'joined',
			stored: claim.kind === 'here' && claim.result.stored,
			open: range => Readable.from(this.#follow(request, range ?? {start: 0, end: size - 1}, size, claim), {objectMode: false}),
		};
	}

	/** For the internal endpoint: what this replica can give another of `digest`. */
	async forPeer(digest: Digest): Promise<PeerBlob | undefined> {
		const fill = this.below.running(digest);
		if (fill) {
			await fill.ready.catch(() => undefined);
			if (fill.state !== 'failed' && fill.size !== undefined) {
				const file = fill.state === 'done' ? undefined : fill.temp?.path;
				return {size: fill.size, origin: fill.origin, ...(file ? {file} : {}), open: range => fill.createReader(range)};
			}
		}

		// Finished a moment ago: the bytes are in the store.
		const {content} = this.deps;
		const size = await content.size(digest);
		return size === undefined ? undefined : {size, origin: undefined, open: range => content.createReadStream(digest, range, size)};
	}

	async #claim(request: BlobRequest): Promise<Claim> {
		const scope = request.anyCopy ? '*' : request.repo.registry;
		return this.#claims.run(`${scope}\n${request.digest.value}`, async () => this.#findSource(request));
	}

	async #findSource(request: BlobRequest): Promise<Claim> {
		const {coordinator, peers, log} = this.deps;
		const {digest} = request;
		const deadline = Date.now() + CLAIM_TIMEOUT_MS;
		for (;;) {
			if (this.below.running(digest)) {
				return {kind: 'here', result: await this.below.get(request)}; // joins the fill this replica runs
			}

			const found = await this.below.find(request);
			if (found) {
				return {kind: 'here', result: found};
			}

			let locked: boolean;
			let owner: string | undefined;
			try {
				locked = await coordinator.tryAcquireFill(digest);
				owner = locked ? undefined : await coordinator.fillOwner(digest);
			} catch (error) {
				// PostgreSQL is unreachable: serve the client as a single replica would rather than fail it.
				log.warn({err: error, digest: digest.value}, 'cluster: cannot coordinate this fill; fetching it here');
				return {kind: 'here', result: await this.below.get(request)};
			}

			if (locked) {
				return this.#fillHere(request);
			}

			if (owner && owner !== coordinator.self) {
				const remote = await peers.size(owner, digest).catch(() => undefined);
				if (remote) {
					if (!(await this.below.mayShare(request, remote.origin))) {
						throw request.origin.unknown(digest);
					}

					const file = coordinator.sharesFiles ? remote.file : undefined;
					return {kind: 'remote', owner, size: remote.size, ...(file ? {file} : {})};
				}
			}

			if (Date.now() > deadline) {
				throw new RegistryError('UNAVAILABLE', {message: 'another replica is fetching this blob; try again', headers: {'Retry-After': '5'}});
			}

			await coordinator.waitForFill(digest, 100);
		}
	}

	/** With the lock held: fill here, unless the blob landed between the check and the lock. */
	async #fillHere(request: BlobRequest): Promise<Claim> {
		const {coordinator} = this.deps;
		const {digest} = request;
		let result: BlobResult;
		try {
			result = (await this.below.find(request)) ?? (await this.below.get(request));
		} catch (error) {
			await coordinator.releaseFill(digest);
			throw error;
		}

		const fill = this.below.running(digest);
		if (fill) {
			void fill.done.catch(() => undefined).finally(() => void coordinator.releaseFill(digest));
		} else {
			await coordinator.releaseFill(digest);
		}

		return {kind: 'here', result};
	}

	async *#follow(request: BlobRequest, range: ByteRange, size: number, first: Claim): AsyncGenerator<Uint8Array> {
		const {digest} = request;
		let position = range.start;
		let claim: Claim | undefined = first;
		let sources = 0;
		while (position <= range.end) {
			try {
				// The client already has bytes of this digest: any verified copy of it will do now.
				const current: Claim = claim ?? (await this.#claim({...request, anyCopy: true}));
				claim = undefined;
				sources++;
				const currentSize = current.kind === 'here' ? current.result.size : current.size;
				if (currentSize !== size) {
					throw new Error(`replicas disagree on the size of ${digest.value}: ${size} and ${String(currentSize)}`);
				}

				const wanted = {start: position, end: range.end};
				const source =
					current.kind === 'here'
						? current.result.open(wanted)
						: current.file
							? (await this.#followFile(current.file, digest, current)).createReader(wanted)
							: await this.deps.peers.read(current.owner, digest, wanted);
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

	/** The fill another worker of this machine writes to `file`, followed by every client here that reads it. */
	async #followFile(file: string, digest: Digest, claim: {owner: string; size: number}): Promise<FollowedFill> {
		const known = await this.#followed.get(file)?.catch(() => undefined);
		if (known?.open) {
			return known;
		}

		const {coordinator, content} = this.deps;
		const opening = FollowedFill.open(file, digest, claim.size, claim.owner, {coordinator, committed: async committed => content.size(committed)});
		const forget = () => {
			if (this.#followed.get(file) === opening) {
				this.#followed.delete(file);
			}
		};

		this.#followed.set(file, opening);
		opening.then(followed => followed.once('closed', forget), forget);
		return opening;
	}
}
