import {type MirrorContext} from './state.js';
import {type Digest, parseDigest} from '../v2/grammar.js';
import {type HandlerDeps, notify, params, readService, respondEmpty, targetOf, writableTargetOf} from './context.js';
import {parseRange} from './range.js';
import {buffer} from 'node:stream/consumers';
import {type Target} from '../service/namespaces.js';
import {type BlobResult} from '../service/read-service.js';
import {type ByteRange} from '../store/blob-store.js';

function digestParam(ctx: MirrorContext): Digest {
	return parseDigest(params(ctx)['digest'] ?? '');
}

/** What a HEAD and a GET of a blob both say about it. */
function blobHeaders(ctx: MirrorContext, digest: Digest): void {
	ctx.set('Content-Type', 'application/octet-stream');
	ctx.set('Docker-Content-Digest', digest.value);
	ctx.set('Accept-Ranges', 'bytes');
	ctx.set('ETag', `"${digest.value}"`);
}

function announcePull(ctx: MirrorContext, deps: HandlerDeps, target: Target, digest: Digest, size: number | undefined): void {
	notify(ctx, deps, 'pull', {repository: target.clientName, digest: digest.value, mediaType: 'application/octet-stream', size});
}

/** A stored blob small enough may be answered again from memory (answer-cache.ts). */
function offerAnswer(ctx: MirrorContext, deps: HandlerDeps, target: Target, digest: Digest, blob: BlobResult): void {
	if (!blob.stored || blob.size === undefined) {
		return;
	}

	const size = blob.size;
	ctx.state.answer = {
		kind: 'blob',
		digest: digest.value,
		upstream: target.kind === 'cached' ? target.upstream.name : undefined,
		freshUntil: Number.POSITIVE_INFINITY,
		size,
		body: async () => buffer(blob.open()),
		replay: repeat => announcePull(repeat, deps, target, digest, size),
	};
}

/**
 * Writes a stored blob straight to the response (the store's reused buffers,
 * see store/fs/send.ts) instead of handing Koa a stream. Before the first
 * byte an error is still an ordinary V2 error; after it the connection is cut.
 */
async function sendStored(ctx: MirrorContext, send: NonNullable<BlobResult['send']>, range: ByteRange): Promise<void> {
	ctx.respond = false;
	try {
		await send(range, ctx.res);
	} catch (error) {
		if (!ctx.res.headersSent) {
			ctx.respond = true;
			throw error;
		}

		ctx.res.destroy(error instanceof Error ? error : new Error(String(error)));
	}
}

export function headBlob(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = targetOf(ctx, deps);
		const digest = digestParam(ctx);
		const size = await readService(deps, target).statBlob(target, digest);
		ctx.status = 200;
		blobHeaders(ctx, digest);
		ctx.set('Content-Length', String(size));
	};
}

export function getBlob(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = targetOf(ctx, deps);
		const digest = digestParam(ctx);
		const blob = await readService(deps, target).getBlob(target, digest);
		announcePull(ctx, deps, target, digest, blob.size);
		if (blob.stored && deps.blobRedirect) {
			// Straight from the object store (a Range header goes along to it).
			ctx.set('Docker-Content-Digest', digest.value);
			ctx.set('Location', await deps.blobRedirect(digest));
			respondEmpty(ctx, 307);
			return;
		}

		const range = blob.size === undefined ? undefined : parseRange(ctx.get('range') || undefined, blob.size);
		blobHeaders(ctx, digest);
		ctx.set('Cache-Control', 'max-age=31536000, immutable');
		if (range && blob.size !== undefined) {
			ctx.status = 206;
			ctx.set('Content-Range', `bytes ${range.start}-${range.end}/${blob.size}`);
			ctx.length = range.end - range.start + 1;
			if (blob.send) {
				await sendStored(ctx, blob.send, range);
				return;
			}

			ctx.body = blob.open(range);
			ctx.flushHeaders(); // the first byte of a cold fill should not wait for the stream's first read
			return;
		}

		if (blob.send && blob.size) {
			ctx.status = 200;
			ctx.length = blob.size;
			offerAnswer(ctx, deps, target, digest, blob);
			await sendStored(ctx, blob.send, {start: 0, end: blob.size - 1});
			return;
		}

		ctx.status = 200;
		ctx.body = blob.open();
		if (blob.size !== undefined) {
			ctx.length = blob.size;
			offerAnswer(ctx, deps, target, digest, blob);
		}

		ctx.flushHeaders();
	};
}

export function deleteBlob(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = writableTargetOf(ctx, deps);
		const digest = digestParam(ctx);
		await deps.writer.deleteBlob(target, digest);
		notify(ctx, deps, 'delete', {repository: target.clientName, digest: digest.value});
		respondEmpty(ctx, 202);
	};
}
