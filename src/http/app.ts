/**
 * createApp(deps) builds the Koa application around the services the
 * composition root (compose/registry.ts) made, without listening, so tests
 * can start one on port 0. The only module that assembles middleware.
 */
import {type IncomingMessage, type ServerResponse} from 'node:http';
import Koa from 'koa';
import {type Htpasswd} from '../auth/htpasswd.js';
import {TokenIssuer} from '../auth/tokens.js';
import {type ClusterBlobs} from '../cluster/cluster-blobs.js';
import {type Config} from '../config/load.js';
import {type TagControl} from '../proxy/tag-control.js';
import {RegistryError} from '../v2/errors.js';
import {type BlobContent} from '../store/blob-store.js';
import {type History} from '../ops/history.js';
import {type Metrics} from '../ops/metrics.js';
import {type Purger} from '../service/purge.js';
import {type Logger} from '../util/log.js';
import {AnswerCache} from './answer-cache.js';
import {type AccessRecorder} from '../store/access.js';
import {type ReadIndex} from '../store/metadata.js';
import {type AuthOptions, authMiddleware} from './auth.js';
import {type DashboardDeps} from './dashboard/deps.js';
import {type HandlerDeps} from './context.js';
import {errorMiddleware} from './errors.js';
import {internalFillRoutes} from './internal-fills.js';
import {requestLog} from './request-log.js';
import {createRouter, routes} from './router.js';
import {siteRoutes} from './site.js';
import {tagApiRoutes} from './tag-api.js';
import {type MirrorContext, type RequestState} from './state.js';

export type AppDeps = Omit<HandlerDeps, 'prefix' | 'publicUrl' | 'blobRedirect' | 'memoryItemBytes'> & {
	config: Config;
	log: Logger;
	metrics: Metrics;
	htpasswd?: Htpasswd;
	/** Signs this registry's Bearer tokens; shared by every replica of one store. */
	tokenSecret: Buffer;
	/** Readiness checks of the shared stores (S3, PostgreSQL), by name. */
	checks: Record<string, () => Promise<unknown>>;
	blobs: Pick<BlobContent, 'redirectUrl'>;
	/** Reads answered from memory record their access times here, as the services do. */
	access: Pick<AccessRecorder, 'touch'>;
	metadata: HandlerDeps['metadata'] & Pick<ReadIndex, 'cacheGeneration'> & DashboardDeps['catalog'];
	/** With workers: tell the others this one changed the store (see answer-cache.ts). */
	announceChange?: () => Promise<void>;
	/** The dashboard's charts: the counters sampled over the last hour. */
	history: History;
	/** Purges of cached content (dashboard, API). */
	purger: Purger;
	/** Tag history and pins (the /api/v1 routes). */
	tags: TagControl;
	/** With several replicas: the cluster layer, which serves other replicas' reads of fills here. */
	cluster?: {blobs: ClusterBlobs; key: string};
};

/** The Koa application, and what the HTTP server may answer before it (answer-cache.ts `early`). */
export type MirrorApp = {
	koa: Koa<RequestState>;
	early?: (request: IncomingMessage, response: ServerResponse) => boolean | Promise<boolean>;
};

const QUIET_STREAM_ERRORS = new Set(['ECONNRESET', 'ERR_STREAM_PREMATURE_CLOSE', 'EPIPE']);

export function createApp(deps: AppDeps): MirrorApp {
	const {log, config, blobs} = deps;
	const prefix = config.prefix;
	const publicUrl = config.publicUrl ?? '';
	const app = new Koa<RequestState>();
	app.on('error', (error: Error & {code?: string}) => {
		// Clients leaving mid-stream are normal for a registry; anything else is worth a line.
		if (!QUIET_STREAM_ERRORS.has(error.code ?? '')) {
			log.warn({err: error}, 'response stream failed');
		}
	});
	app.use(requestLog(log, deps.metrics));
	app.use(errorMiddleware(log));
	const answers = new AnswerCache({
		maxBytes: config.memoryCache.maxBytes,
		maxItemBytes: config.memoryCache.maxItemBytes,
		generation: () => deps.metadata.cacheGeneration(),
		announce: deps.announceChange,
		onHit: ({kind, digest, upstream}) => {
			deps.access.touch(kind, digest);
			if (upstream !== undefined) {
				deps.metrics.cache.inc({kind, outcome: 'hit', upstream});
			}
		},
	});
	app.use(answers.announcer());

	const auth: AuthOptions | undefined =
		deps.htpasswd && config.auth
			? {htpasswd: deps.htpasswd, tokens: new TokenIssuer(deps.tokenSecret), anonymousPull: config.auth.anonymousPull, prefix, publicUrl}
			: undefined;
	if (auth) {
		const apiRoot = `${prefix}/v2`;
		const guard = authMiddleware(auth);
		app.use(async (ctx: MirrorContext, next) => {
			if (ctx.path === apiRoot || ctx.path.startsWith(`${apiRoot}/`)) {
				await guard(ctx, next);
			} else {
				await next();
			}
		});
	}

	// Repeated reads from memory, after the auth check and before any routing.
	app.use(answers.middleware());
	if (deps.cluster) {
		app.use(internalFillRoutes(deps.cluster.blobs, deps.cluster.key).routes());
	}

	app.use(
		siteRoutes({
			prefix,
			metrics: deps.metrics,
			storageDir: config.storage.dir,
			checks: deps.checks,
			auth: auth && {...auth, admins: config.auth?.admins ?? []},
			dashboard: {history: deps.history, catalog: deps.metadata, namespaces: deps.namespaces, rules: config.namespaces, purger: deps.purger},
		}).routes(),
	);
	const tagApi = tagApiRoutes(deps.tags, prefix, auth && {...auth, admins: config.auth?.admins ?? []});
	app.use(tagApi.routes()).use(tagApi.allowedMethods({throw: true, methodNotAllowed: () => new RegistryError('UNSUPPORTED', {message: 'method not allowed on this endpoint'})}));

	const router = createRouter(
		{
			namespaces: deps.namespaces,
			proxy: deps.proxy,
			local: deps.local,
			writer: deps.writer,
			uploads: deps.uploads,
			metadata: deps.metadata,
			prefix,
			publicUrl,
			notifier: deps.notifier,
			metrics: deps.metrics,
			memoryItemBytes: config.memoryCache.maxBytes > 0 ? config.memoryCache.maxItemBytes : 0,
			blobRedirect: config.storage.s3?.redirect && blobs.redirectUrl ? async digest => blobs.redirectUrl!(digest) : undefined,
		},
		config.namespaces,
	);
	for (const middleware of routes(router)) {
		app.use(middleware);
	}

	// Without auth nothing before the cache has a say: hits are answered before Koa.
	return {koa: app, early: auth ? undefined : answers.early(log, deps.metrics)};
}
