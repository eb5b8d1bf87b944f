import {type KeyObject, createPublicKey} from 'node:crypto';
import {readFileSync, existsSync} from 'node:fs';
import {availableParallelism} from 'node:os';
import path from 'node:path';
import {parse as parseYaml, YAMLParseError} from 'yaml';
import {type z} from 'zod';
import {applyOverrides, environmentOverrides, type Environment, type Override} from './env.js';
import {ConfigError} from './errors.js';
import {configSchema} from './schema.js';

export {type Environment} from './env.js';

export type UpstreamConfig = {
	name: string;
	url: string;
	tagTtlMs: number;
	timeoutMs: number;
	/** How long a client waits for the revalidation of a cached tag before it gets the stale copy. */
	revalidateTimeoutMs: number;
	/** The only token realm (its origin) that gets the credentials; default: the /v2/ challenge's realm. */
	tokenRealm?: string;
	/** Past its TTL by more than this, a tag the upstream cannot confirm is an error, not a stale answer (undefined: no bound). */
	maxStaleMs?: number;
	/** Below this many pulls left (ratelimit-remaining), a cached tag is served from the cache and checked with HEADs only. */
	ratelimitReserve: number;
	offline: boolean;
	credentials?: {username: string; password: string};
	/** Docker Hub puts single-segment names under library/. */
	libraryPrefix: boolean;
	policy?: SignaturePolicyConfig;
};

/** `policy.require_signature`: manifests are served only with a signature by one of these keys. */
export type SignaturePolicyConfig = {keys: Array<{file: string; key: KeyObject}>};

export type S3Config = {
	endpoint: string;
	bucket: string;
	region: string;
	accessKey: string;
	secretKey: string;
	forcePathStyle: boolean;
	prefix: string;
	redirect: boolean;
	/** Bytes per part of a fill's multipart upload. */
	partSize: number;
};

export type NamespaceRule = {prefix: string; local: true} | {prefix: string; upstream: string; policy?: SignaturePolicyConfig};

export type Config = {
	listen: {host: string; port: number};
	publicUrl?: string;
	prefix: string;
	tls?: {cert: string; key: string};
	storage: {dir: string; maxSize?: number; s3?: S3Config};
	/** Absent: SQLite under storage.dir. */
	postgresUrl?: string;
	/** How the other replicas reach this one (fills in progress); defaults from `listen`. */
	advertiseUrl?: string;
	auth?: {htpasswd: string; anonymousPull: boolean; admins: string[]};
	logLevel: string;
	/** Worker processes (`workers`, auto: one per core). */
	workers: number;
	memoryCache: {maxBytes: number; maxItemBytes: number};
	/** `text`: one readable line per event; `json`: JSON lines; `auto`: text on a terminal, JSON otherwise. */
	logFormat: 'auto' | 'text' | 'json';
	upstreams: Map<string, UpstreamConfig>;
	namespaces: NamespaceRule[];
	notifications: EndpointConfig[];
};

export type EventAction = 'push' | 'pull' | 'delete';

/** A webhook endpoint under `notifications`: events are POSTed there as the reference registry does. */
export type EndpointConfig = {
	name: string;
	url: string;
	headers: Record<string, string>;
	timeoutMs: number;
	backoffMs: number;
	maxAttempts: number;
	events: EventAction[];
};

export {ConfigError} from './errors.js';

function keyPath(segments: ReadonlyArray<PropertyKey>): string {
	return segments.map(String).join('.') || '(top level)';
}

/** One line, whatever the value held. */
function oneLine(text: string): string {
	return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** The issue in one line; a value that came from the environment is named by its variable. */
function describe(issue: z.core.$ZodIssue, overrides: readonly Override[]): string {
	const line = oneLine(describeIssue(issue));
	const key = issue.path.map(String);
	// The variable set this key, or one inside it (a check across an upstream's username and password).
	const covers = (override: Override, length: number) => length > 0 && override.key.slice(0, length).every((segment, index) => key[index] === segment);
	const from = overrides.find(override => covers(override, override.key.length)) ?? overrides.find(override => covers(override, key.length));
	return from ? line.replace(/^config: ([^:]+):/, `config: ${from.variable} ($1):`) : line;
}

function describeIssue(issue: z.core.$ZodIssue): string {
	if (issue.code === 'unrecognized_keys') {
		const keys = issue.keys.map(key => keyPath([...issue.path, key]));
		return `config: ${keys.join(', ')}: unknown key`;
	}

	if (issue.code === 'invalid_union') {
		return `config: ${keyPath(issue.path)}: ${issue.path[0] === 'namespaces' ? 'needs prefix and either upstream: NAME or local: true' : 'invalid value'}`;
	}

	if (issue.code === 'invalid_type' && issue.input === undefined) {
		return `config: ${keyPath(issue.path)}: required`;
	}

	return `config: ${keyPath(issue.path)}: ${issue.message}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The public keys of a `policy` block, read now: a file that is not a PEM public key is a config error naming it. */
function policyOf(raw: {require_signature?: {keys: string[]}} | undefined, at: string, resolve: (file: string) => string): {policy?: SignaturePolicyConfig} {
	if (!raw?.require_signature) {
		return {};
	}

	return {
		policy: {
			keys: raw.require_signature.keys.map((entry, index) => {
			const file = resolve(entry);
			try {
				const key = createPublicKey(readFileSync(file));
				if (!['ec', 'rsa', 'ed25519'].includes(key.asymmetricKeyType ?? '')) {
					throw new Error(`unsupported key type ${key.asymmetricKeyType}`);
				}

				return {file, key};
			} catch (error) {
				const code = (error as NodeJS.ErrnoException).code;
				const reason = code === 'ENOENT' ? 'file not found' : `not a PEM public key (${oneLine((error as Error).message)})`;
				throw new ConfigError(`config: ${at}.policy.require_signature.keys.${index}: ${reason}: ${file}`);
			}
		}),
		},
	};
}

function isDockerHub(name: string, url: string): boolean {
	return name === 'docker.io' || /(^|\.)docker\.io$/.test(new URL(url).hostname);
}

/**
 * Validates an already-parsed document; paths are resolved against `baseDir`.
 * MIRROR_* variables in `env` win over the document's keys (config/env.ts).
 */
export function parseConfig(document: unknown, baseDir: string, env: Environment = {}): Config {
	const upstreamNames = isRecord(document) && isRecord(document['upstreams']) ? Object.keys(document['upstreams']) : [];
	const overrides = environmentOverrides(env, upstreamNames);
	const result = configSchema.safeParse(applyOverrides(document, overrides) ?? {}, {reportInput: true});
	if (!result.success) {
		throw new ConfigError(describe(result.error.issues[0]!, overrides));
	}

	const raw = result.data;
	const resolve = (file: string) => path.resolve(baseDir, file);
	const upstreams = new Map<string, UpstreamConfig>();
	for (const [name, entry] of Object.entries(raw.upstreams)) {
		upstreams.set(name, {
			name,
			url: entry.url,
			tagTtlMs: entry.tag_ttl,
			timeoutMs: entry.timeout,
			revalidateTimeoutMs: entry.revalidate_timeout,
			tokenRealm: entry.token_realm,
			maxStaleMs: entry.max_stale,
			ratelimitReserve: entry.ratelimit_reserve,
			offline: entry.offline,
			credentials: entry.username === undefined ? undefined : {username: entry.username, password: entry.password ?? ''},
			libraryPrefix: isDockerHub(name, entry.url),
			...policyOf(entry.policy, `upstreams.${name}`, resolve),
		});
	}

	const config: Config = {
		listen: raw.listen,
		publicUrl: raw.public_url,
		prefix: raw.prefix,
		storage: {dir: resolve(raw.storage.dir), maxSize: raw.storage.max_size},
		postgresUrl: raw.metadata.driver === 'postgres' ? raw.metadata.url : undefined,
		advertiseUrl: raw.cluster.advertise_url,
		logLevel: raw.log.level,
		workers: raw.workers === 'auto' ? availableParallelism() : raw.workers,
		memoryCache: {maxBytes: raw.memory_cache.max_size, maxItemBytes: raw.memory_cache.max_item_size},
		logFormat: raw.log.format,
		upstreams,
		namespaces: raw.namespaces.map((rule, index) =>
			'upstream' in rule ? {prefix: rule.prefix, upstream: rule.upstream, ...policyOf(rule.policy, `namespaces.${index}`, resolve)} : rule,
		),
		notifications: raw.notifications.endpoints.map((entry, index) => ({
			name: entry.name ?? `endpoint-${index + 1}`,
			url: entry.url,
			headers: entry.headers,
			timeoutMs: entry.timeout,
			backoffMs: entry.backoff,
			maxAttempts: entry.attempts,
			events: entry.events,
		})),
	};

	const s3 = raw.storage.s3;
	if (raw.storage.driver === 's3' && s3) {
		config.storage.s3 = {
			endpoint: s3.endpoint,
			bucket: s3.bucket,
			region: s3.region,
			accessKey: s3.access_key,
			secretKey: s3.secret_key,
			forcePathStyle: s3.force_path_style,
			prefix: s3.prefix === '' || s3.prefix.endsWith('/') ? s3.prefix : `${s3.prefix}/`,
			redirect: s3.redirect,
			partSize: s3.part_size,
		};
	}

	if (raw.tls) {
		config.tls = {cert: resolve(raw.tls.cert), key: resolve(raw.tls.key)};
		for (const key of ['cert', 'key'] as const) {
			if (!existsSync(config.tls[key])) {
				throw new ConfigError(`config: tls.${key}: file not found: ${config.tls[key]}`);
			}
		}
	}

	if (raw.auth) {
		config.auth = {htpasswd: resolve(raw.auth.htpasswd), anonymousPull: raw.auth.anonymous_pull, admins: raw.auth.admins};
		if (!existsSync(config.auth.htpasswd)) {
			throw new ConfigError(`config: auth.htpasswd: file not found: ${config.auth.htpasswd}`);
		}
	}

	return config;
}

export function parseConfigText(text: string, baseDir: string, fileName = 'config', env: Environment = {}): Config {
	let document: unknown;
	try {
		document = parseYaml(text, {prettyErrors: false});
	} catch (error) {
		if (error instanceof YAMLParseError) {
			const offset = error.pos[0];
			const line = text.slice(0, offset).split('\n').length;
			throw new ConfigError(`config: ${fileName}:${line}: invalid YAML: ${error.message.split('\n')[0]}`);
		}

		throw error;
	}

	return parseConfig(document, baseDir, env);
}

/** Reads and validates `file`; MIRROR_* variables in `env` (default: the process's) win over its keys. */
export function loadConfig(file: string, env: Environment = process.env): Config {
	const absolute = path.resolve(file);
	let text: string;
	try {
		text = readFileSync(absolute, 'utf8');
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code;
		throw new ConfigError(`config: ${absolute}: ${code === 'ENOENT' ? 'file not found' : `cannot read (${code})`}`);
	}

	return parseConfigText(text, path.dirname(absolute), absolute, env);
}
