/**
 * The signature policy of a cached namespace (`policy.require_signature`):
 * a manifest is served only when a cosign signature by one of the trusted
 * keys is found for its digest, under the `sha256-<hex>.sig` tag or among the
 * OCI 1.1 referrers. ProxyManifests asks `admit` before it stores a fetched
 * manifest and before it serves a cached one, so a denied image leaves
 * nothing in the cache. Signatures are fetched through the mirror (and so
 * cached): verification works with the upstream down.
 *
 * Indexes: `cosign sign` on an index signs the index digest only (each
 * child too with --recursive). A signed index covers the children it lists;
 * a child asked for by digest passes with its own signature or when a signed
 * index listing it was admitted in this repository.
 */
import {LRUCache} from 'lru-cache';
import {type CachedTarget} from '../service/namespaces.js';
import {type ManifestRecord} from '../store/metadata.js';
import {RegistryError, isUpstreamFailure} from '../v2/errors.js';
import {type Digest, parseDigest} from '../v2/grammar.js';
import {type ParsedManifest, parseManifest} from '../v2/manifest.js';
import {SIGNATURE_ANNOTATION, SIMPLE_SIGNING, isSignatureManifest, signatureTag, verifySimpleSigning} from './cosign.js';

/** Where signatures come from: the mirror's own cached paths (implemented in proxy/). */
export type SignatureSource = {
	/** A manifest by tag or digest through the cache; throws MANIFEST_UNKNOWN when there is none. */
	manifest(target: CachedTarget, reference: {kind: 'tag'; tag: string} | {kind: 'digest'; digest: Digest}): Promise<ManifestRecord>;
	/** A blob's bytes through the cache. */
	blob(target: CachedTarget, digest: Digest): Promise<Buffer>;
	/** Digests of the cosign signature referrers of `digest` (upstream's referrers API, else the cached ones). */
	referrers(target: CachedTarget, digest: string): Promise<string[]>;
};

export type PolicyDecision = 'allowed' | 'denied';

export class SignaturePolicy {
	/** Children of admitted signed indexes, by repository: covered by the index's signature. */
	readonly #covered = new LRUCache<string, true>({max: 100_000});

	constructor(
		private readonly source: SignatureSource,
		private readonly onDecision?: (upstream: string, decision: PolicyDecision) => void,
	) {}

	/** Resolves when `manifest` may be served to `target`; throws DENIED with the reason otherwise. */
	async admit(target: CachedTarget, manifest: ManifestRecord): Promise<void> {
		if (!target.policy) {
			return;
		}

		const parsed = parseManifest(manifest.content, manifest.mediaType, {mode: 'lenient'});
		if (isSignatureManifest(parsed)) {
			return; // a signature carries no image content; the policy fetches these itself
		}

		const key = `${target.repo.registry}\n${target.repo.name}\n${manifest.digest}`;
		const reasons = this.#covered.has(key) ? [] : await this.#findSignature(target, manifest.digest);
		if (reasons.length > 0) {
			this.onDecision?.(target.upstream.name, 'denied');
			throw new RegistryError('DENIED', {
				message: `no signature by a trusted key for ${manifest.digest}`,
				detail: {repository: target.remoteName, digest: manifest.digest, reasons},
			});
		}

		this.onDecision?.(target.upstream.name, 'allowed');
		this.#cover(target, parsed);
	}

	#cover(target: CachedTarget, parsed: ParsedManifest): void {
		for (const child of parsed.children) {
			this.#covered.set(`${target.repo.registry}\n${target.repo.name}\n${child.digest.value}`, true);
		}
	}

	/** [] when a valid signature was found, else why none counts. */
	async #findSignature(target: CachedTarget, digest: string): Promise<string[]> {
		const reasons: string[] = [];
		const candidates: Array<() => Promise<ManifestRecord>> = [
			async () => this.source.manifest(target, {kind: 'tag', tag: signatureTag(digest)}),
		];
		try {
			for (const referrer of await this.source.referrers(target, digest)) {
				candidates.push(async () => this.source.manifest(target, {kind: 'digest', digest: parseDigest(referrer)}));
			}
		} catch (error) {
			reasons.push(`referrers: ${describe(error)}`);
		}

		for (const candidate of candidates) {
			try {
				const signature = await candidate();
				const reason = await this.#check(target, signature, digest);
				if (reason === undefined) {
					return [];
				}

				reasons.push(`${signature.digest}: ${reason}`);
			} catch (error) {
				reasons.push(`${signatureTag(digest)}: ${describe(error)}`);
			}
		}

		return reasons;
	}

	/** undefined when one layer of this signature manifest verifies for `digest`, else why not. */
	async #check(target: CachedTarget, signature: ManifestRecord, digest: string): Promise<string | undefined> {
		const parsed = parseManifest(signature.content, signature.mediaType, {mode: 'lenient'});
		const layers = parsed.layers.filter(layer => layer.mediaType === SIMPLE_SIGNING);
		if (layers.length === 0) {
			return 'not a cosign signature (no simple-signing layer)';
		}

		let reason = 'no signature annotation';
		for (const layer of layers) {
			const annotation = layerAnnotation(signature, layer.digest.value);
			if (typeof annotation !== 'string') {
				continue;
			}

			const payload = await this.source.blob(target, layer.digest);
			const verdict = verifySimpleSigning({payload, signature: annotation, digest, keys: target.policy!.keys});
			if (verdict.ok) {
				return undefined;
			}

			reason = verdict.reason;
		}

		return reason;
	}
}

/** The annotation of the layer with this digest, read from the manifest body (the parser keeps no layer annotations). */
function layerAnnotation(signature: ManifestRecord, digest: string): unknown {
	const body = JSON.parse(signature.content.toString('utf8')) as {layers?: Array<{digest?: unknown; annotations?: Record<string, unknown>}>};
	return body.layers?.find(layer => layer.digest === digest)?.annotations?.[SIGNATURE_ANNOTATION];
}

function describe(error: unknown): string {
	if (error instanceof RegistryError && error.code === 'MANIFEST_UNKNOWN') {
		return 'not found';
	}

	if (isUpstreamFailure(error)) {
		return `upstream unavailable and not cached (${(error as Error).message})`;
	}

	return error instanceof Error ? error.message : String(error);
}
