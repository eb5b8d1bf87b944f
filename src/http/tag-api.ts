/**
 * The mirror's own API for tag history and pins, under `PREFIX/api/v1`
 * (names contain slashes, so the name is a wildcard anchored by `/tags/`,
 * as in /v2/). Answers are JSON; errors are V2 bodies like everywhere else.
 *
 *   GET    /api/v1/pins                       every pin
 *   GET    /api/v1/NAME/tags/TAG/history      the tag's history, what is served now, its pin
 *   PUT    /api/v1/NAME/tags/TAG/pin[?digest=] pin (default: the digest cached now)
 *   DELETE /api/v1/NAME/tags/TAG/pin          unpin
 */
import Router from '@koa/router';
import {type TagControl} from '../proxy/tag-control.js';
import {RegistryError} from '../v2/errors.js';
import {isTag} from '../v2/grammar.js';
import {type AuthOptions, apiAuth} from './auth.js';
import {params, queryParam} from './context.js';
import {type MirrorContext, type RequestState, userOf} from './state.js';

const iso = (ms: number): string => new Date(ms).toISOString();

function tagOf(ctx: MirrorContext): string {
	const tag = params(ctx)['tag'] ?? '';
	if (!isTag(tag)) {
		throw new RegistryError('TAG_INVALID', {message: 'invalid tag', detail: {tag: tag.slice(0, 200)}});
	}

	return tag;
}

const nameOf = (ctx: MirrorContext): string => params(ctx)['name'] ?? '';

function pinJson(pin: {digest: string; pinnedAt: number; pinnedBy: string | null}) {
	return {digest: pin.digest, pinnedAt: iso(pin.pinnedAt), pinnedBy: pin.pinnedBy};
}

export function tagApiRoutes(tags: TagControl, prefix: string, auth: (AuthOptions & {admins: readonly string[]}) | undefined): Router<RequestState> {
	const router = new Router<RequestState>({prefix: `${prefix}/api/v1`, sensitive: true, strict: true});
	if (auth) {
		router.use(apiAuth(auth));
	}

	router.get('/pins', async ctx => {
		ctx.body = {pins: (await tags.pins()).map(pin => ({repository: pin.repository, upstream: pin.registry, tag: pin.tag, ...pinJson(pin)}))};
	});
	router.get('/*name/tags/:tag/history', async ctx => {
		const report = await tags.history(nameOf(ctx), tagOf(ctx));
		ctx.body = {
			...report,
			...(report.current ? {current: {...report.current, fetchedAt: iso(report.current.fetchedAt), checkedAt: iso(report.current.checkedAt)}} : {}),
			...(report.pin ? {pin: pinJson(report.pin)} : {}),
			history: report.history.map(entry => ({digest: entry.digest, firstSeen: iso(entry.firstSeen), lastSeen: iso(entry.lastSeen)})),
		};
	});
	router.put('/*name/tags/:tag/pin', async ctx => {
		const pin = await tags.pin(nameOf(ctx), tagOf(ctx), queryParam(ctx, 'digest'), userOf(ctx));
		ctx.body = {repository: nameOf(ctx), tag: pin.tag, ...pinJson(pin)};
	});
	router.delete('/*name/tags/:tag/pin', async ctx => {
		const pin = await tags.unpin(nameOf(ctx), tagOf(ctx));
		ctx.body = {repository: nameOf(ctx), tag: pin.tag, unpinned: pinJson(pin)};
	});
	return router;
}
