/**
 * The internal endpoint other replicas read fills in progress from
 * (`GET|HEAD /_mirror/fills/<digest>`, see cluster/peers.ts). Not part of the
 * registry API: it answers only requests carrying the cluster key.
 */
import Router from '@koa/router';
import {type ClusterBlobs} from '../cluster/cluster-blobs.js';
import {BLOB_SIZE_HEADER, CLUSTER_KEY_HEADER, FILL_ENDPOINT, FILL_FILE_HEADER, FILL_ORIGIN_HEADER} from '../cluster/peers.js';
import {type Digest, parseDigest} from '../v2/grammar.js';
import {params} from './context.js';
import {parseRange} from './range.js';
import {type MirrorContext, type RequestState} from './state.js';

export function internalFillRoutes(cluster: ClusterBlobs, clusterKey: string): Router<RequestState> {
	const router = new Router<RequestState>();
	router.get(`${FILL_ENDPOINT}:digest`, async (ctx: MirrorContext) => {
		if (ctx.get(CLUSTER_KEY_HEADER) !== clusterKey) {
			ctx.status = 403;
			return;
		}

		let digest: Digest;
		try {
			digest = parseDigest(params(ctx)['digest'] ?? '');
		} catch {
			ctx.status = 400;
			return;
		}

		const blob = await cluster.forPeer(digest);
		if (!blob) {
			ctx.status = 404;
			return;
		}

		ctx.set(BLOB_SIZE_HEADER, String(blob.size));
		if (blob.origin !== undefined) {
			ctx.set(FILL_ORIGIN_HEADER, blob.origin);
		}

		if (blob.file !== undefined) {
			ctx.set(FILL_FILE_HEADER, encodeURIComponent(blob.file)); // a path may hold any character
		}

		const ranged = blob.size > 0 ? parseRange(ctx.get('range') || undefined, blob.size) : undefined;
		const range = ranged ?? {start: 0, end: blob.size - 1};
		ctx.status = ranged ? 206 : 200;
		ctx.length = Math.max(0, range.end - range.start + 1);
		if (ctx.method === 'GET') {
			ctx.body = ctx.length > 0 ? blob.open(range) : '';
		}
	});
	return router;
}
