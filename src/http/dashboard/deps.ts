/** What the dashboard's pages read and do, made by the composition root and handed over by http/app.ts. */
import {type Config} from '../../config/load.js';
import {type History} from '../../ops/history.js';
import {type Metrics} from '../../ops/metrics.js';
import {type NamespaceRouter} from '../../service/namespaces.js';
import {type Purger} from '../../service/purge.js';
import {type Catalog, type ReadIndex} from '../../store/metadata.js';

export type DashboardDeps = {
	/** The site prefix: every link starts with it. */
	prefix: string;
	metrics: Metrics;
	history: History;
	catalog: Catalog & Pick<ReadIndex, 'getManifest' | 'getTaggedManifest' | 'getRepoManifest' | 'getBlob'>;
	namespaces: NamespaceRouter;
	rules: Config['namespaces'];
	purger: Purger;
	/** With auth: the users who may purge. Without auth (undefined) anyone who reaches the page may. */
	admins?: readonly string[];
};

/** Whether the request's user may purge. */
export function mayPurge(deps: Pick<DashboardDeps, 'admins'>, user: string | null | undefined): boolean {
	return deps.admins === undefined || (typeof user === 'string' && deps.admins.includes(user));
}
