/**
 * Tag history and pins of cached namespaces, as the command line and the
 * HTTP API ask for them (both by the name a client pulls: `alpine`,
 * `ghcr.io/org/tool`). Everything is read from and written to the metadata
 * store, so a pin made by the CLI beside a running mirror holds at once: the
 * manifest service reads the pin with the tag on every lookup.
 */
import {type CachedTarget, type NamespaceRouter} from '../service/namespaces.js';
import {type PinRecord, type ReadIndex, type RepoKey, type TagIndex, type TagSighting} from '../store/metadata.js';
import {RegistryError} from '../v2/errors.js';
import {isTag, parseDigest, parseName} from '../v2/grammar.js';

export type TagHistory = {
	/** The name as given, the upstream and the name there. */
	repository: string;
	upstream: string;
	remoteName: string;
	tag: string;
	/** What the mirror serves for the tag now, if it has it. */
	current?: {digest: string; fetchedAt: number; checkedAt: number; pinned: boolean};
	pin?: PinRecord;
	/** Oldest first; one entry per stretch of time the upstream had the tag at one digest. */
	history: TagSighting[];
};

/** `NAME:TAG` (the tag after the last colon that follows the last slash, so `host:5000/app:1` works). */
export function parseTagReference(text: string): {name: string; tag: string} {
	const colon = text.lastIndexOf(':');
	if (colon <= text.lastIndexOf('/') || colon === text.length - 1) {
		throw new RegistryError('TAG_INVALID', {message: `not NAME:TAG: ${text}`, detail: {reference: text.slice(0, 300)}});
	}

	const name = parseName(text.slice(0, colon));
	const tag = text.slice(colon + 1);
	if (!isTag(tag)) {
		throw new RegistryError('TAG_INVALID', {message: `not a tag: ${tag}`, detail: {tag: tag.slice(0, 200)}});
	}

	return {name, tag};
}

export type TagControlStore = Pick<TagIndex, 'tagHistory' | 'pinTag' | 'unpinTag' | 'getPin' | 'listPins'> & Pick<ReadIndex, 'getTag' | 'getRepoManifest'>;

export class TagControl {
	constructor(
		private readonly namespaces: Pick<NamespaceRouter, 'resolve'>,
		private readonly metadata: TagControlStore,
		/** The name clients pull a repository by (service/namespaces.ts clientName). */
		private readonly nameOf: (repo: RepoKey) => string,
		private readonly now: () => number = Date.now,
	) {}

	/** The cached repository a client name pulls through; pushed (local) namespaces have no upstream history and nothing to pin against. */
	target(name: string): CachedTarget {
		const target = this.namespaces.resolve(parseName(name));
		if (target.kind !== 'cached') {
			throw new RegistryError('UNSUPPORTED', {
				message: `${name} is a local namespace: history and pins are for tags cached from an upstream`,
				detail: {name},
			});
		}

		return target;
	}

	async history(name: string, tag: string): Promise<TagHistory> {
		const target = this.target(name);
		const [history, current, pin] = await Promise.all([
			this.metadata.tagHistory(target.repo, tag),
			this.metadata.getTag(target.repo, tag),
			this.metadata.getPin(target.repo, tag),
		]);
		if (history.length === 0 && !current && !pin) {
			throw new RegistryError('MANIFEST_UNKNOWN', {message: `the mirror has not seen ${name}:${tag}`, detail: {name, tag, upstream: target.upstream.name}});
		}

		return {
			repository: name,
			upstream: target.upstream.name,
			remoteName: target.remoteName,
			tag,
			...(current
				? {current: {digest: pin?.digest ?? current.digest, fetchedAt: current.fetchedAt, checkedAt: current.checkedAt, pinned: pin !== undefined}}
				: {}),
			...(pin ? {pin} : {}),
			history,
		};
	}

	/**
	 * Pins `name:tag` at `digest` (default: the digest the mirror serves for
	 * the tag now). The manifest must be cached in that repository: a pin
	 * never makes the mirror fetch anything, so it works with the upstream
	 * down and from the offline CLI.
	 */
	async pin(name: string, tag: string, digest: string | undefined, by: string | null): Promise<PinRecord> {
		const target = this.target(name);
		let chosen = digest === undefined ? undefined : parseDigest(digest).value;
		if (chosen === undefined) {
			const current = await this.metadata.getTag(target.repo, tag);
			if (!current) {
				throw new RegistryError('MANIFEST_UNKNOWN', {
					message: `${name}:${tag} is not cached: pull it through the mirror first (or name a cached DIGEST)`,
					detail: {name, tag, upstream: target.upstream.name},
				});
			}

			chosen = (await this.metadata.getPin(target.repo, tag))?.digest ?? current.digest;
		}

		if (!(await this.metadata.getRepoManifest(target.repo, chosen))) {
			throw new RegistryError('MANIFEST_UNKNOWN', {
				message: `${chosen} is not cached for ${name}: pull ${name}@${chosen} through the mirror first (registry-mirror prefetch ${name}@${chosen}), then pin it`,
				detail: {name, tag, digest: chosen},
			});
		}

		const now = this.now();
		await this.metadata.pinTag(target.repo, tag, chosen, now, by);
		return {...target.repo, tag, digest: chosen, pinnedAt: now, pinnedBy: by};
	}

	/** Removes a pin: the tag is revalidated again (at once, when its TTL ran out while it was pinned). */
	async unpin(name: string, tag: string): Promise<PinRecord> {
		const target = this.target(name);
		const pin = await this.metadata.getPin(target.repo, tag);
		if (!pin || !(await this.metadata.unpinTag(target.repo, tag))) {
			throw new RegistryError('MANIFEST_UNKNOWN', {message: `${name}:${tag} is not pinned`, detail: {name, tag}});
		}

		return pin;
	}

	/** Every pin, with the name clients pull the repository by. */
	async pins(): Promise<Array<PinRecord & {repository: string}>> {
		return (await this.metadata.listPins()).map(pin => ({repository: this.nameOf(pin), ...pin}));
	}
}
