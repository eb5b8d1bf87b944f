/** _catalog and the OCI 1.1 referrers API. */
import {type MirrorContext} from './state.js';
import {type Config} from '../config/load.js';
import {clientName} from '../service/namespaces.js';
import {paginate, parsePage} from '../v2/pagination.js';
import {parseDigest} from '../v2/grammar.js';
import {MEDIA_TYPES} from '../v2/media-types.js';
import {type HandlerDeps, params, queryParam, targetOf} from './context.js';
import {nextLink} from './tags.js';

export function catalog(deps: HandlerDeps, namespaces: Config['namespaces']) {
	return async (ctx: MirrorContext): Promise<void> => {
		const page = parsePage(ctx.query);
		const names = [...new Set((await deps.metadata.listRepositories()).map(repo => clientName(repo, namespaces)))];
		const {tags: repositories, next} = paginate(names, page);
		if (next !== undefined) {
			ctx.set('Link', nextLink(ctx, `${deps.prefix}/v2/_catalog`, page.n, next));
		}

		ctx.status = 200;
		ctx.body = {repositories};
	};
}

export function referrers(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = targetOf(ctx, deps);
		const subject = parseDigest(params(ctx)['digest'] ?? '');
		const artifactType = queryParam(ctx, 'artifactType');
		let entries = await deps.metadata.listReferrers(target.repo, subject.value);
		if (artifactType !== undefined) {
			entries = entries.filter(entry => entry.artifactType === artifactType);
			ctx.set('OCI-Filters-Applied', 'artifactType');
		}

		ctx.status = 200;
		ctx.type = MEDIA_TYPES.ociIndex;
		ctx.body = Buffer.from(
			JSON.stringify({
				schemaVersion: 2,
				mediaType: MEDIA_TYPES.ociIndex,
				manifests: entries.map(entry => ({
					mediaType: entry.mediaType,
					digest: entry.digest,
					size: entry.size,
					...(entry.artifactType === undefined ? {} : {artifactType: entry.artifactType}),
					...(entry.annotations === undefined ? {} : {annotations: entry.annotations}),
				})),
			}),
		);
	};
}
