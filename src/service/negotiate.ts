/** Content negotiation of manifests, the same for cached and local namespaces. */
import {RegistryError} from '../v2/errors.js';
import {type Digest, parseDigest} from '../v2/grammar.js';
import {indexChildren} from '../v2/manifest.js';
import {accepts, isIndexType} from '../v2/media-types.js';
import {type ManifestResult} from './read-service.js';

const DEFAULT_PLATFORM = {os: 'linux', architecture: 'amd64'};

/**
 * Serves what the client's Accept allows. A client that cannot take a
 * manifest list gets the linux/amd64 image, as with the reference registry;
 * otherwise an unacceptable type is MANIFEST_UNKNOWN.
 */
export async function negotiate(
	result: ManifestResult,
	accept: string[],
	byDigest: (digest: Digest) => Promise<ManifestResult>,
): Promise<ManifestResult> {
	const {mediaType} = result.manifest;
	if (accepts(accept, mediaType)) {
		return result;
	}

	if (isIndexType(mediaType)) {
		const child = indexChildren(JSON.parse(result.manifest.content.toString('utf8'))).find(
			entry => entry.platform?.os === DEFAULT_PLATFORM.os && entry.platform.architecture === DEFAULT_PLATFORM.architecture,
		);
		if (child) {
			const resolved = await byDigest(parseDigest(child.digest));
			if (accepts(accept, resolved.manifest.mediaType)) {
				const freshUntil = result.freshUntil === undefined || resolved.freshUntil === undefined ? undefined : Math.min(result.freshUntil, resolved.freshUntil);
				return {...resolved, warning: resolved.warning ?? result.warning, freshUntil};
			}
		}
	}

	throw new RegistryError('MANIFEST_UNKNOWN', {
		message: `manifest is ${mediaType}, which the Accept header does not allow`,
		detail: {mediaType, accept},
	});
}
