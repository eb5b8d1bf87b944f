/**
 * The per-deployment keys from MIRROR_* environment variables. The rule: a
 * variable that is set (and not empty) wins over the file's key; the file
 * supplies everything else. Values are written into the parsed document before
 * it is validated, so they are checked exactly like the file's, and an error
 * names the variable instead of the key.
 */
import path from 'node:path';
import {ConfigError} from './errors.js';

export type Environment = Readonly<Record<string, string | undefined>>;

export type Override = {variable: string; key: string[]; value: string};

/** Variable → key, for the keys that do not depend on the file. */
const FIXED = [
	['MIRROR_LISTEN', ['listen']],
	['MIRROR_PUBLIC_URL', ['public_url']],
	['MIRROR_STORAGE_DIR', ['storage', 'dir']],
	['MIRROR_STORAGE_MAX_SIZE', ['storage', 'max_size']],
	['MIRROR_LOG_LEVEL', ['log', 'level']],
	['MIRROR_LOG_FORMAT', ['log', 'format']],
] as const;

const UPSTREAM_VARIABLE = /^MIRROR_UPSTREAM_([A-Z0-9_]+)_(URL|USERNAME|PASSWORD)$/;

/** `docker.io` → `DOCKER_IO`, `registry.k8s.io:443` → `REGISTRY_K8S_IO_443`. */
export function upstreamVariablePart(name: string): string {
	return name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

/** The overrides `env` asks for; `upstreamNames` are the upstreams the file declares. */
export function environmentOverrides(env: Environment, upstreamNames: readonly string[]): Override[] {
	const overrides: Override[] = [];
	for (const [variable, key] of FIXED) {
		const value = env[variable];
		if (value !== undefined && value !== '') {
			// A relative directory from the environment is relative to the working directory, not to the config file.
			overrides.push({variable, key: [...key], value: variable === 'MIRROR_STORAGE_DIR' ? path.resolve(value) : value});
		}
	}

	for (const [variable, value] of Object.entries(env)) {
		const match = UPSTREAM_VARIABLE.exec(variable);
		if (!match || value === undefined || value === '') {
			continue;
		}

		const name = upstreamNames.find(candidate => upstreamVariablePart(candidate) === match[1]);
		if (name === undefined) {
			const known = upstreamNames.map(candidate => `${candidate} as ${upstreamVariablePart(candidate)}`).join(', ') || 'none';
			throw new ConfigError(`config: ${variable}: no upstream named ${match[1]!} under upstreams (known: ${known})`);
		}

		overrides.push({variable, key: ['upstreams', name, match[2]!.toLowerCase()], value});
	}

	return overrides;
}

/** A copy of `document` with the overrides written in (objects along the way are created). */
export function applyOverrides(document: unknown, overrides: readonly Override[]): unknown {
	if (overrides.length === 0) {
		return document;
	}

	const root: Record<string, unknown> = isObject(document) ? structuredClone(document) : {};
	for (const {key, value} of overrides) {
		let node = root;
		for (const segment of key.slice(0, -1)) {
			const next = node[segment];
			if (!isObject(next)) {
				node[segment] = {};
			}

			node = node[segment] as Record<string, unknown>;
		}

		node[key.at(-1)!] = value;
	}

	return root;
}

function isObject(value: unknown): value is Record<string, unknown> {
	return typeof value === 'object' && value !== null && !Array.isArray(value);
}
