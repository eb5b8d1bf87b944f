import {type Context} from 'koa';
import {parseAccept} from '../v2/media-types.js';
import {parseReference} from '../v2/grammar.js';
import {type HandlerDeps, readService, targetOf} from './context.js';

export function getManifest(deps: HandlerDeps) {
	return async (ctx: Context): Promise<void> => {
		const target = targetOf(ctx, deps);
		const reference = parseReference((ctx['params'] as Record<string, string>)['reference'] ?? '');
		const {manifest, warning} = await readService(deps, target).getManifest(target, reference, parseAccept(ctx.headers.accept));
		ctx.status = 200;
		ctx.set('Content-Type', manifest.mediaType);
		ctx.set('Docker-Content-Digest', manifest.digest);
		ctx.set('ETag', `"${manifest.digest}"`);
		if (warning) {
			ctx.set('Warning', warning);
		}

		ctx.body = manifest.content;
		ctx.length = manifest.content.length;
	};
}
