/**
 * The endpoints outside /v2/: metrics, health and readiness, the dashboard,
 * the purge API, and (with auth) the token endpoint. Exact paths; anything
 * else falls through to the V2 router (and its 404).
 */
import Router from '@koa/router';
import {type Metrics} from '../ops/metrics.js';
import {type AuthOptions, adminOnly, browserAuth, tokenEndpoint} from './auth.js';
import {type DashboardDeps} from './dashboard/deps.js';
import {dashboardRoutes} from './dashboard/index.js';
import {healthz, metricsHandler, readyz} from './ops.js';
import {type MirrorContext, type RequestState} from './state.js';

export type SiteDeps = {
	prefix: string;
	metrics: Metrics;
	storageDir: string;
	checks: Record<string, () => Promise<unknown>>;
	/** With auth: the token endpoint, and the dashboard behind a login. */
	auth?: AuthOptions & {admins: readonly string[]};
	dashboard: Omit<DashboardDeps, 'prefix' | 'metrics' | 'admins'>;
};

export function siteRoutes(deps: SiteDeps): Router<RequestState> {
	const {prefix, auth} = deps;
	const router = new Router<RequestState>({strict: true, sensitive: true});
	router.get(`${prefix}/metrics`, metricsHandler(deps.metrics));
	router.get(`${prefix}/healthz`, healthz());
	router.get(`${prefix}/readyz`, readyz(deps.storageDir, deps.checks, deps.metrics.gauges.upstreams));
	// The dashboard shows repository names: behind the same login as pulls; purges for admins only.
	dashboardRoutes(
		router,
		{...deps.dashboard, prefix, metrics: deps.metrics, admins: auth?.admins},
		auth ? {pageGuard: browserAuth(auth), adminGuard: adminOnly(auth)} : {},
	);
	if (auth) {
		router.get(`${prefix}/auth/token`, tokenEndpoint(auth));
	}

	if (prefix !== '') {
		router.get(prefix, (ctx: MirrorContext) => ctx.redirect(`${prefix}/`));
	}

	return router;
}
