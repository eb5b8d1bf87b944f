/**
 * Which store answers for a repository name. First match wins:
 *   1. containerd's `?ns=HOST` names the upstream;
 *   2. a leading path segment that names a configured upstream
 *      (`ghcr.io/org/tool` → upstream ghcr.io, repository org/tool);
 *   3. the `namespaces` rules, by prefix.
 * Docker Hub's single-segment names get `library/`.
 */
import {type Config, type SignaturePolicyConfig, type UpstreamConfig} from '../config/load.js';
import {LOCAL_REGISTRY, type RepoKey} from '../store/metadata.js';
import {RegistryError} from '../v2/errors.js';
import {isValidName} from '../v2/grammar.js';

export type CachedTarget = {
	kind: 'cached';
	upstream: UpstreamConfig;
	/** The name as the upstream knows it. */
	remoteName: string;
	repo: RepoKey;
	/** The name as the client asked for it (for Link headers). */
	clientName: string;
	/** Signature policy: the matching namespace rule's, else the upstream's. */
	policy?: SignaturePolicyConfig;
};

export type LocalTarget = {kind: 'local'; repo: RepoKey; clientName: string};

export type Target = CachedTarget | LocalTarget;

export class NamespaceRouter {
	constructor(private readonly config: Pick<Config, 'upstreams' | 'namespaces'>) {}

	resolve(name: string, ns?: string): Target {
		if (ns !== undefined && ns !== '') {
			const upstream = this.config.upstreams.get(ns);
			if (!upstream) {
				throw new RegistryError('NAME_UNKNOWN', {
					message: `no upstream is configured for ${ns}`,
					detail: {ns, configured: [...this.config.upstreams.keys()]},
				});
			}

			return this.#cached(upstream, name, name);
		}

		const slash = name.indexOf('/');
		if (slash > 0) {
			const upstream = this.config.upstreams.get(name.slice(0, slash));
			if (upstream) {
				return this.#cached(upstream, name.slice(slash + 1), name);
			}
		}

		for (const rule of this.config.namespaces) {
			if (name.startsWith(rule.prefix)) {
				if ('local' in rule) {
					return {kind: 'local', repo: {registry: LOCAL_REGISTRY, name}, clientName: name};
				}

				return this.#cached(this.config.upstreams.get(rule.upstream)!, name, name, rule.policy);
			}
		}

		throw new RegistryError('NAME_UNKNOWN', {message: 'no namespace rule matches this repository', detail: {name}});
	}

	/** The one name a repository is shown and counted under (see clientName). */
	displayName(repo: RepoKey): string {
		return clientName(repo, this.config.namespaces);
	}

	#cached(upstream: UpstreamConfig, name: string, clientName: string, policy = upstream.policy): CachedTarget {
		const remoteName = upstream.libraryPrefix && !name.includes('/') ? `library/${name}` : name;
		if (!isValidName(remoteName)) {
			throw new RegistryError('NAME_INVALID', {detail: {name: remoteName}});
		}

		return {kind: 'cached', upstream, remoteName, repo: {registry: upstream.name, name: remoteName}, clientName, ...(policy ? {policy} : {})};
	}
}

/** The name a client uses for a repository: cached ones under their upstream unless a rule routes the bare name there. */
export function clientName(repo: RepoKey, namespaces: Config['namespaces']): string {
	if (repo.registry === LOCAL_REGISTRY) {
		return repo.name;
	}

	const rule = namespaces.find(entry => repo.name.startsWith(entry.prefix));
	return rule && 'upstream' in rule && rule.upstream === repo.registry ? repo.name : `${repo.registry}/${repo.name}`;
}
