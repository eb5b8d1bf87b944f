import {type MirrorContext, type RequestFacts, factsOf, userOf} from './state.js';
import {MAX_MANIFEST_BYTES} from '../v2/manifest.js';
import {RegistryError, TooLargeError} from '../v2/errors.js';
import {parseAccept} from '../v2/media-types.js';
import {type Reference, parseReference} from '../v2/grammar.js';
import {type Target} from '../service/namespaces.js';
import {type ManifestRecord} from '../store/metadata.js';
import {type HandlerDeps, location, notify, params, readService, respondEmpty, targetOf, writableTargetOf} from './context.js';

/**
 * The reference of a manifest read. One that is not a valid tag (and does not
 * look like a digest) names no manifest: 404 MANIFEST_UNKNOWN, as the
 * distribution-spec conformance suite expects; writes to it stay 400, and a
 * malformed digest stays 400 DIGEST_INVALID.
 */
function readReference(ctx: MirrorContext): Reference {
	const raw = params(ctx)['reference'] ?? '';
	try {
		return parseReference(raw);
	} catch (error) {
		if (error instanceof RegistryError && error.code === 'TAG_INVALID') {
			throw new RegistryError('MANIFEST_UNKNOWN', {message: `no manifest can have the reference ${JSON.stringify(raw.slice(0, 200))}`, detail: {reason: error.message}});
		}

		throw error;
	}
}

/** What a served manifest read counts and announces, the first time and every repeat from memory. */
function recordRead(request: RequestFacts, deps: HandlerDeps, target: Target, reference: Reference, manifest: ManifestRecord): void {
	if (request.method !== 'GET') {
		return;
	}

	deps.metrics.recordPull(deps.namespaces.displayName(target.repo)); // one count however the name was spelled (tool, library/tool)
	notify(request, deps, 'pull', {
		repository: target.clientName,
		mediaType: manifest.mediaType,
		digest: manifest.digest,
		size: manifest.content.length,
		...(reference.kind === 'tag' ? {tag: reference.tag} : {}),
	}, 'manifests');
}

export function getManifest(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = targetOf(ctx, deps);
		const reference = readReference(ctx);
		const {manifest, warning, freshUntil} = await readService(deps, target).getManifest(target, reference, parseAccept(ctx.headers.accept));
		ctx.status = 200;
		ctx.set('Content-Type', manifest.mediaType);
		ctx.set('Docker-Content-Digest', manifest.digest);
		ctx.set('ETag', `"${manifest.digest}"`);
		if (warning) {
			ctx.set('Warning', warning);
		}

		ctx.body = manifest.content;
		ctx.length = manifest.content.length;
		recordRead(factsOf(ctx), deps, target, reference, manifest);
		if (freshUntil !== undefined && !warning) {
			ctx.state.answer = {
				kind: 'manifest',
				digest: manifest.digest,
				upstream: target.kind === 'cached' ? target.upstream.name : undefined,
				freshUntil,
				body: manifest.content,
				replay: repeat => recordRead(repeat, deps, target, reference, manifest),
			};
		}
	};
}

/**
 * Reads a request body of at most `limit` bytes. Past the limit the rest is
 * read and thrown away (not cut: a client still sending would see a reset
 * instead of the 413).
 */
async function readBody(ctx: MirrorContext, limit: number): Promise<Buffer> {
	const tooLarge = () => new TooLargeError('MANIFEST_INVALID', {message: `manifest is larger than ${limit} bytes`});
	const request = ctx.req;
	if (Number(ctx.get('content-length') || Number.NaN) > limit) {
		request.resume();
		throw tooLarge();
	}

	return new Promise<Buffer>((resolve, reject) => {
		const chunks: Buffer[] = [];
		let total = 0;
		const onData = (chunk: Buffer) => {
			total += chunk.length;
			if (total <= limit) {
				chunks.push(chunk);
				return;
			}

			request.off('data', onData);
			request.resume(); // keeps flowing into nothing until the client is done
			reject(tooLarge());
		};

		request.on('data', onData);
		request.once('end', () => resolve(Buffer.concat(chunks)));
		request.once('error', reject);
		request.once('close', () => reject(new Error('the client went away before the manifest was complete')));
	});
}

export function putManifest(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = writableTargetOf(ctx, deps);
		const reference = parseReference(params(ctx)['reference'] ?? '');
		const content = await readBody(ctx, MAX_MANIFEST_BYTES);
		const result = await deps.writer.putManifest(target, reference, content, ctx.get('content-type') || undefined);
		respondEmpty(ctx, 201);
		ctx.set('Location', location(deps, `${target.clientName}/manifests/${result.digest}`));
		ctx.set('Docker-Content-Digest', result.digest);
		if (result.subject) {
			ctx.set('OCI-Subject', result.subject);
		}

		deps.metrics.recordPush({
			repository: target.clientName,
			tag: reference.kind === 'tag' ? reference.tag : undefined,
			digest: result.digest,
			user: userOf(ctx),
			at: Date.now(),
		});
		notify(factsOf(ctx), deps, 'push', {
			repository: target.clientName,
			mediaType: result.mediaType,
			digest: result.digest,
			size: content.length,
			...(reference.kind === 'tag' ? {tag: reference.tag} : {}),
		}, 'manifests');
	};
}

export function deleteManifest(deps: HandlerDeps) {
	return async (ctx: MirrorContext): Promise<void> => {
		const target = writableTargetOf(ctx, deps);
		const reference = parseReference(params(ctx)['reference'] ?? '');
		const {untagged} = await deps.writer.deleteManifest(target, reference);
		notify(factsOf(ctx), deps, 'delete', {repository: target.clientName, ...(reference.kind === 'tag' ? {tag: reference.tag} : {digest: reference.digest.value})});
		for (const tag of untagged) {
			notify(factsOf(ctx), deps, 'delete', {repository: target.clientName, tag}); // as the reference registry: one event per tag the delete removed
		}

		respondEmpty(ctx, 202);
	};
}
