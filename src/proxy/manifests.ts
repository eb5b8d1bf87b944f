/**
 * Manifests of cached namespaces. By digest: immutable, local first. By tag:
 * served from the cache while younger than the upstream's tag_ttl, then
 * revalidated with a HEAD (cheap, and not counted against Docker Hub's pull
 * limit); when the upstream cannot answer, the stale copy is served, for at
 * most max_stale past the TTL. Every digest the upstream names for a tag goes
 * into the tag's history. A pinned tag is served as its pinned digest without
 * asking the upstream. While the upstream's pull budget is short (under
 * ratelimit_reserve, or a 429's Retry-After running), a manifest GET is spent
 * only on content the mirror does not have: a cached tag that moved stays
 * served from the cache.
 */
import {LRUCache} from 'lru-cache';
import {type CachedTarget} from '../service/namespaces.js';
import {type ManifestResult} from '../service/read-service.js';
import {type AccessRecorder} from '../store/access.js';
import {type ManifestRecord, type ReadIndex, type TagIndex, type TagRecord, type WriteIndex} from '../store/metadata.js';
import {type UpstreamClient, pullScope} from '../upstream/client.js';
import {RegistryError, isUpstreamFailure} from '../v2/errors.js';
import {type Digest, type Reference} from '../v2/grammar.js';
import {MANIFEST_ACCEPT} from '../v2/media-types.js';
import {parseManifest} from '../v2/manifest.js';
import {type Logger} from '../util/log.js';
import {SingleFlight} from '../util/single-flight.js';
import {within} from '../util/within.js';
import {checkUpstreamStatus} from './upstream-status.js';

type TaggedManifest = TagRecord & {manifest: ManifestRecord};
type Fetched = {manifest: ManifestRecord; references: string[]};

/** Content by digest never changes; only the store's cache generation ends an answer of it. */
const FOREVER = Number.POSITIVE_INFINITY;

/** How long an upstream 404 is remembered, so a typo does not hammer the upstream. */
export const NEGATIVE_TTL_MS = 5000;

export type ProxyManifestDeps = {
	metadata: Pick<ReadIndex, 'getTaggedManifest' | 'getRepoManifest' | 'getManifest'> &
		Pick<WriteIndex, 'putManifest' | 'markTagChecked'> &
		Pick<TagIndex, 'recordTagSeen'>;
	upstream: (name: string) => UpstreamClient;
	access: AccessRecorder;
	log: Logger;
	now?: () => number;
	/** The signature policy (policy/): throws DENIED when this manifest may not be served to this target. */
	admit?: (target: CachedTarget, manifest: ManifestRecord) => Promise<void>;
	/** hit, miss (fetched), revalidated (HEAD said unchanged), stale (served because the upstream failed). */
	onResult?: (upstream: string, outcome: 'hit' | 'miss' | 'revalidated' | 'stale') => void;
};

export class ProxyManifests {
	/** One upstream fetch per repository and reference at a time. */
	readonly #inflight = new SingleFlight<string, ManifestResult>();
	readonly #missing = new LRUCache<string, RegistryError>({max: 10_000, ttl: NEGATIVE_TTL_MS, perf: {now: () => this.#now()}});
	readonly #now: () => number;
	/** Fetched manifests the policy admitted before they were stored. */
	readonly #admitted = new WeakSet<ManifestRecord>();

	constructor(private readonly deps: ProxyManifestDeps) {
		this.#now = deps.now ?? Date.now;
	}

	async get(target: CachedTarget, reference: Reference): Promise<ManifestResult> {
		const result = await this.#get(target, reference);
		if (this.deps.admit && !this.#admitted.has(result.manifest)) {
			await this.deps.admit(target, result.manifest);
		}

		return result;
	}

	async #get(target: CachedTarget, reference: Reference): Promise<ManifestResult> {
		// A cached digest, or a tag within its TTL, needs no coordination.
		const tagged = reference.kind === 'tag' ? await this.deps.metadata.getTaggedManifest(target.repo, reference.tag) : undefined;
		const quick =
			reference.kind === 'digest'
				? await this.deps.metadata.getRepoManifest(target.repo, reference.digest.value)
				: tagged && this.#isFresh(target, tagged)
					? tagged.manifest
					: undefined;
		if (quick) {
			this.deps.access.touch('manifest', quick.digest);
			this.deps.onResult?.(target.upstream.name, 'hit');
			// A pin holds until it is removed, which moves the store's cache generation.
			return {manifest: quick, freshUntil: tagged && tagged.pinnedAt === undefined ? this.#freshUntil(target, tagged.checkedAt) : FOREVER};
		}

		const key = `${target.repo.registry}\n${target.repo.name}\n${reference.kind === 'tag' ? reference.tag : reference.digest.value}`;
		const missing = this.#missing.get(key);
		if (missing) {
			throw missing;
		}

		const pending = this.#inflight.run(key, async () => {
			try {
				return await (reference.kind === 'digest' ? this.#byDigest(target, reference.digest) : this.#byTag(target, reference.tag, tagged));
			} catch (error) {
				if (error instanceof RegistryError && error.code === 'MANIFEST_UNKNOWN' && !target.upstream.offline) {
					this.#missing.set(key, error);
				}

				throw error;
			}
		});
		if (!tagged || target.upstream.offline || !this.#mayServeStale(target, tagged)) {
			return pending; // a miss (or a copy past max_stale) has nothing to fall back on: it waits for the upstream (its own timeout)
		}

		// A cached tag is answered within revalidate_timeout: stale if need be, while the revalidation carries on.
		return within(pending, target.upstream.revalidateTimeoutMs, () =>
			this.#stale(target, tagged.manifest, new Error(`no answer within ${target.upstream.revalidateTimeoutMs} ms`)),
		);
	}

	#isFresh(target: CachedTarget, tagged: TaggedManifest): boolean {
		return tagged.pinnedAt !== undefined || this.#now() < this.#freshUntil(target, tagged.checkedAt);
	}

	/** Whether a cached tag the upstream cannot confirm may still be answered: within max_stale past its TTL. */
	#mayServeStale(target: CachedTarget, tagged: TagRecord): boolean {
		const {maxStaleMs} = target.upstream;
		return maxStaleMs === undefined || this.#now() <= this.#freshUntil(target, tagged.checkedAt) + maxStaleMs;
	}

	/** Whether the upstream's pull budget is short: manifest GETs only for content not cached. */
	#budgetShort(target: CachedTarget): boolean {
		return this.#client(target).rateLimit.isShort(target.upstream.ratelimitReserve);
	}

	/** When a tag checked at `checkedAt` is due to be checked again. */
	#freshUntil(target: CachedTarget, checkedAt: number): number {
		return target.upstream.offline ? FOREVER : checkedAt + target.upstream.tagTtlMs;
	}

	async #byDigest(target: CachedTarget, digest: Digest): Promise<ManifestResult> {
		const known = await this.deps.metadata.getManifest(digest.value);
		if (target.upstream.offline) {
			if (known) {
				return {manifest: known, freshUntil: FOREVER};
			}

			throw new RegistryError('MANIFEST_UNKNOWN', {detail: {reason: 'upstream is offline and this manifest is not cached'}});
		}

		if (known && this.#budgetShort(target)) {
			// Another repository brought these bytes in (verified by digest): no counted GET for them now.
			await this.#link(target, known);
			this.deps.onResult?.(target.upstream.name, 'hit');
			return {manifest: known, freshUntil: FOREVER};
		}

		try {
			const fetched = await this.#fetch(target, digest.value, digest);
			await this.#store(target, fetched);
			this.deps.onResult?.(target.upstream.name, 'miss');
			return {manifest: fetched.manifest, freshUntil: FOREVER};
		} catch (error) {
			// The bytes are immutable and already verified: any repository may have them when the upstream cannot answer.
			if (known && isUpstreamFailure(error)) {
				return this.#stale(target, known, error);
			}

			throw error;
		}
	}

	/** `tagged` is what the cache held when the request came in (stale, or absent). */
	async #byTag(target: CachedTarget, tag: string, tagged: TaggedManifest | undefined): Promise<ManifestResult> {
		const cached = tagged?.manifest;
		if (target.upstream.offline) {
			if (cached) {
				return {manifest: cached, freshUntil: FOREVER};
			}

			throw new RegistryError('MANIFEST_UNKNOWN', {detail: {reason: 'upstream is offline and this tag is not cached'}});
		}

		try {
			if (cached) {
				const current = await this.#head(target, tag);
				const now = this.#now();
				if (current !== undefined) {
					await this.deps.metadata.recordTagSeen(target.repo, tag, current, now);
				}

				if (current === cached.digest) {
					await this.deps.metadata.markTagChecked(target.repo, tag, now);
					this.deps.access.touch('manifest', cached.digest);
					this.deps.onResult?.(target.upstream.name, 'revalidated');
					return {manifest: cached, freshUntil: this.#freshUntil(target, now)};
				}

				if (this.#budgetShort(target)) {
					return await this.#keepWhileShort(target, tag, cached, current);
				}
			}

			const now = this.#now();
			const fetched = await this.#fetch(target, tag, undefined);
			await this.#store(target, fetched, tag);
			await this.deps.metadata.recordTagSeen(target.repo, tag, fetched.manifest.digest, now);
			this.deps.onResult?.(target.upstream.name, 'miss');
			return {manifest: fetched.manifest, freshUntil: this.#freshUntil(target, now)};
		} catch (error) {
			if (tagged && isUpstreamFailure(error)) {
				if (this.#mayServeStale(target, tagged)) {
					return this.#stale(target, tagged.manifest, error);
				}

				throw pastMaxStale(target, tagged, this.#freshUntil(target, tagged.checkedAt), error as RegistryError);
			}

			throw error;
		}
	}

	/**
	 * A cached tag the upstream moved (or whose digest a HEAD did not tell)
	 * while the pull budget is short: the new digest when the repository
	 * already has it, otherwise the cached copy with a Warning. No counted GET.
	 */
	async #keepWhileShort(target: CachedTarget, tag: string, cached: ManifestRecord, current: string | undefined): Promise<ManifestResult> {
		const now = this.#now();
		const known = current === undefined ? undefined : await this.deps.metadata.getRepoManifest(target.repo, current);
		if (known) {
			await this.#link(target, known, tag);
			this.deps.access.touch('manifest', known.digest);
			this.deps.onResult?.(target.upstream.name, 'revalidated');
			return {manifest: known, freshUntil: this.#freshUntil(target, now)};
		}

		await this.deps.metadata.markTagChecked(target.repo, tag, now); // asked again after the TTL, not on every pull
		const budget = this.#client(target).rateLimit.snapshot;
		const reason = `tag is at ${current ?? 'an unannounced digest'} upstream; not fetched while the pull budget is short (${budget.remaining ?? '?'} left, reserve ${target.upstream.ratelimitReserve})`;
		this.deps.log.warn({upstream: target.upstream.name, repository: target.remoteName, tag, cached: cached.digest, current}, 'pull budget short: serving the cached tag');
		this.deps.onResult?.(target.upstream.name, 'stale');
		this.deps.access.touch('manifest', cached.digest);
		return {manifest: cached, warning: `299 - "stale: ${reason.replace(/["\\]/g, "'")}; serving the cached copy"`};
	}

	#stale(target: CachedTarget, manifest: ManifestRecord, error: unknown): ManifestResult {
		const reason = error instanceof Error ? error.message : String(error);
		this.deps.log.warn({upstream: target.upstream.name, repository: target.remoteName, digest: manifest.digest, reason}, 'serving stale manifest');
		this.deps.onResult?.(target.upstream.name, 'stale');
		this.deps.access.touch('manifest', manifest.digest);
		// distribution-spec: warn-code 299, warn-agent "-", no warn-date.
		return {manifest, warning: `299 - "stale: upstream ${target.upstream.name} failed (${reason.replace(/["\\]/g, "'")}); serving the cached copy"`};
	}

	/** The digest the upstream has for a tag now, or undefined if it did not say. */
	async #head(target: CachedTarget, tag: string): Promise<string | undefined> {
		const response = await this.#client(target).request('HEAD', `/v2/${target.remoteName}/manifests/${tag}`, {
			scope: pullScope(target.remoteName),
			accept: MANIFEST_ACCEPT,
			kind: 'manifest',
		});
		checkUpstreamStatus(response.status, target, () => this.#unknown(target));
		const digest = response.headers['docker-content-digest'];
		return typeof digest === 'string' ? digest : undefined;
	}

	/** Fetches, verifies and parses a manifest once: its record and what it references. */
	async #fetch(target: CachedTarget, reference: string, expected: Digest | undefined): Promise<Fetched> {
		const response = await this.#client(target).request('GET', `/v2/${target.remoteName}/manifests/${reference}`, {
			scope: pullScope(target.remoteName),
			accept: MANIFEST_ACCEPT,
			kind: 'manifest',
		});
		checkUpstreamStatus(response.status, target, () => this.#unknown(target));
		const content = response.body;
		const {digest, mediaType, references} = parseManifest(content, response.headers['content-type'], {
			mode: 'lenient',
			expected,
			announced: response.headers['docker-content-digest'],
		});
		return {manifest: {digest, mediaType, content}, references};
	}

	/** The signature policy's check, before a manifest is stored or linked here; get() then does not ask again. */
	async #admit(target: CachedTarget, manifest: ManifestRecord): Promise<void> {
		if (this.deps.admit) {
			await this.deps.admit(target, manifest);
			this.#admitted.add(manifest);
		}
	}

	async #store(target: CachedTarget, {manifest, references}: Fetched, tag?: string): Promise<void> {
		await this.#link(target, manifest, tag, references);
	}

	/** Stores `manifest` for this repository (and `tag`), once the policy admitted it: nothing of a denied image is stored. */
	async #link(target: CachedTarget, manifest: ManifestRecord, tag?: string, references?: Fetched['references']): Promise<void> {
		await this.#admit(target, manifest);
		await this.deps.metadata.putManifest({repo: target.repo, manifest, tag, pushed: false, references, now: this.#now()});
	}

	#unknown(target: CachedTarget): RegistryError {
		return new RegistryError('MANIFEST_UNKNOWN', {detail: {upstream: target.upstream.name, repository: target.remoteName}});
	}

	#client(target: CachedTarget): UpstreamClient {
		return this.deps.upstream(target.upstream.name);
	}
}

/** The upstream's error for a cached tag that is past max_stale: what a miss would get, saying why the copy was not served. */
function pastMaxStale(target: CachedTarget, tagged: TagRecord, dueAt: number, error: RegistryError): RegistryError {
	return new RegistryError(
		error.code,
		{
			message: `${error.message}; the cached copy is past max_stale`,
			detail: {
				upstream: target.upstream.name,
				repository: target.remoteName,
				reason: 'the cached copy is past upstreams.' + target.upstream.name + '.max_stale and the upstream cannot confirm it',
				lastChecked: new Date(tagged.checkedAt).toISOString(),
				staleSince: new Date(dueAt).toISOString(),
			},
			headers: error.headers,
			cause: error,
		},
		error.status,
	);
}
