import {createHash, randomBytes} from 'node:crypto';
import {gzipSync} from 'node:zlib';

export type Blob = {digest: string; bytes: Buffer; mediaType: string};
export type BuiltImage = {manifest: Buffer; digest: string; mediaType: string; config: Blob; layers: Blob[]; arch: string};
export type BuiltIndex = {manifest: Buffer; digest: string; mediaType: string; images: BuiltImage[]};
export type Credentials = {username: string; password: string};
export type BuildImageOptions = {
	arch?: string;
	os?: string;
	layers?: number;
	layerSize?: number;
	format?: 'docker' | 'oci';
	label?: string;
};

export const mediaTypes = {
	docker: {
		manifest: 'application/vnd.docker.distribution.manifest.v2+json',
		config: 'application/vnd.docker.container.image.v1+json',
		layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
		index: 'application/vnd.docker.distribution.manifest.list.v2+json',
	},
	oci: {
		manifest: 'application/vnd.oci.image.manifest.v1+json',
		config: 'application/vnd.oci.image.config.v1+json',
		layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
		index: 'application/vnd.oci.image.index.v1+json',
	},
} as const;

export function sha256(bytes: Buffer): string {
	return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

// --- tar (ustar) ---------------------------------------------------------------------------

const block = 512;
const tarMtime = 1_700_000_000;

function writeField(header: Buffer, offset: number, length: number, value: string): void {
	header.write(value, offset, length, 'utf8');
}

function octal(value: number, length: number): string {
	// length - 1 octal digits followed by a NUL.
	return `${value.toString(8).padStart(length - 1, '0')}\0`;
}

function tarHeader(name: string, size: number, type: 'file' | 'dir'): Buffer {
	if (Buffer.byteLength(name) > 100) {
		throw new Error(`tar entry name too long: ${name}`);
	}

	const header = Buffer.alloc(block);
	writeField(header, 0, 100, name);
	writeField(header, 100, 8, octal(type === 'dir' ? 0o755 : 0o644, 8));
	writeField(header, 108, 8, octal(0, 8));
	writeField(header, 116, 8, octal(0, 8));
	writeField(header, 124, 12, octal(size, 12));
	writeField(header, 136, 12, octal(tarMtime, 12));
	header.fill(' ', 148, 156); // Checksum is computed with its own field as spaces.
	writeField(header, 156, 1, type === 'dir' ? '5' : '0');
	writeField(header, 257, 6, 'ustar\0');
	writeField(header, 263, 2, '00');
	writeField(header, 265, 32, 'root');
	writeField(header, 297, 32, 'root');
	let checksum = 0;
	for (const byte of header) {
		checksum += byte;
	}

	writeField(header, 148, 8, `${checksum.toString(8).padStart(6, '0')}\0 `);
	return header;
}

/** An uncompressed tar holding `files` (paths without a leading slash) inside their parent dirs. */
export function makeTar(files: Array<{path: string; content: Buffer}>): Buffer {
	const parts: Buffer[] = [];
	const dirs = new Set<string>();
	for (const file of files) {
		const segments = file.path.split('/').slice(0, -1);
		for (let i = 1; i <= segments.length; i++) {
			const dir = `${segments.slice(0, i).join('/')}/`;
			if (!dirs.has(dir)) {
				dirs.add(dir);
				parts.push(tarHeader(dir, 0, 'dir'));
			}
		}

		parts.push(tarHeader(file.path, file.content.length, 'file'), file.content);
		const padding = (block - (file.content.length % block)) % block;
		parts.push(Buffer.alloc(padding));
	}

	parts.push(Buffer.alloc(block * 2));
	return Buffer.concat(parts);
}

// --- building ------------------------------------------------------------------------------

function jsonBytes(value: unknown): Buffer {
	return Buffer.from(JSON.stringify(value));
}

function descriptor(blob: Blob): {mediaType: string; size: number; digest: string} {
	return {mediaType: blob.mediaType, size: blob.bytes.length, digest: blob.digest};
}

/** A real image: gzip'ed tar layers of random (incompressible) data and a valid image config. */
export async function buildImage(opts: BuildImageOptions = {}): Promise<BuiltImage> {
	const arch = opts.arch ?? 'amd64';
	const os = opts.os ?? 'linux';
	const layerCount = opts.layers ?? 1;
	const layerSize = opts.layerSize ?? 64 * 1024;
	const types = mediaTypes[opts.format ?? 'docker'];
	const nonce = randomBytes(4).toString('hex');

	const layers: Blob[] = [];
	const diffIds: string[] = [];
	for (let n = 0; n < layerCount; n++) {
		// Two files per layer when big enough, so consumers see a directory with several entries.
		const sizes = layerSize >= 2048 ? [layerSize - Math.floor(layerSize / 4), Math.floor(layerSize / 4)] : [layerSize];
		const tar = makeTar(sizes.map((size, i) => ({path: `data/layer-${n}-${nonce}-${i}.bin`, content: randomBytes(size)})));
		diffIds.push(sha256(tar));
		const gz = gzipSync(tar);
		layers.push({digest: sha256(gz), bytes: gz, mediaType: types.layer});
	}

	const created = new Date().toISOString();
	const configJson = {
		architecture: arch,
		os,
		created,
		config: {Cmd: ['/bin/true'], Labels: opts.label === undefined ? {} : {'test.label': opts.label}},
		rootfs: {type: 'layers', diff_ids: diffIds},
		history: diffIds.map((_, n) => ({created, created_by: `test harness layer ${n}`})),
	};
	const configBytes = jsonBytes(configJson);
	const config: Blob = {digest: sha256(configBytes), bytes: configBytes, mediaType: types.config};
	const manifest = jsonBytes({
		schemaVersion: 2,
		mediaType: types.manifest,
		config: descriptor(config),
		layers: layers.map(descriptor),
	});
	return {manifest, digest: sha256(manifest), mediaType: types.manifest, config, layers, arch};
}

/** A manifest list (docker) or image index (oci) over `images`, one platform entry each. */
export function buildIndex(images: BuiltImage[], format: 'docker' | 'oci' = 'oci'): BuiltIndex {
	const mediaType = mediaTypes[format].index;
	const manifests = images.map((image) => {
		const config = JSON.parse(image.config.bytes.toString('utf8')) as {os?: unknown};
		return {
			mediaType: image.mediaType,
			size: image.manifest.length,
			digest: image.digest,
			platform: {architecture: image.arch, os: typeof config.os === 'string' ? config.os : 'linux'},
		};
	});
	const manifest = jsonBytes({schemaVersion: 2, mediaType, manifests});
	return {manifest, digest: sha256(manifest), mediaType, images};
}

// --- pushing -------------------------------------------------------------------------------

/** Parses `Bearer realm="...",service="...",scope="..."` into its parameters. */
export function parseChallenge(header: string): {scheme: string; params: Record<string, string>} {
	const space = header.indexOf(' ');
	const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
	const params: Record<string, string> = {};
	const re = /([a-zA-Z_]+)="([^"]*)"/g;
	for (const match of header.slice(space + 1).matchAll(re)) {
		const [, key, value] = match;
		if (key !== undefined && value !== undefined) {
			params[key.toLowerCase()] = value;
		}
	}

	return {scheme, params};
}

/** A tiny V2 client for one repository that answers Bearer (and Basic) challenges. */
class PushClient {
	private authorization: string | null = null;

	constructor(
		readonly registryUrl: string,
		private readonly repo: string,
		private readonly auth: Credentials | undefined,
	) {}

	async request(method: string, pathOrUrl: string, init: {body?: Buffer; headers?: Record<string, string>} = {}): Promise<Response> {
		const url = new URL(pathOrUrl, this.registryUrl);
		const send = async (): Promise<Response> =>
			fetch(url, {
				method,
				headers: {...init.headers, ...(this.authorization === null ? {} : {authorization: this.authorization})},
				body: init.body === undefined ? undefined : new Uint8Array(init.body),
				redirect: 'follow',
			});
		let response = await send();
		if (response.status === 401) {
			const challenge = response.headers.get('www-authenticate');
			await response.arrayBuffer();
			if (challenge === null || !(await this.login(challenge))) {
				throw new Error(`${method} ${url.href}: 401 and cannot authenticate (challenge: ${challenge ?? 'none'})`);
			}

			response = await send();
		}

		return response;
	}

	private basic(): string | null {
		return this.auth === undefined ? null : `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`).toString('base64')}`;
	}

	private async login(challenge: string): Promise<boolean> {
		const {scheme, params} = parseChallenge(challenge);
		if (scheme === 'basic') {
			this.authorization = this.basic();
			return this.authorization !== null;
		}

		const realm = params['realm'];
		if (scheme !== 'bearer' || realm === undefined) {
			return false;
		}

		const tokenUrl = new URL(realm);
		if (params['service'] !== undefined) {
			tokenUrl.searchParams.set('service', params['service']);
		}

		tokenUrl.searchParams.set('scope', `repository:${this.repo}:pull,push`);
		const basic = this.basic();
		const response = await fetch(tokenUrl, {headers: basic === null ? {} : {authorization: basic}});
		const text = await response.text();
		if (!response.ok) {
			throw new Error(`token request ${tokenUrl.href} failed: ${response.status} ${text}`);
		}

		const body = JSON.parse(text) as {token?: unknown; access_token?: unknown};
		const token = typeof body.token === 'string' ? body.token : body.access_token;
		if (typeof token !== 'string') {
			throw new Error(`token response without a token: ${text}`);
		}

		this.authorization = `Bearer ${token}`;
		return true;
	}
}

async function expectStatus(response: Response, expected: number[], what: string): Promise<void> {
	if (!expected.includes(response.status)) {
		const body = await response.text();
		throw new Error(`${what}: HTTP ${response.status} ${body}`);
	}

	await response.arrayBuffer();
}

async function pushBlob(client: PushClient, repo: string, blob: Blob): Promise<void> {
	const head = await client.request('HEAD', `/v2/${repo}/blobs/${blob.digest}`);
	await head.arrayBuffer();
	if (head.status === 200) {
		return;
	}

	const start = await client.request('POST', `/v2/${repo}/blobs/uploads/`);
	await expectStatus(start, [202], `start upload of ${blob.digest} to ${repo}`);
	const location = start.headers.get('location');
	if (location === null) {
		throw new Error(`start upload of ${blob.digest} to ${repo}: 202 without Location`);
	}

	const target = new URL(location, client.registryUrl);
	target.searchParams.set('digest', blob.digest);
	const put = await client.request('PUT', target.href, {
		body: blob.bytes,
		headers: {'content-type': 'application/octet-stream'},
	});
	await expectStatus(put, [201], `upload of ${blob.digest} to ${repo}`);
}

async function putManifest(client: PushClient, repo: string, reference: string, bytes: Buffer, mediaType: string): Promise<void> {
	const response = await client.request('PUT', `/v2/${repo}/manifests/${reference}`, {
		body: bytes,
		headers: {'content-type': mediaType},
	});
	await expectStatus(response, [201], `PUT manifest ${repo}:${reference}`);
}

async function pushImageWith(client: PushClient, repo: string, tag: string | null, image: BuiltImage): Promise<void> {
	for (const blob of [image.config, ...image.layers]) {
		await pushBlob(client, repo, blob);
	}

	await putManifest(client, repo, image.digest, image.manifest, image.mediaType);
	if (tag !== null) {
		await putManifest(client, repo, tag, image.manifest, image.mediaType);
	}
}

/** Pushes config + layers (monolithic uploads), then the manifest by digest and, if given, by tag. */
export async function pushImage(registryUrl: string, repo: string, tag: string | null, image: BuiltImage, auth?: Credentials): Promise<void> {
	await pushImageWith(new PushClient(registryUrl, repo, auth), repo, tag, image);
}

/** Pushes every image of the index by digest, then the index by digest and, if given, by tag. */
export async function pushIndex(registryUrl: string, repo: string, tag: string | null, index: BuiltIndex, auth?: Credentials): Promise<void> {
	const client = new PushClient(registryUrl, repo, auth);
	for (const image of index.images) {
		await pushImageWith(client, repo, null, image);
	}

	await putManifest(client, repo, index.digest, index.manifest, index.mediaType);
	if (tag !== null) {
		await putManifest(client, repo, tag, index.manifest, index.mediaType);
	}
}
