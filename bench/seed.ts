/**
 * Seeds the upstream (the reference registry, token auth) through the V2 API
 * and lays out the same bytes for nginx:
 *   bench/big:1     one layer of SIZE random bytes (streamed from a file, never held in memory)
 *   bench/small:1   200 gzip'ed tar layers of 64 KiB
 *   bench/app:latest  a small one-layer image (the manifest-by-tag target)
 *   bench/cold      many 4 KiB layers (in untagged images) and bench/tags:t0..tN (one small
 *                   image under many tags): what the mixed load asks for cold, once each
 * nginx root: /big, /blobs/<hex> (the small layers), /manifest (the app manifest).
 */
import {createHash, randomFill} from 'node:crypto';
import {createReadStream, createWriteStream} from 'node:fs';
import {mkdir, writeFile} from 'node:fs/promises';
import {request} from 'node:http';
import {join} from 'node:path';
import {promisify} from 'node:util';
import {buildImage, mediaTypes, parseChallenge, pushImage, sha256, type BuiltImage} from '../test/helpers/images.js';

const randomFillAsync = promisify(randomFill);

export type Seeded = {
	big: {repo: string; tag: string; digest: string; size: number; manifestDigest: string; file: string};
	small: {repo: string; tag: string; digests: string[]; manifestDigest: string};
	app: {repo: string; tag: string; manifest: Buffer; mediaType: string; digest: string; file: string};
	cold: {repo: string; digests: string[]};
	tags: {repo: string; tags: string[]};
	/** Served by nginx at the same relative paths. */
	root: string;
};

/** A pull (and push) token for `repo` from the registry's token realm. */
export async function tokenFor(registryUrl: string, repo: string, actions = 'pull'): Promise<string> {
	const ping = await fetch(`${registryUrl}/v2/`);
	await ping.arrayBuffer();
	const challenge = ping.headers.get('www-authenticate');
	if (ping.status !== 401 || challenge === null) {
		throw new Error(`${registryUrl}/v2/ answered ${ping.status} without a challenge`);
	}

	const {params} = parseChallenge(challenge);
	const url = new URL(params['realm'] ?? '');
	if (params['service']) {
		url.searchParams.set('service', params['service']);
	}

	url.searchParams.set('scope', `repository:${repo}:${actions}`);
	const response = await fetch(url);
	const body = (await response.json()) as {token?: string; access_token?: string};
	const token = body.token ?? body.access_token;
	if (!token) {
		throw new Error(`no token from ${url.href}`);
	}

	return token;
}

/** Writes `size` random bytes to `file`, hashing them on the way; returns the digest. */
async function randomFile(file: string, size: number): Promise<string> {
	const hash = createHash('sha256');
	const out = createWriteStream(file);
	const chunk = 8 * 1024 * 1024;
	for (let written = 0; written < size; ) {
		const buffer = Buffer.allocUnsafe(Math.min(chunk, size - written));
		await randomFillAsync(buffer);
		hash.update(buffer);
		written += buffer.length;
		if (!out.write(buffer)) {
			await new Promise<void>(resolve => out.once('drain', () => resolve()));
		}
	}

	await new Promise<void>((resolve, reject) => {
		out.end((error?: Error | null) => (error ? reject(error) : resolve()));
	});
	return `sha256:${hash.digest('hex')}`;
}

/** Monolithic upload of a file, streamed: POST an upload, then PUT the bytes with ?digest=. */
async function uploadFile(registryUrl: string, repo: string, file: string, size: number, digest: string): Promise<void> {
	const authorization = `Bearer ${await tokenFor(registryUrl, repo, 'pull,push')}`;
	const start = await fetch(`${registryUrl}/v2/${repo}/blobs/uploads/`, {method: 'POST', headers: {authorization}});
	await start.arrayBuffer();
	const location = start.headers.get('location');
	if (start.status !== 202 || location === null) {
		throw new Error(`start upload to ${repo}: HTTP ${start.status}`);
	}

	const target = new URL(location, registryUrl);
	target.searchParams.set('digest', digest);
	await new Promise<void>((resolve, reject) => {
		const req = request(
			target,
			{method: 'PUT', headers: {authorization, 'content-type': 'application/octet-stream', 'content-length': String(size)}},
			res => {
				let text = '';
				res.setEncoding('utf8');
				res.on('data', (part: string) => {
					text += part;
				});
				res.once('end', () => (res.statusCode === 201 ? resolve() : reject(new Error(`upload of ${digest}: HTTP ${res.statusCode} ${text}`))));
			},
		);
		req.once('error', reject);
		createReadStream(file, {highWaterMark: 1024 * 1024}).pipe(req);
	});
}

function imageOf(layerDigest: string, layerSize: number): BuiltImage {
	const config = Buffer.from(JSON.stringify({architecture: 'amd64', os: 'linux', rootfs: {type: 'layers', diff_ids: []}}));
	const layerType = mediaTypes.docker.layer;
	const manifest = Buffer.from(
		JSON.stringify({
			schemaVersion: 2,
			mediaType: mediaTypes.docker.manifest,
			config: {mediaType: mediaTypes.docker.config, size: config.length, digest: sha256(config)},
			layers: [{mediaType: layerType, size: layerSize, digest: layerDigest}],
		}),
	);
	return {
		manifest,
		digest: sha256(manifest),
		mediaType: mediaTypes.docker.manifest,
		config: {digest: sha256(config), bytes: config, mediaType: mediaTypes.docker.config},
		// Already uploaded: pushImage HEADs it first and skips the upload.
		layers: [{digest: layerDigest, bytes: Buffer.alloc(0), mediaType: layerType}],
		arch: 'amd64',
	};
}

/** Runs `fn` over `items`, `parallel` at a time. */
async function eachParallel<T>(items: T[], parallel: number, fn: (item: T) => Promise<void>): Promise<void> {
	let next = 0;
	await Promise.all(
		Array.from({length: Math.min(parallel, items.length)}, async () => {
			while (next < items.length) {
				await fn(items[next++]!);
			}
		}),
	);
}

export async function seed(
	registryUrl: string,
	root: string,
	opts: {bigSize: number; smallLayers: number; smallSize: number; coldBlobs?: number; coldTags?: number},
): Promise<Seeded> {
	await mkdir(join(root, 'blobs'), {recursive: true});

	const bigFile = join(root, 'big');
	const bigDigest = await randomFile(bigFile, opts.bigSize);
	await uploadFile(registryUrl, 'bench/big', bigFile, opts.bigSize, bigDigest);
	const bigImage = imageOf(bigDigest, opts.bigSize);
	await pushImage(registryUrl, 'bench/big', '1', bigImage);

	const small = await buildImage({layers: opts.smallLayers, layerSize: opts.smallSize});
	await pushImage(registryUrl, 'bench/small', '1', small);
	await Promise.all(small.layers.map(async layer => writeFile(join(root, 'blobs', layer.digest.slice('sha256:'.length)), layer.bytes)));

	const app = await buildImage({layers: 1, layerSize: 4096});
	await pushImage(registryUrl, 'bench/app', 'latest', app);
	const appFile = join(root, 'manifest');
	await writeFile(appFile, app.manifest);

	// Cold material for the mixed load: images of 100 layers each, pushed 8 at a time, untagged.
	const coldBlobs = opts.coldBlobs ?? 0;
	const coldImages = await Promise.all(
		Array.from({length: Math.ceil(coldBlobs / 100)}, async (_, n) => buildImage({layers: Math.min(100, coldBlobs - n * 100), layerSize: 4096})),
	);
	await eachParallel(coldImages, 8, async image => pushImage(registryUrl, 'bench/cold', null, image));
	const tagged = await buildImage({layers: 1, layerSize: 4096});
	const tags = Array.from({length: opts.coldTags ?? 0}, (_, n) => `t${n}`);
	if (tags.length > 0) {
		// The first push uploads the blobs; the others find them (HEAD) and only put the manifest.
		await pushImage(registryUrl, 'bench/tags', tags[0]!, tagged);
		await eachParallel(tags.slice(1), 8, async tag => pushImage(registryUrl, 'bench/tags', tag, tagged));
	}

	return {
		cold: {repo: 'bench/cold', digests: coldImages.flatMap(image => image.layers.map(layer => layer.digest))},
		tags: {repo: 'bench/tags', tags},
		big: {repo: 'bench/big', tag: '1', digest: bigDigest, size: opts.bigSize, manifestDigest: bigImage.digest, file: bigFile},
		small: {repo: 'bench/small', tag: '1', digests: small.layers.map(layer => layer.digest), manifestDigest: small.digest},
		app: {repo: 'bench/app', tag: 'latest', manifest: app.manifest, mediaType: app.mediaType, digest: app.digest, file: appFile},
		root,
	};
}
