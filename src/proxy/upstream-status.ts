/**
 * What an upstream's answer means for our client, in one place for
 * manifests, blobs and tag lists. 429 and 5xx never get here: the upstream
 * client throws them (TOOMANYREQUESTS, UNAVAILABLE) after its retries.
 */
import {type CachedTarget} from '../service/namespaces.js';
import {RegistryError, UpstreamError} from '../v2/errors.js';

/** Throws the V2 error for a non-200 upstream status; `notFound` is the error for a 404. */
export function checkUpstreamStatus(status: number, target: CachedTarget, notFound: () => RegistryError): void {
	if (status === 200) {
		return;
	}

	if (status === 404) {
		throw notFound();
	}

	if (status === 401 || status === 403) {
		throw new RegistryError('NAME_UNKNOWN', {
			message: 'the upstream denied access to this repository',
			detail: {upstream: target.upstream.name, repository: target.remoteName, status},
		});
	}

	throw new UpstreamError('UNAVAILABLE', {message: `upstream ${target.upstream.name} answered ${status}`});
}
