/** The usual end-to-end stack: token server → reference registry (upstream) → this mirror. */
import {type ExecutionContext} from 'ava';
import {readdir, readFile} from 'node:fs/promises';
import {join} from 'node:path';
import {type BuiltImage, sha256} from './images.js';
import {type Mirror, type MirrorOptions, startMirror} from './mirror.js';
import {type ReferenceRegistry, startReferenceRegistry} from './reference-registry.js';
import {startTokenServer, type TokenServer} from './token-server.js';

export type Stack = {tokens: TokenServer; upstream: ReferenceRegistry; mirror: Mirror};

export async function startStack(
	t: ExecutionContext,
	options: {upstream?: Record<string, unknown>; mirror?: Omit<MirrorOptions, 'upstreams'>} = {},
): Promise<Stack> {
	const tokens = await startTokenServer();
	t.teardown(async () => tokens.stop());
	const upstream = await startReferenceRegistry({tokenServer: tokens});
	t.teardown(async () => upstream.stop());
	const mirror = await startMirror({...options.mirror, upstreams: {'docker.io': {url: upstream.url, ...options.upstream}}});
	t.teardown(async () => mirror.stop());
	return {tokens, upstream, mirror};
}

/** Two upstreams for routing tests: `hub` (the reference registry behind the token server) and `gh` (one without auth). */
export async function startTwoUpstreams(
	t: ExecutionContext,
	options: {hubBlobBytesPerSecond?: number} = {},
): Promise<{tokens: TokenServer; hub: ReferenceRegistry; gh: ReferenceRegistry}> {
	const tokens = await startTokenServer();
	t.teardown(async () => tokens.stop());
	const hub = await startReferenceRegistry({tokenServer: tokens, blobBytesPerSecond: options.hubBlobBytesPerSecond});
	t.teardown(async () => hub.stop());
	const gh = await startReferenceRegistry();
	t.teardown(async () => gh.stop());
	return {tokens, hub, gh};
}

/** Checks a `skopeo copy ... dir:DIR` result: the manifest bytes and every blob's sha256. */
export async function assertCopied(t: ExecutionContext, dir: string, image: BuiltImage): Promise<void> {
	const manifest = await readFile(join(dir, 'manifest.json'));
	t.is(sha256(manifest), image.digest, 'manifest bytes are the pushed ones');
	const files = new Set(await readdir(dir));
	for (const blob of [image.config, ...image.layers]) {
		const hex = blob.digest.slice('sha256:'.length);
		t.true(files.has(hex), `blob ${hex} copied`);
		t.is(sha256(await readFile(join(dir, hex))), blob.digest, `blob ${hex} has the right bytes`);
	}
}
