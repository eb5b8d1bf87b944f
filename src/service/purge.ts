/**
 * Purge of cached content: `NAME[:TAG]` as a client names it, resolved by the
 * namespace rules, then forgotten by the metadata store so that the next pull
 * fetches from the upstream again. Pushed (local) content is never purged
 * this way: it is deleted with the V2 API and collected by `gc`. Blobs are
 * not removed here: ones nothing links any more are garbage for `gc` (its
 * grace period keeps a pull that is using them safe), ones other repositories
 * share stay theirs.
 *
 * The only in-process cache of repository content is the proxy's 5-second
 * memory of upstream 404s, which a purge cannot make wrong; the database is
 * the single truth every replica reads.
 */
import {type Catalog} from '../store/metadata.js';
import {RegistryError} from '../v2/errors.js';
import {isTag, isValidName} from '../v2/grammar.js';
import {type NamespaceRouter} from './namespaces.js';

export type PurgeResult = {repository: string; upstream: string; tag?: string; tags: string[]; manifests: number};

/** `NAME[:TAG]`: the tag is after the last colon that follows the last slash. */
export function parsePurgeTarget(reference: string): {name: string; tag?: string} {
	const colon = reference.lastIndexOf(':');
	const split = colon > reference.lastIndexOf('/');
	const name = split ? reference.slice(0, colon) : reference;
	const tag = split ? reference.slice(colon + 1) : undefined;
	if (!isValidName(name)) {
		throw new RegistryError('NAME_INVALID', {detail: {name: name.slice(0, 300)}});
	}

	if (tag !== undefined && !isTag(tag)) {
		throw new RegistryError('TAG_INVALID', {message: 'invalid tag', detail: {tag: tag.slice(0, 300)}});
	}

	return tag === undefined ? {name} : {name, tag};
}

export class Purger {
	constructor(
		private readonly metadata: Pick<Catalog, 'purge'>,
		private readonly namespaces: Pick<NamespaceRouter, 'resolve'>,
	) {}

	async purge(reference: string): Promise<PurgeResult> {
		const {name, tag} = parsePurgeTarget(reference);
		const target = this.namespaces.resolve(name);
		if (target.kind === 'local') {
			throw new RegistryError('UNSUPPORTED', {
				message: 'pushed content is never purged: delete it with DELETE /v2/NAME/manifests/DIGEST, then run gc',
				detail: {name},
			});
		}

		const removed = await this.metadata.purge(target.repo, tag);
		if (removed.tags.length === 0 && removed.manifests === 0) {
			throw tag === undefined
				? new RegistryError('NAME_UNKNOWN', {message: 'nothing of this repository is cached', detail: {name}})
				: new RegistryError('MANIFEST_UNKNOWN', {message: 'this tag is not cached', detail: {name, tag}});
		}

		return {repository: target.clientName, upstream: target.upstream.name, ...(tag === undefined ? {} : {tag}), ...removed};
	}
}
