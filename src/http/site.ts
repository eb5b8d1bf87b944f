/**
 * The endpoints outside /v2/: metrics, health and readiness, the dashboard,
 * and (with auth) the token endpoint. Exact paths, GET and HEAD only;
 * anything else falls through to the V2 router (and its 404).
 */
import Router from '@koa/router';
import {type Metrics} from '../ops/metrics.js';
import {type AuthOptions, browserAuth, tokenEndpoint} from './auth.js';
import {dashboard} from './dashboard.js';
import {healthz, metricsHandler, readyz} from './ops.js';
import {type MirrorContext, type RequestState} from './state.js';

export type SiteDeps = {
	prefix: string;
	metrics: Metrics;
	storageDir: string;
	checks: Record<string, () => Promise<unknown>>;
	/** With auth: the token endpoint, and the dashboard behind a login. */
	auth?: AuthOptions;
};

export function siteRoutes(deps: SiteDeps): Router<RequestState> {
	const {prefix, auth} = deps;
	const router = new Router<RequestState>({strict: true, sensitive: true});
	router.get(`${prefix}/metrics`, metricsHandler(deps.metrics));
	router.get(`${prefix}/healthz`, healthz());
	router.get(`${prefix}/readyz`, readyz(deps.storageDir, deps.checks, deps.metrics.gauges.upstreams));
	const page = dashboard(deps.metrics);
	if (auth) {
		// The dashboard shows repository names: behind the same login as pulls.
		router.get(`${prefix}/`, browserAuth(auth), page);
		router.get(`${prefix}/auth/token`, tokenEndpoint(auth));
	} else {
		router.get(`${prefix}/`, page);
	}

	if (prefix !== '') {
		router.get(prefix, (ctx: MirrorContext) => ctx.redirect(`${prefix}/`));
	}

	return router;
}
