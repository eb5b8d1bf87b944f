/**
 * The V2 routes. Repository names contain slashes, so the name is a wildcard
 * and the resource after it (manifests, blobs, tags, referrers) anchors the match.
 */
import Router from '@koa/router';
import {type Next} from 'koa';
import {type MirrorContext, type RequestState} from './state.js';
import {type Config} from '../config/load.js';
import {RegistryError} from '../v2/errors.js';
import {type HandlerDeps} from './context.js';
import {deleteBlob, getBlob, headBlob} from './blobs.js';
import {catalog, referrers} from './discovery.js';
import {deleteManifest, getManifest, putManifest} from './manifests.js';
import {listTags} from './tags.js';
import {cancelUpload, finishUpload, patchUpload, startUpload, uploadStatus} from './uploads.js';

/** Names, tags and digests never need escapes; `%2f` or `%2e%2e` in a path is an attack or a bug. Only `:` (%3A) may come escaped. */
async function rejectEscapes(ctx: MirrorContext, next: Next): Promise<void> {
	const raw = ctx.path.replace(/%3a/gi, ':');
	if (raw.includes('%')) {
		throw new RegistryError('NAME_INVALID', {message: 'percent-escapes are not allowed in repository paths', detail: {path: ctx.path.slice(0, 300)}});
	}

	await next();
}

export function createRouter(deps: HandlerDeps, namespaces: Config['namespaces']): Router<RequestState> {
	const router = new Router<RequestState>({prefix: `${deps.prefix}/v2`, sensitive: true});
	router.use(rejectEscapes);
	router.get('/', ctx => {
		ctx.status = 200;
		ctx.body = {};
	});
	router.get('/_catalog', catalog(deps, namespaces));
	router.get('/*name/manifests/:reference', getManifest(deps));
	router.put('/*name/manifests/:reference', putManifest(deps));
	router.delete('/*name/manifests/:reference', deleteManifest(deps));
	router.post('/*name/blobs/uploads', startUpload(deps));
	router.get('/*name/blobs/uploads/:uuid', uploadStatus(deps));
	router.patch('/*name/blobs/uploads/:uuid', patchUpload(deps));
	router.put('/*name/blobs/uploads/:uuid', finishUpload(deps));
	router.delete('/*name/blobs/uploads/:uuid', cancelUpload(deps));
	router.head('/*name/blobs/:digest', headBlob(deps));
	router.get('/*name/blobs/:digest', getBlob(deps));
	router.delete('/*name/blobs/:digest', deleteBlob(deps));
	router.get('/*name/tags/list', listTags(deps));
	router.get('/*name/referrers/:digest', referrers(deps));
	return router;
}

export function routes(router: Router<RequestState>) {
	return [
		router.routes(),
		router.allowedMethods({
			throw: true,
			methodNotAllowed: () => new RegistryError('UNSUPPORTED', {message: 'method not allowed on this endpoint'}),
			notImplemented: () => new RegistryError('UNSUPPORTED', {message: 'method not implemented'}),
		}),
	];
}
