/**
 * The shape of mirror.config.yml. Parsing turns strings people write ("5m",
 * "50GiB", "0.0.0.0:5000") into the values the code uses, so nothing else
 * ever parses config text.
 */
import {z} from 'zod';
import {parseDuration, parseSize} from './units.js';

const duration = z.union([z.string(), z.number()]).transform((value, context) => {
	const ms = parseDuration(value);
	if (ms === undefined) {
		context.addIssue({code: 'custom', message: `not a duration (like 30s, 5m, 1h): ${String(value)}`});
		return z.NEVER;
	}

	return ms;
});

const size = z.union([z.string(), z.number()]).transform((value, context) => {
	const bytes = parseSize(value);
	if (bytes === undefined) {
		context.addIssue({code: 'custom', message: `not a size (like 500MB, 50GiB): ${String(value)}`});
		return z.NEVER;
	}

	return bytes;
});

const httpUrl = z.string().transform((value, context) => {
	let url: URL;
	try {
		url = new URL(value);
	} catch {
		context.addIssue({code: 'custom', message: `not a URL: ${value}`});
		return z.NEVER;
	}

	if (url.protocol !== 'http:' && url.protocol !== 'https:') {
		context.addIssue({code: 'custom', message: `not an http(s) URL: ${value}`});
		return z.NEVER;
	}

	return url.origin + url.pathname.replace(/\/+$/, '');
});

const listen = z.union([z.string(), z.number()]).transform((value, context) => {
	const text = String(value);
	const match = /^(?:(\[[0-9a-fA-F:]+\]|[^:]*):)?(\d{1,5})$/.exec(text);
	const port = match ? Number(match[2]) : Number.NaN;
	if (!match || port > 65_535) {
		context.addIssue({code: 'custom', message: `not host:port: ${text}`});
		return z.NEVER;
	}

	const host = (match[1] ?? '').replace(/^\[|\]$/g, '') || '0.0.0.0';
	return {host, port};
});

const prefix = z.string().transform((value, context) => {
	const trimmed = value.replace(/\/+$/, '');
	if (trimmed !== '' && !/^\/[A-Za-z0-9._~\-/]+$/.test(trimmed)) {
		context.addIssue({code: 'custom', message: `not a path like /registry: ${value}`});
		return z.NEVER;
	}

	return trimmed;
});

/** `policy: {require_signature: {keys: [./keys/cosign.pub]}}`: PEM public key files, relative to the config file. */
const policy = z.strictObject({
	require_signature: z.strictObject({keys: z.array(z.string().min(1)).min(1, 'at least one key file')}).optional(),
});

const upstream = z.strictObject({
	url: httpUrl,
	tag_ttl: duration.default(5 * 60_000),
	username: z.string().optional(),
	password: z.string().optional(),
	offline: z.boolean().default(false),
	timeout: duration.default(30_000),
	/** A cached tag past its TTL is answered within this, stale if the upstream has not answered. */
	revalidate_timeout: duration.default(3000),
	/** The only token realm that gets the credentials (default: the realm the upstream's /v2/ challenge names). */
	token_realm: httpUrl.optional(),
	/** How long past its TTL a cached tag may be served stale when the upstream cannot confirm it (Quay's staleness period). */
	max_stale: duration.optional(),
	/** Below this ratelimit-remaining, manifest GETs (what Docker Hub counts) are spent only on content not cached. */
	ratelimit_reserve: z.number().int().min(0).default(0),
	policy: policy.optional(),
});

const endpoint = z.strictObject({
	name: z.string().min(1).optional(),
	url: httpUrl,
	headers: z.record(z.string(), z.string()).default({}),
	timeout: duration.default(5000),
	backoff: duration.default(1000),
	attempts: z.number().int().min(1).max(100).default(5),
	events: z.array(z.enum(['push', 'pull', 'delete'])).default(['push', 'pull', 'delete']),
});

const s3 = z.strictObject({
	endpoint: httpUrl,
	bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'not an S3 bucket name (3-63 of a-z 0-9 . -)'),
	region: z.string().min(1).default('us-east-1'),
	access_key: z.string().min(1),
	secret_key: z.string().min(1),
	force_path_style: z.boolean().default(true),
	/** Key prefix inside the bucket, so several mirrors (or other data) can share one. */
	prefix: z
		.string()
		.regex(/^(?:[A-Za-z0-9._-]+\/)*[A-Za-z0-9._-]*$/, 'not a key prefix like mirror/ (letters, digits, . _ - and /)')
		.refine(value => !value.split('/').some(segment => segment === '.' || segment === '..'), 'no . or .. segments in a key prefix')
		.default(''),
	/** Answer blob GETs with a short-lived presigned URL instead of the bytes. */
	redirect: z.boolean().default(false),
	/** Parts of a fill's multipart upload: what a replica taking over a dead one's fill can reuse is whole parts. */
	part_size: size.refine(value => value >= 5 * 1024 * 1024, 'at least 5MiB (the S3 minimum)').default(8 * 1024 * 1024),
});

const postgresUrl = z.string().refine(value => {
	try {
		return ['postgres:', 'postgresql:'].includes(new URL(value).protocol);
	} catch {
		return false;
	}
}, 'not a postgres:// URL');

const namespace = z.union([
	z.strictObject({prefix: z.string(), local: z.literal(true)}),
	z.strictObject({prefix: z.string(), upstream: z.string().min(1), policy: policy.optional()}),
]);

export const configSchema = z
	.strictObject({
		listen: listen.default({host: '0.0.0.0', port: 5000}),
		public_url: httpUrl.optional(),
		prefix: prefix.default(''),
		tls: z.strictObject({cert: z.string().min(1), key: z.string().min(1)}).optional(),
		storage: z
			.strictObject({
				dir: z.string().min(1).default('./data'),
				max_size: size.optional(),
				driver: z.enum(['filesystem', 's3']).default('filesystem'),
				s3: s3.optional(),
			})
			.default({dir: './data', driver: 'filesystem'}),
		metadata: z
			.strictObject({driver: z.enum(['sqlite', 'postgres']).default('sqlite'), url: postgresUrl.optional()})
			.default({driver: 'sqlite'}),
		cluster: z.strictObject({advertise_url: httpUrl.optional()}).default({}),
		auth: z
			.strictObject({
				htpasswd: z.string().min(1),
				anonymous_pull: z.boolean().default(false),
				/** Users (htpasswd names) who may purge cached content from the dashboard and the API. */
				admins: z.array(z.string().min(1)).default([]),
			})
			.optional(),
		/** Worker processes sharing the listening socket: auto (one per core) or a number. */
		workers: z.union([z.literal('auto'), z.number().int().min(1).max(64)]).default('auto'),
		/** Manifests and small blobs answered from memory (per worker); max_size 0 turns it off. */
		memory_cache: z
			.strictObject({max_size: size.default(64 * 1024 * 1024), max_item_size: size.default(256 * 1024)})
			.default({max_size: 64 * 1024 * 1024, max_item_size: 256 * 1024}),
		log: z
			.strictObject({
				level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info'),
				format: z.enum(['auto', 'text', 'json']).default('auto'),
			})
			.default({level: 'info', format: 'auto'}),
		notifications: z.strictObject({endpoints: z.array(endpoint).default([])}).default({endpoints: []}),
		upstreams: z.record(z.string().regex(/^[A-Za-z0-9.-]+(?::\d+)?$/, 'not a registry host name'), upstream).default({}),
		namespaces: z.array(namespace).default([]),
	})
	.superRefine((config, context) => {
		for (const [index, rule] of config.namespaces.entries()) {
			if ('upstream' in rule && !Object.hasOwn(config.upstreams, rule.upstream)) {
				context.addIssue({
					code: 'custom',
					path: ['namespaces', index, 'upstream'],
					message: `no upstream named ${rule.upstream} under upstreams`,
				});
			}
		}

		if (config.storage.driver === 's3' && !config.storage.s3) {
			context.addIssue({code: 'custom', path: ['storage', 's3'], message: 'required with driver: s3 (endpoint, bucket, access_key, secret_key)'});
		}

		if (config.metadata.driver === 'postgres' && !config.metadata.url) {
			context.addIssue({code: 'custom', path: ['metadata', 'url'], message: 'required with driver: postgres'});
		}

		for (const [name, entry] of Object.entries(config.upstreams)) {
			if ((entry.username === undefined) !== (entry.password === undefined)) {
				context.addIssue({code: 'custom', path: ['upstreams', name], message: 'username and password go together'});
			}
		}
	});

export type RawConfig = z.output<typeof configSchema>;
