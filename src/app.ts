/**
 * openRegistry(config) opens the stores and builds the services for a
 * config; createApp(registry) builds the Koa application around them without
 * listening, so tests can start one on port 0.
 */
import {randomUUID} from 'node:crypto';
import Koa, {type Context} from 'koa';
import {Htpasswd} from './auth/htpasswd.js';
import {TokenIssuer} from './auth/tokens.js';
import {type Config, ConfigError} from './config/load.js';
import {authMiddleware, browserAuth, tokenEndpoint} from './http/auth.js';
import {dashboard} from './http/dashboard.js';
import {errorMiddleware} from './http/errors.js';
import {healthz, metricsHandler, readyz} from './http/ops.js';
import {createRouter, routes} from './http/router.js';
import {LocalWriter} from './local/push.js';
import {LocalService} from './local/service.js';
import {UploadService} from './local/uploads.js';
import {type Logger} from './log.js';
import {Metrics} from './metrics.js';
import {NamespaceRouter} from './namespaces.js';
import {Notifier} from './notify.js';
import {FillRegistry} from './proxy/blob-fill.js';
import {ProxyBlobs} from './proxy/blobs.js';
import {ProxyManifests} from './proxy/manifests.js';
import {ProxyService} from './proxy/service.js';
import {AccessRecorder} from './store/access.js';
import {ClusterFills, FILL_ENDPOINT, fillEndpoint} from './cluster/fills.js';
import {type Coordinator} from './cluster/coordinator.js';
import {type BlobStore} from './store/blob-store.js';
import {openStores} from './store/open.js';
import {Maintenance} from './store/maintenance.js';
import {type MetadataStore} from './store/metadata.js';
import {UpstreamClient} from './upstream/client.js';
import {RegistryError} from './v2/errors.js';

export type Registry = {
	config: Config;
	log: Logger;
	metadata: MetadataStore;
	blobs: BlobStore;
	fills: FillRegistry;
	access: AccessRecorder;
	upstreams: Map<string, UpstreamClient>;
	proxy: ProxyService;
	local: LocalService;
	writer: LocalWriter;
	uploads: UploadService;
	namespaces: NamespaceRouter;
	htpasswd?: Htpasswd;
	maintenance: Maintenance;
	metrics: Metrics;
	notifier: Notifier;
	/** With PostgreSQL: the replicas' shared locks and fill hand-over. */
	coordinator?: Coordinator;
	/** Readiness checks of the shared stores (S3, PostgreSQL), by name. */
	checks: Record<string, () => Promise<unknown>>;
	/** Signs this registry's Bearer tokens; shared by every replica of one store. */
	tokenSecret: Buffer;
	close(): Promise<void>;
};

export async function openRegistry(config: Config, log: Logger): Promise<Registry> {
	let htpasswd: Htpasswd | undefined;
	if (config.auth) {
		try {
			htpasswd = Htpasswd.load(config.auth.htpasswd);
		} catch (error) {
			throw new ConfigError(`config: auth.htpasswd: ${(error as Error).message}`);
		}
	}

	const stores = await openStores(config, log);
	const {blobs, metadata, coordinator} = stores;
	const leftovers = await blobs.sweepTemp();
	if (leftovers > 0) {
		log.info({count: leftovers}, 'removed leftovers of interrupted fills');
	}

	/** With several replicas, maintenance runs on one at a time; a replica finding another at it skips its turn. */
	const exclusively = async <T>(task: () => Promise<T>): Promise<T | undefined> => (coordinator ? coordinator.exclusive(task) : task());
	const access = new AccessRecorder(metadata, undefined, log);
	const fills = new FillRegistry();
	const upstreams = new Map<string, UpstreamClient>();
	const metrics = new Metrics({
		fillsInFlight: () => fills.size,
		storeBytes: async () => ({cached: await metadata.cachedBytes(), pushed: await metadata.pushedBytes()}),
		maxSize: config.storage.maxSize,
		upstreams: () =>
			[...upstreams.values()].map(client => ({
				name: client.name,
				url: client.config.url,
				state: client.breaker.state,
				rateLimitRemaining: client.rateLimitRemaining,
				offline: client.config.offline,
			})),
	});
	for (const upstream of config.upstreams.values()) {
		upstreams.set(
			upstream.name,
			new UpstreamClient(upstream, {
				onWarning: (message, fields) => log.warn({...fields}, message),
				onRequest: (name, _method, kind, status) => {
					metrics.upstreamRequests.inc({upstream: name, kind, status: String(status)});
					if (status === 429) {
						metrics.upstreamRateLimited.inc({upstream: name});
					}
				},
				onError: name => metrics.upstreamErrors.inc({upstream: name}),
			}),
		);
	}

	const upstream = (name: string): UpstreamClient => {
		const client = upstreams.get(name);
		if (!client) {
			throw new RegistryError('NAME_UNKNOWN', {message: `no upstream named ${name}`});
		}

		return client;
	};

	const uploads = new UploadService(metadata, blobs, log);
	await exclusively(async () => uploads.sweep());
	const sweeper = setInterval(
		() => void exclusively(async () => uploads.sweep()).catch(error => log.warn({err: error}, 'upload sweep failed')),
		60 * 60_000,
	);
	sweeper.unref();

	const maintenance = new Maintenance(metadata, blobs, access, log, config.storage.maxSize);
	const quota =
		config.storage.maxSize === undefined
			? undefined
			: {
					reserve: async (size: number) => {
						await exclusively(async () => maintenance.enforceQuota(size));
					},
					settle() {
						void exclusively(async () => maintenance.enforceQuota(0)).catch(error => log.warn({err: error}, 'quota enforcement failed'));
					},
				};
	const manifests = new ProxyManifests({
		metadata,
		upstream,
		access,
		log,
		onResult: (name, outcome) => {
			metrics.cache.inc({kind: 'manifest', outcome, upstream: name});
			if (outcome === 'stale') {
				metrics.staleServed.inc({upstream: name});
			}
		},
	});
	const proxyBlobs = new ProxyBlobs({
		metadata,
		blobs,
		fills,
		upstream,
		access,
		quota,
		cluster: coordinator ? new ClusterFills({coordinator, fills, blobs, metadata, log}) : undefined,
		onResult: (name, outcome) => metrics.cache.inc({kind: 'blob', outcome, upstream: name}),
		onFetched: (name, bytes) => metrics.bytesFetched.inc({upstream: name}, bytes),
	});
	return {
		config,
		log,
		metadata,
		blobs,
		fills,
		access,
		upstreams,
		proxy: new ProxyService(manifests, proxyBlobs, metadata, upstream),
		local: new LocalService(metadata, blobs, access),
		writer: new LocalWriter(metadata),
		uploads,
		namespaces: new NamespaceRouter(config),
		htpasswd,
		maintenance,
		metrics,
		notifier: new Notifier(config.notifications, log),
		coordinator,
		checks: stores.checks,
		tokenSecret: Buffer.from(await metadata.sharedSecret('token-secret'), 'hex'),
		async close() {
			clearInterval(sweeper);
			await fills.drain();
			await access.close();
			await stores.close();
		},
	};
}

const QUIET_STREAM_ERRORS = new Set(['ECONNRESET', 'ERR_STREAM_PREMATURE_CLOSE', 'EPIPE']);

/** One log line and one metric per request, with a request id the client can quote. */
function requestLog(registry: Registry) {
	const {log, metrics} = registry;
	return async (ctx: Context, next: Koa.Next): Promise<void> => {
		const started = performance.now();
		const incoming = ctx.get('x-request-id');
		const id = /^[\w.-]{1,64}$/.test(incoming) ? incoming : randomUUID();
		ctx.state['requestId'] = id;
		ctx.set('X-Request-Id', id);
		try {
			await next();
		} finally {
			const kind = ctx.path.includes('/blobs/') ? 'blob' : ctx.path.includes('/manifests/') ? 'manifest' : undefined;
			let recorded = false;
			const done = (complete: boolean) => {
				if (recorded) {
					return;
				}

				recorded = true;
				const route = (ctx['_matchedRoute'] as string | undefined) ?? 'unmatched';
				metrics.requests.inc({route, method: ctx.method, status: String(ctx.status)});
				if (complete && kind && ctx.method === 'GET' && ctx.status < 300 && typeof ctx.length === 'number') {
					metrics.bytesServed.inc({kind}, ctx.length);
				}

				if (!log.isLevelEnabled('info')) {
					return;
				}

				log.info(
					{id, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(performance.now() - started), bytes: ctx.length, complete, user: ctx.state['user']},
					'request',
				);
			};

			// 'finish' (the last byte handed to the kernel) comes before the client can have it all,
			// so a client that reads /metrics after a download sees the download counted.
			if (ctx.res.writableFinished) {
				done(true);
			} else {
				ctx.res.once('finish', () => done(true));
				ctx.res.once('close', () => done(false));
			}
		}
	};
}

export function createApp(registry: Registry): Koa {
	const app = new Koa();
	const {log, config} = registry;
	app.on('error', (error: Error & {code?: string}) => {
		// Clients leaving mid-stream are normal for a registry; anything else is worth a line.
		if (!QUIET_STREAM_ERRORS.has(error.code ?? '')) {
			log.warn({err: error}, 'response stream failed');
		}
	});
	app.use(requestLog(registry));
	app.use(errorMiddleware(log));

	const prefix = config.prefix;
	const apiRoot = `${prefix}/v2`;
	const ops: Record<string, (ctx: Context) => unknown> = {
		[`${prefix}/metrics`]: metricsHandler(registry.metrics),
		[`${prefix}/healthz`]: healthz(),
		[`${prefix}/readyz`]: readyz(config.storage.dir, registry.checks),
		[`${prefix}/`]: dashboard(registry.metrics),
	};
	if (prefix !== '') {
		ops[prefix] = ctx => ctx.redirect(`${prefix}/`);
	}

	let auth: ((ctx: Context, next: Koa.Next) => Promise<void>) | undefined;
	if (registry.htpasswd && config.auth) {
		const options = {
			htpasswd: registry.htpasswd,
			tokens: new TokenIssuer(registry.tokenSecret),
			anonymousPull: config.auth.anonymousPull,
			prefix,
			publicUrl: config.publicUrl ?? '',
		};
		auth = authMiddleware(options);
		ops[`${prefix}/auth/token`] = tokenEndpoint(options);
		// The dashboard shows repository names: behind the same login as pulls.
		const page = ops[`${prefix}/`]!;
		const login = browserAuth(options);
		ops[`${prefix}/`] = async ctx =>
			login(ctx, async () => {
				await page(ctx);
			});
	}

	const internalFills = registry.coordinator
		? fillEndpoint({coordinator: registry.coordinator, fills: registry.fills, blobs: registry.blobs})
		: undefined;
	app.use(async (ctx, next) => {
		if (internalFills && ctx.path.startsWith(FILL_ENDPOINT) && (ctx.method === 'GET' || ctx.method === 'HEAD')) {
			await internalFills(ctx);
			return;
		}

		if (ctx.path === apiRoot || ctx.path.startsWith(`${apiRoot}/`)) {
			return auth ? auth(ctx, next) : next();
		}

		const handler = ops[ctx.path];
		if (handler && (ctx.method === 'GET' || ctx.method === 'HEAD')) {
			await handler(ctx);
			return;
		}

		return next();
	});

	const router = createRouter(
		{
			namespaces: registry.namespaces,
			proxy: registry.proxy,
			local: registry.local,
			writer: registry.writer,
			uploads: registry.uploads,
			metadata: registry.metadata,
			prefix,
			publicUrl: config.publicUrl ?? '',
			notifier: registry.notifier,
			metrics: registry.metrics,
			blobRedirect: config.storage.s3?.redirect && registry.blobs.redirectUrl ? async digest => registry.blobs.redirectUrl!(digest) : undefined,
		},
		config.namespaces,
	);
	for (const middleware of routes(router)) {
		app.use(middleware);
	}

	return app;
}
