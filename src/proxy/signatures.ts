/**
 * Where the signature policy (policy/) gets signatures: through this
 * mirror's own cached paths, so they are cached like any manifest or blob
 * and verification works with the upstream down. Referrers lists are asked
 * of the upstream's OCI 1.1 referrers API and recorded in the index.
 */
import {COSIGN_SIGNATURE_ARTIFACT} from '../policy/cosign.js';
import {type SignatureSource} from '../policy/signature-policy.js';
import {type CachedTarget} from '../service/namespaces.js';
import {type ReadIndex, type ReferrerRecord, type WriteIndex} from '../store/metadata.js';
import {type UpstreamClient, pullScope} from '../upstream/client.js';
import {RegistryError, isUpstreamFailure} from '../v2/errors.js';
import {type Digest} from '../v2/grammar.js';
import {type ProxyBlobs} from './blobs.js';
import {type ProxyManifests} from './manifests.js';

/** A simple-signing payload is a few hundred bytes; anything past this is not one. */
const MAX_PAYLOAD_BYTES = 1024 * 1024;

export function signatureSource(deps: {
	manifests: ProxyManifests;
	blobs: ProxyBlobs;
	metadata: Pick<ReadIndex, 'listReferrers'> & Pick<WriteIndex, 'putReferrer'>;
	upstream: (name: string) => UpstreamClient;
}): SignatureSource {
	return {
		async manifest(target, reference) {
			return (await deps.manifests.get(target, reference)).manifest;
		},
		async blob(target, digest) {
			return readAll(target, digest, deps.blobs);
		},
		async referrers(target, digest) {
			const cached = async () => (await deps.metadata.listReferrers(target.repo, digest)).filter(entry => entry.artifactType === COSIGN_SIGNATURE_ARTIFACT);
			if (target.upstream.offline) {
				return (await cached()).map(entry => entry.digest);
			}

			try {
				const response = await deps.upstream(target.upstream.name).request('GET', `/v2/${target.remoteName}/referrers/${digest}`, {
					scope: pullScope(target.remoteName),
					accept: 'application/vnd.oci.image.index.v1+json',
					kind: 'referrers',
				});
				if (response.status !== 200) {
					return (await cached()).map(entry => entry.digest); // no referrers API there (404), or nothing to say
				}

				const found = parseReferrers(response.body).filter(entry => entry.artifactType === COSIGN_SIGNATURE_ARTIFACT);
				for (const entry of found) {
					await deps.metadata.putReferrer(target.repo, digest, entry);
				}

				return found.map(entry => entry.digest);
			} catch (error) {
				if (isUpstreamFailure(error)) {
					return (await cached()).map(entry => entry.digest);
				}

				throw error;
			}
		},
	};
}

async function readAll(target: CachedTarget, digest: Digest, blobs: ProxyBlobs): Promise<Buffer> {
	const result = await blobs.get(target, digest);
	if (result.size !== undefined && result.size > MAX_PAYLOAD_BYTES) {
		throw new RegistryError('DENIED', {message: `signature payload ${digest.value} is ${result.size} bytes, more than a signature`});
	}

	const chunks: Buffer[] = [];
	for await (const chunk of result.open()) {
		chunks.push(chunk as Buffer);
	}

	return Buffer.concat(chunks);
}

/** The descriptors of a referrers answer (an OCI image index); what is not one is skipped. */
function parseReferrers(body: Buffer): ReferrerRecord[] {
	let index: {manifests?: unknown};
	try {
		index = JSON.parse(body.toString('utf8')) as {manifests?: unknown};
	} catch {
		return [];
	}

	if (!Array.isArray(index.manifests)) {
		return [];
	}

	return index.manifests.flatMap((entry: {digest?: unknown; mediaType?: unknown; artifactType?: unknown; size?: unknown}) =>
		typeof entry.digest === 'string' && /^sha256:[a-f0-9]{64}$/.test(entry.digest) && typeof entry.mediaType === 'string' && typeof entry.size === 'number'
			? [{digest: entry.digest, mediaType: entry.mediaType, size: entry.size, ...(typeof entry.artifactType === 'string' ? {artifactType: entry.artifactType} : {})}]
			: [],
	);
}
