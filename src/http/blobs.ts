import {type MirrorContext, type RequestFacts, factsOf} from './state.js';
import {type Digest, parseDigest} from '../v2/grammar.js';
import {type HandlerDeps, notify, params, readService, respondEmpty, targetOf, writableTargetOf} from './context.js';
import {parseRange} from './range.js';
import {type Readable} from 'node:stream';
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

function announcePull(request: RequestFacts, deps: HandlerDeps, target: Target, digest: Digest, size: number | undefined): void {
	notify(request, deps, 'pull', {repository: target.clientName, digest: digest.value, mediaType: 'application/octet-stream', size}, 'blobs');
}

/**
 * A stored blob small enough to be answered again from memory (answer-cache.ts)
 * is read into memory whole: the one read serves this response and the next.
 */
async function answerFromMemory(ctx: MirrorContext, deps: HandlerDeps, target: Target, digest: Digest, blob: BlobResult, size: number): Promise<void> {
	const body = await readAll(blob.open(), size);
	ctx.status = 200;
	ctx.body = body;
	ctx.state.answer = {
		kind: 'blob',
		digest: digest.value,
		upstream: target.kind === 'cached' ? target.upstream.name : undefined,
		freshUntil: Number.POSITIVE_INFINITY,
		body,
		replay: repeat => announcePull(repeat, deps, target, digest, size),
	};
}

/**
 * The `size` bytes of a stream, in one buffer; fewer or more is an error (the file changed under us).
 * (node:stream/consumers' buffer() goes through a Blob: for 64 KiB blobs it cost more than the read.)
 */
async function readAll(stream: Readable, size: number): Promise<Buffer> {
	const chunks: Buffer[] = [];
	let length = 0;
	for await (const chunk of stream) {
		chunks.push(chunk as Buffer);
		length += (chunk as Buffer).length;
	}

	if (length !== size) {
		throw new Error(`stored blob read as ${length} bytes, not ${size}`);
	}

	return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
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
		announcePull(factsOf(ctx), deps, target, digest, blob.size);
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

		if (blob.stored && blob.size !== undefined && blob.size <= deps.memoryItemBytes) {
			await answerFromMemory(ctx, deps, target, digest, blob, blob.size);
			return;
		}

		if (blob.send && blob.size) {
			ctx.status = 200;
			ctx.length = blob.size;
			await sendStored(ctx, blob.send, {start: 0, end: blob.size - 1});
			return;
		}

		ctx.status = 200;
		ctx.body = blob.open();
		if (blob.size !== undefined) {
			ctx.length = blob.size;
		}

		ctx.flushHeaders();
	};
}

export function deleteBlob(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = writableTargetOf(ctx, deps);
		const digest = digestParam(ctx);
		await deps.writer.deleteBlob(target, digest);
		notify(factsOf(ctx), deps, 'delete', {repository: target.clientName, digest: digest.value});
		respondEmpty(ctx, 202);
	};
}
