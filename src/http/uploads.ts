/** The V2 blob upload protocol for local namespaces. */
import {type MirrorContext, factsOf} from './state.js';
import {type ChunkRange, rangeHeader} from '../local/uploads.js';
import {type LocalTarget, type Target} from '../service/namespaces.js';
import {ChunkRangeError, RegistryError} from '../v2/errors.js';
import {parseDigest, parseName} from '../v2/grammar.js';
import {type HandlerDeps, location, notify, params, queryParam, respondEmpty, writableTargetOf} from './context.js';

function parseContentRange(header: string | undefined): ChunkRange | undefined {
	if (!header) {
		return undefined;
	}

	const match = /^(?:bytes )?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
	if (!match || Number(match[2]) < Number(match[1])) {
		throw new ChunkRangeError({message: 'malformed Content-Range (expected START-END)', detail: {contentRange: header.slice(0, 100)}});
	}

	return {start: Number(match[1]), end: Number(match[2])};
}

function sessionHeaders(ctx: MirrorContext, deps: HandlerDeps, target: LocalTarget, id: string, size: number): void {
	ctx.set('Location', location(deps, `${target.clientName}/blobs/uploads/${id}`));
	ctx.set('Range', rangeHeader(size));
	ctx.set('Docker-Upload-UUID', id);
}

function blobCreated(ctx: MirrorContext, deps: HandlerDeps, target: LocalTarget, digest: string, size?: number): void {
	notify(factsOf(ctx), deps, 'push', {repository: target.clientName, digest, mediaType: 'application/octet-stream', ...(size === undefined ? {} : {size})}, 'blobs');
	respondEmpty(ctx, 201);
	ctx.set('Location', location(deps, `${target.clientName}/blobs/${digest}`));
	ctx.set('Docker-Content-Digest', digest);
}

function hasBody(ctx: MirrorContext): boolean {
	const length = ctx.get('content-length');
	return (length !== '' && length !== '0') || ctx.get('transfer-encoding') !== '';
}

export function startUpload(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = writableTargetOf(ctx, deps);
		const mount = queryParam(ctx, 'mount');
		if (mount !== undefined) {
			const digest = parseDigest(mount);
			let from: Target | undefined;
			const fromName = queryParam(ctx, 'from');
			try {
				from = fromName ? deps.namespaces.resolve(parseName(fromName)) : undefined;
			} catch {
				from = undefined; // not readable: fall through to a plain upload session
			}

			if (await deps.writer.mount(target, digest, from)) {
				blobCreated(ctx, deps, target, digest.value);
				return;
			}
		}

		const digestParam = queryParam(ctx, 'digest');
		if (digestParam !== undefined) {
			const digest = parseDigest(digestParam);
			const size = await deps.uploads.monolithic(target.repo, digest, ctx.req);
			blobCreated(ctx, deps, target, digest.value, size);
			return;
		}

		const upload = await deps.uploads.start(target.repo);
		respondEmpty(ctx, 202);
		sessionHeaders(ctx, deps, target, upload.id, 0);
		ctx.set('Content-Length', '0');
	};
}

export function uploadStatus(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = writableTargetOf(ctx, deps);
		const upload = await deps.uploads.status(target.repo, params(ctx)['uuid'] ?? '');
		ctx.status = 204;
		sessionHeaders(ctx, deps, target, upload.id, upload.size);
	};
}

export function patchUpload(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = writableTargetOf(ctx, deps);
		const range = parseContentRange(ctx.get('content-range') || undefined);
		const upload = await deps.uploads.append(target.repo, params(ctx)['uuid'] ?? '', ctx.req, range);
		respondEmpty(ctx, 202);
		sessionHeaders(ctx, deps, target, upload.id, upload.size);
		ctx.set('Content-Length', '0');
	};
}

export function finishUpload(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = writableTargetOf(ctx, deps);
		const digestParam = queryParam(ctx, 'digest');
		if (digestParam === undefined) {
			throw new RegistryError('DIGEST_INVALID', {message: 'the digest query parameter is required to complete an upload'});
		}

		const digest = parseDigest(digestParam);
		const range = parseContentRange(ctx.get('content-range') || undefined);
		const size = await deps.uploads.finish(target.repo, params(ctx)['uuid'] ?? '', digest, hasBody(ctx) ? ctx.req : undefined, range);
		blobCreated(ctx, deps, target, digest.value, size);
	};
}

export function cancelUpload(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = writableTargetOf(ctx, deps);
		await deps.uploads.cancel(target.repo, params(ctx)['uuid'] ?? '');
		ctx.status = 204;
	};
}
