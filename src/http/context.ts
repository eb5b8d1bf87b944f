/** What every handler needs: turn a request into a target and pick its service. */
import {type MirrorContext, type RequestFacts} from './state.js';
import {type LocalWriter} from '../local/push.js';
import {type LocalService} from '../local/service.js';
import {type UploadService} from '../local/uploads.js';
import {type LocalTarget, type NamespaceRouter, type Target} from '../service/namespaces.js';
import {type ReadService} from '../service/read-service.js';
import {type ProxyService} from '../proxy/service.js';
import {type ReadIndex} from '../store/metadata.js';
import {type Metrics} from '../ops/metrics.js';
import {type EventAction, type EventTarget, type Notifier} from '../ops/notify.js';
import {RegistryError} from '../v2/errors.js';
import {type Digest, parseName} from '../v2/grammar.js';

export type HandlerDeps = {
	namespaces: NamespaceRouter;
	proxy: ProxyService;
	local: LocalService;
	writer: LocalWriter;
	uploads: UploadService;
	/** Discovery (catalog, referrers) reads the index directly. */
	metadata: Pick<ReadIndex, 'listRepositories' | 'listReferrers'>;
	/** The path prefix the API is served under ('' or like /registry). */
	prefix: string;
	/** Base URL for Location headers (public_url), or '' for relative ones. */
	publicUrl: string;
	notifier: Notifier;
	metrics: Metrics;
	/** With storage.s3.redirect: a short-lived URL of a stored blob, to send clients to. */
	blobRedirect?: (digest: Digest) => Promise<string>;
	/** Stored blobs up to this size are read into memory to be answered from there again (memory_cache.max_item_size; 0: off). */
	memoryItemBytes: number;
};

/**
 * Sends a webhook event about this request (never waits for it). As the
 * reference registry does, a manifest's or blob's event links to it by
 * digest (`resource`), whatever URL the request used; deletes carry no URL.
 */
export function notify(request: RequestFacts, deps: HandlerDeps, action: EventAction, target: EventTarget, resource?: 'manifests' | 'blobs'): void {
	if (!deps.notifier.enabled) {
		return;
	}

	const base = deps.publicUrl || `${request.protocol}://${request.host}`;
	const url = resource && target.digest ? `${base}${deps.prefix}/v2/${target.repository}/${resource}/${target.digest}` : undefined;
	const {socket} = request;
	deps.notifier.emit(
		action,
		{...target, ...(url ? {url} : {})},
		{id: request.id, addr: hostPort(socket.remoteAddress ?? '', socket.remotePort), host: request.host, method: request.method, useragent: request.userAgent},
		request.user,
		socket.localPort,
	);
}

/** `host:port` (`[v6]:port`), as Go's net.JoinHostPort writes it. */
function hostPort(host: string, port: number | undefined): string {
	if (port === undefined) {
		return host;
	}

	return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A query parameter given once, or undefined. */
export function queryParam(ctx: MirrorContext, name: string): string | undefined {
	const value = ctx.query[name];
	return typeof value === 'string' ? value : undefined;
}

/**
 * A response without a body. Koa turns `body = null` into a 204, so the
 * status is set after it.
 */
export function respondEmpty(ctx: MirrorContext, status: number): void {
	ctx.body = null;
	ctx.status = status;
}

export function params(ctx: MirrorContext): Record<string, string> {
	return (ctx['params'] as Record<string, string> | undefined) ?? {};
}

export function targetOf(ctx: MirrorContext, deps: HandlerDeps): Target {
	const name = parseName(params(ctx)['name'] ?? '');
	return deps.namespaces.resolve(name, queryParam(ctx, 'ns'));
}

/** The target of a write: only local namespaces take pushes and deletes. */
export function writableTargetOf(ctx: MirrorContext, deps: HandlerDeps): LocalTarget {
	const target = targetOf(ctx, deps);
	if (target.kind !== 'local') {
		throw new RegistryError('UNSUPPORTED', {
			message: `${target.clientName} is a cached namespace of upstream ${target.upstream.name}: it is read-only; push to a local namespace`,
			detail: {name: target.clientName, upstream: target.upstream.name},
		});
	}

	return target;
}

export function readService(deps: HandlerDeps, target: Target): ReadService {
	return target.kind === 'cached' ? deps.proxy : deps.local;
}

/** A Location header value for a path under /v2/. */
export function location(deps: HandlerDeps, path: string): string {
	return `${deps.publicUrl}${deps.prefix}/v2/${path}`;
}
