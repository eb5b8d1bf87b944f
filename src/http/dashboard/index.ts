/**
 * The dashboard's routes: one module per page, the shared frame in
 * layout.ts, extra overview panels in panels.ts. To add a page, write its
 * module, route it here and, for the navigation, list it in layout.ts's NAV.
 */
import type Router from '@koa/router';
import {type RequestState} from '../state.js';
import {type DashboardDeps} from './deps.js';
import {image, repository} from './image.js';
import {overview} from './overview.js';
import {OVERVIEW_PANELS} from './panels.js';
import {purgeApi, purgeConfirm, purgeSubmit} from './purge.js';
import {repositories} from './repositories.js';

type Middleware = Parameters<Router<RequestState>['get']>[1];

/**
 * `pageGuard` (with auth) asks a browser for a login; `adminGuard` lets only
 * admins through to the API (401 without credentials, 403 for other users).
 */
export function dashboardRoutes(router: Router<RequestState>, deps: DashboardDeps, guards: {pageGuard?: Middleware; adminGuard?: Middleware}): void {
	const {prefix} = deps;
	const pages: Array<[string, Middleware]> = [
		['/', overview(deps, OVERVIEW_PANELS)],
		['/dashboard/repositories', repositories(deps)],
		['/dashboard/repository', repository(deps)],
		['/dashboard/image', image(deps)],
		['/dashboard/purge', purgeConfirm(deps)],
	];
	const guard = guards.pageGuard ? [guards.pageGuard] : [];
	for (const [path, handler] of pages) {
		router.get(`${prefix}${path}`, ...guard, handler);
	}

	router.post(`${prefix}/dashboard/purge`, ...guard, purgeSubmit(deps));
	router.delete(`${prefix}/api/cache/*reference`, ...(guards.adminGuard ? [guards.adminGuard] : []), purgeApi(deps));
}
