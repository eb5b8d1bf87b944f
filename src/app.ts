/**
 * createApp(deps) builds the Koa application without listening, so tests can
 * build one around their own stores. openRegistry(config) opens the real
 * stores and services for a config.
 */
import path from 'node:path';
import Koa from 'koa';
import {type Config, ConfigError} from './config/load.js';
import {errorMiddleware} from './http/errors.js';
import {createRouter, routes} from './http/router.js';
import {Htpasswd} from './auth/htpasswd.js';
import {TokenIssuer} from './auth/tokens.js';
import {authMiddleware, tokenEndpoint} from './http/auth.js';
import {LocalWriter} from './local/push.js';
import {LocalService} from './local/service.js';
import {UploadService} from './local/uploads.js';
import {type Logger} from './log.js';
import {NamespaceRouter} from './namespaces.js';
import {FillRegistry} from './proxy/blob-fill.js';
import {ProxyBlobs} from './proxy/blobs.js';
import {ProxyManifests} from './proxy/manifests.js';
import {ProxyService} from './proxy/service.js';
import {AccessRecorder} from './store/access.js';
import {Maintenance} from './store/maintenance.js';
import {type BlobStore, FsBlobStore} from './store/blob-store.js';
import {type MetadataStore} from './store/metadata.js';
import {SqliteMetadataStore} from './store/sqlite.js';
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
	close(): Promise<void>;
};

export async function openRegistry(config: Config, log: Logger): Promise<Registry> {
	const blobs = new FsBlobStore(config.storage.dir);
	await blobs.init();
	const leftovers = await blobs.sweepTemp();
	if (leftovers > 0) {
		log.info({count: leftovers}, 'removed leftovers of interrupted fills');
	}

	const metadata = new SqliteMetadataStore(path.join(config.storage.dir, 'mirror.db'));
	const access = new AccessRecorder(metadata);
	const fills = new FillRegistry();
	const upstreams = new Map<string, UpstreamClient>();
	for (const upstream of config.upstreams.values()) {
		upstreams.set(
			upstream.name,
			new UpstreamClient(upstream, {onWarning: (message, fields) => log.warn({...fields}, message)}),
		);
	}

	const upstream = (name: string): UpstreamClient => {
		const client = upstreams.get(name);
		if (!client) {
			throw new RegistryError('NAME_UNKNOWN', {message: `no upstream named ${name}`});
		}

		return client;
	};

	let htpasswd: Htpasswd | undefined;
	if (config.auth) {
		try {
			htpasswd = Htpasswd.load(config.auth.htpasswd);
		} catch (error) {
			throw new ConfigError(`config: auth.htpasswd: ${(error as Error).message}`);
		}
	}

	const uploads = new UploadService(metadata, blobs, log);
	await uploads.sweep();
	const sweeper = setInterval(() => void uploads.sweep().catch(error => log.warn({err: error}, 'upload sweep failed')), 60 * 60_000);
	sweeper.unref();
	const manifests = new ProxyManifests({metadata, upstream, access, log});
	const maintenance = new Maintenance(metadata, blobs, access, log, config.storage.maxSize);
	const quota =
		config.storage.maxSize === undefined
			? undefined
			: {
					reserve: async (size: number) => {
						await maintenance.enforceQuota(size);
					},
					settle() {
						void maintenance.enforceQuota(0).catch(error => log.warn({err: error}, 'quota enforcement failed'));
					},
				};
	const proxyBlobs = new ProxyBlobs({metadata, blobs, fills, upstream, access, quota});
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
		async close() {
			clearInterval(sweeper);
			await fills.drain();
			access.close();
			metadata.close();
		},
	};
}

export function createApp(registry: Registry): Koa {
	const app = new Koa();
	app.proxy = false;
	const {log} = registry;
	app.on('error', (error: Error & {code?: string}) => {
		// Client disconnects mid-stream are normal for a registry; anything else is worth a line.
		if (error.code !== 'ECONNRESET' && error.code !== 'ERR_STREAM_PREMATURE_CLOSE' && error.code !== 'EPIPE') {
			log.warn({err: error}, 'response stream failed');
		}
	});
	app.use(async (ctx, next) => {
		const started = performance.now();
		try {
			await next();
		} finally {
			ctx.res.once('close', () => {
				log.info(
					{method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(performance.now() - started), bytes: ctx.length},
					'request',
				);
			});
		}
	});
	app.use(errorMiddleware(log));
	const {config} = registry;
	if (registry.htpasswd && config.auth) {
		const apiRoot = `${config.prefix}/v2`;
		const tokenPath = `${config.prefix}/auth/token`;
		const options = {
			htpasswd: registry.htpasswd,
			tokens: new TokenIssuer(),
			anonymousPull: config.auth.anonymousPull,
			prefix: config.prefix,
			publicUrl: config.publicUrl ?? '',
		};
		const auth = authMiddleware(options);
		const token = tokenEndpoint(options);
		app.use(async (ctx, next) => {
			if (ctx.path === tokenPath && ctx.method === 'GET') {
				return token(ctx);
			}

			return ctx.path === apiRoot || ctx.path.startsWith(`${apiRoot}/`) ? auth(ctx, next) : next();
		});
	}

	const router = createRouter(
		{
			namespaces: registry.namespaces,
			proxy: registry.proxy,
			local: registry.local,
			writer: registry.writer,
			uploads: registry.uploads,
			metadata: registry.metadata,
			prefix: config.prefix,
			publicUrl: config.publicUrl ?? '',
		},
		config.namespaces,
	);
	for (const middleware of routes(router)) {
		app.use(middleware);
	}

	return app;
}
