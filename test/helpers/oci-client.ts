/**
 * A small OCI distribution-spec client for the conformance tests: raw requests
 * with global fetch (no redirects followed, bodies read once), Location
 * resolution against the request URL (the spec lets a registry send absolute
 * or relative ones), V2 error-body parsing, and builders for blobs and
 * manifests. Setup helpers throw on anything but the expected status, so a
 * broken setup fails the test that needs it with a clear message.
 */
import {createHash, randomBytes} from 'node:crypto';
import {request as httpRequest} from 'node:http';
import {type ExecutionContext} from 'ava';
import {startMirror, type Mirror, type MirrorOptions} from './mirror.js';

export const MEDIA = {
	ociManifest: 'application/vnd.oci.image.manifest.v1+json',
	ociIndex: 'application/vnd.oci.image.index.v1+json',
	ociConfig: 'application/vnd.oci.image.config.v1+json',
	ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
	ociEmpty: 'application/vnd.oci.empty.v1+json',
	dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
	dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
	dockerConfig: 'application/vnd.docker.container.image.v1+json',
	dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** The error codes the distribution-spec's "Error Codes" table allows (code-1 … code-14). */
export const SPEC_ERROR_CODES: readonly string[] = [
	'BLOB_UNKNOWN',
	'BLOB_UPLOAD_INVALID',
	'BLOB_UPLOAD_UNKNOWN',
	'DIGEST_INVALID',
	'MANIFEST_BLOB_UNKNOWN',
	'MANIFEST_INVALID',
	'MANIFEST_UNKNOWN',
	'NAME_INVALID',
	'NAME_UNKNOWN',
	'SIZE_INVALID',
	'UNAUTHORIZED',
	'DENIED',
	'UNSUPPORTED',
	'TOOMANYREQUESTS',
];

/** `{}`: the OCI empty JSON blob, digest fixed by the image-spec. */
export const EMPTY_JSON = Buffer.from('{}');
export const EMPTY_JSON_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';
export const EMPTY_BLOB_DIGEST = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export const UUID_PATTERN = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

export function sha256(bytes: Uint8Array): string {
	return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** A digest nothing in the registry has. */
export function unknownDigest(): string {
	return sha256(randomBytes(32));
}

export type Descriptor = {
	mediaType: string;
	digest: string;
	size: number;
	artifactType?: string;
	annotations?: Record<string, string>;
};

export type Blob = Descriptor & {bytes: Buffer};

export function blob(bytes: Buffer, mediaType: string = MEDIA.ociLayer): Blob {
	return {mediaType, digest: sha256(bytes), size: bytes.length, bytes};
}

export function randomBlob(size = 1024, mediaType: string = MEDIA.ociLayer): Blob {
	return blob(randomBytes(size), mediaType);
}

/** A small config blob; `label` makes it (and every manifest using it) unique. */
export function configBlob(label: string, mediaType: string = MEDIA.ociConfig): Blob {
	const body = {architecture: 'amd64', os: 'linux', config: {Labels: {conformance: label}}, rootfs: {type: 'layers', diff_ids: []}};
	return blob(Buffer.from(JSON.stringify(body)), mediaType);
}

export function describe(entry: Descriptor): Descriptor {
	const out: Descriptor = {mediaType: entry.mediaType, digest: entry.digest, size: entry.size};
	if (entry.artifactType !== undefined) {
		out.artifactType = entry.artifactType;
	}

	if (entry.annotations !== undefined) {
		out.annotations = entry.annotations;
	}

	return out;
}

export type Manifest = {bytes: Buffer; digest: string; mediaType: string; size: number; json: Record<string, unknown>};

function manifestOf(json: Record<string, unknown>, mediaType: string, indent: string | undefined): Manifest {
	const bytes = Buffer.from(JSON.stringify(json, null, indent));
	return {bytes, digest: sha256(bytes), mediaType, size: bytes.length, json};
}

export type ImageManifestOptions = {
	config: Descriptor;
	layers?: Descriptor[];
	artifactType?: string;
	subject?: Descriptor;
	annotations?: Record<string, string>;
	/** JSON.stringify indent; differs from the server's own serialization on purpose. */
	indent?: string;
};

export function ociManifest(options: ImageManifestOptions): Manifest {
	const json: Record<string, unknown> = {schemaVersion: 2, mediaType: MEDIA.ociManifest};
	if (options.artifactType !== undefined) {
		json['artifactType'] = options.artifactType;
	}

	json['config'] = describe(options.config);
	json['layers'] = (options.layers ?? []).map(describe);
	if (options.subject !== undefined) {
		json['subject'] = describe(options.subject);
	}

	if (options.annotations !== undefined) {
		json['annotations'] = options.annotations;
	}

	return manifestOf(json, MEDIA.ociManifest, options.indent ?? '\t');
}

export function dockerManifest(config: Descriptor, layers: Descriptor[]): Manifest {
	const json = {schemaVersion: 2, mediaType: MEDIA.dockerManifest, config: describe(config), layers: layers.map(describe)};
	return manifestOf(json, MEDIA.dockerManifest, '   ');
}

export type IndexOptions = {
	manifests: Array<Descriptor & {platform?: Record<string, string>}>;
	artifactType?: string;
	subject?: Descriptor;
	annotations?: Record<string, string>;
	mediaType?: string;
};

export function imageIndex(options: IndexOptions): Manifest {
	const mediaType = options.mediaType ?? MEDIA.ociIndex;
	const json: Record<string, unknown> = {schemaVersion: 2, mediaType};
	if (options.artifactType !== undefined) {
		json['artifactType'] = options.artifactType;
	}

	json['manifests'] = options.manifests.map(entry => ({...describe(entry), ...(entry.platform ? {platform: entry.platform} : {})}));
	if (options.subject !== undefined) {
		json['subject'] = describe(options.subject);
	}

	if (options.annotations !== undefined) {
		json['annotations'] = options.annotations;
	}

	return manifestOf(json, mediaType, '  ');
}

export type Reply = {status: number; headers: Headers; body: Buffer; url: string};

export type RequestOptions = {
	headers?: Record<string, string>;
	body?: Uint8Array | ReadableStream<Uint8Array> | string;
};

export type V2Error = {code: string; message?: unknown; detail?: unknown};

export class OciClient {
	constructor(readonly base: string) {}

	/** An absolute URL for a path under the server (`/v2/...`) or an already absolute URL. */
	url(pathOrUrl: string): string {
		return new URL(pathOrUrl, this.base).toString();
	}

	async request(method: string, pathOrUrl: string, options: RequestOptions = {}): Promise<Reply> {
		const init: RequestInit & {duplex?: 'half'} = {method, redirect: 'manual', headers: options.headers ?? {}};
		if (options.body !== undefined) {
			init.body = options.body as NonNullable<RequestInit['body']>;
			if (options.body instanceof ReadableStream) {
				init.duplex = 'half';
			}
		}

		const response = await fetch(this.url(pathOrUrl), init);
		const body = Buffer.from(await response.arrayBuffer());
		return {status: response.status, headers: response.headers, body, url: response.url || this.url(pathOrUrl)};
	}

	get(pathOrUrl: string, headers?: Record<string, string>): Promise<Reply> {
		return this.request('GET', pathOrUrl, {headers});
	}

	head(pathOrUrl: string, headers?: Record<string, string>): Promise<Reply> {
		return this.request('HEAD', pathOrUrl, {headers});
	}

	// --- uploads -----------------------------------------------------------------------------

	/** POST /v2/NAME/blobs/uploads/ (a new session). */
	startUpload(repo: string, query = ''): Promise<Reply> {
		return this.request('POST', `/v2/${repo}/blobs/uploads/${query}`, {headers: {'content-length': '0'}});
	}

	/** Setup: a new session's absolute location; throws unless 202 with a Location. */
	async mustStartUpload(repo: string): Promise<string> {
		const reply = await this.startUpload(repo);
		if (reply.status !== 202) {
			throw new Error(`setup: POST /v2/${repo}/blobs/uploads/ answered ${reply.status}: ${reply.body.toString().slice(0, 300)}`);
		}

		return location(reply);
	}

	/** PUT <location>?digest=..., keeping the query parameters the location already has. */
	finishUpload(sessionUrl: string, digest: string, body?: Uint8Array, headers: Record<string, string> = {}): Promise<Reply> {
		const target = withQuery(sessionUrl, {digest});
		const allHeaders: Record<string, string> = body === undefined ? {'content-length': '0', ...headers} : {'content-type': 'application/octet-stream', ...headers};
		return this.request('PUT', target, {headers: allHeaders, body});
	}

	patchChunk(sessionUrl: string, bytes: Uint8Array, start: number | undefined): Promise<Reply> {
		const headers: Record<string, string> = {'content-type': 'application/octet-stream'};
		if (start !== undefined) {
			headers['content-range'] = `${start}-${start + bytes.length - 1}`;
		}

		return this.request('PATCH', sessionUrl, {headers, body: bytes});
	}

	/** Setup: POST then PUT a blob into `repo`; throws unless 201. */
	async pushBlob(repo: string, entry: {bytes: Buffer; digest: string}): Promise<void> {
		const session = await this.mustStartUpload(repo);
		const reply = await this.finishUpload(session, entry.digest, entry.bytes);
		if (reply.status !== 201) {
			throw new Error(`setup: PUT of blob ${entry.digest} into ${repo} answered ${reply.status}: ${reply.body.toString().slice(0, 300)}`);
		}
	}

	async pushBlobs(repo: string, entries: Array<{bytes: Buffer; digest: string}>): Promise<void> {
		for (const entry of entries) {
			await this.pushBlob(repo, entry);
		}
	}

	// --- manifests ---------------------------------------------------------------------------

	putManifest(repo: string, reference: string, manifest: {bytes: Buffer; mediaType: string}, contentType: string = manifest.mediaType): Promise<Reply> {
		return this.request('PUT', `/v2/${repo}/manifests/${reference}`, {headers: {'content-type': contentType}, body: manifest.bytes});
	}

	/** Setup: PUT a manifest; throws unless 201. */
	async pushManifest(repo: string, reference: string, manifest: {bytes: Buffer; mediaType: string}): Promise<Reply> {
		const reply = await this.putManifest(repo, reference, manifest);
		if (reply.status !== 201) {
			throw new Error(`setup: PUT /v2/${repo}/manifests/${reference} answered ${reply.status}: ${reply.body.toString().slice(0, 300)}`);
		}

		return reply;
	}

	/** Setup: config + layers + manifest under `reference`. */
	async pushImage(repo: string, reference: string, image: {config: Blob; layers: Blob[]; manifest: Manifest}): Promise<Reply> {
		await this.pushBlobs(repo, [image.config, ...image.layers]);
		return this.pushManifest(repo, reference, image.manifest);
	}

	getManifest(repo: string, reference: string, accept: string = ACCEPT_ALL): Promise<Reply> {
		return this.get(`/v2/${repo}/manifests/${reference}`, {accept});
	}

	async tags(repo: string, query = ''): Promise<Reply> {
		return this.get(`/v2/${repo}/tags/list${query}`);
	}
}

/** Every manifest type this registry can store, as a pulling client would send it. */
export const ACCEPT_ALL = [MEDIA.ociManifest, MEDIA.ociIndex, MEDIA.dockerManifest, MEDIA.dockerList].join(', ');

/** The absolute URL of a response's Location header, resolved against the request URL (RFC 7231 §7.1.2). */
export function location(reply: Reply): string {
	const value = reply.headers.get('location');
	if (!value) {
		throw new Error(`no Location header on a ${reply.status} response to ${reply.url}`);
	}

	return new URL(value, reply.url).toString();
}

export function withQuery(url: string, params: Record<string, string>): string {
	const parsed = new URL(url);
	for (const [key, value] of Object.entries(params)) {
		parsed.searchParams.set(key, value);
	}

	return parsed.toString();
}

/**
 * The V2 error body of a 4xx reply, checked against the spec's format:
 * `{"errors": [{"code", "message", "detail"}, ...]}`, codes of uppercase letters
 * and underscores, message a string when present. Throws when the body is not that.
 */
export function errorsOf(reply: Reply): V2Error[] {
	let parsed: unknown;
	try {
		parsed = JSON.parse(reply.body.toString('utf8'));
	} catch {
		throw new Error(`${reply.status} from ${reply.url}: body is not JSON: ${JSON.stringify(reply.body.toString('utf8').slice(0, 200))}`);
	}

	const errors = (parsed as {errors?: unknown}).errors;
	if (!Array.isArray(errors) || errors.length === 0) {
		throw new Error(`${reply.status} from ${reply.url}: no "errors" array: ${reply.body.toString('utf8').slice(0, 200)}`);
	}

	for (const entry of errors) {
		const code = (entry as {code?: unknown}).code;
		if (typeof code !== 'string' || !/^[A-Z_]+$/.test(code)) {
			throw new Error(`${reply.status} from ${reply.url}: error code ${JSON.stringify(code)} is not uppercase letters and underscores`);
		}

		const message = (entry as {message?: unknown}).message;
		if (message !== undefined && typeof message !== 'string') {
			throw new Error(`${reply.status} from ${reply.url}: error message is not a string`);
		}
	}

	return errors as V2Error[];
}

export function errorCodes(reply: Reply): string[] {
	return errorsOf(reply).map(entry => entry.code);
}

/** Parses a `Link: <url>; rel="next"` header (RFC 5988) into an absolute URL, resolved against the request URL. */
export function nextLink(reply: Reply): string | undefined {
	const header = reply.headers.get('link');
	if (header === null) {
		return undefined;
	}

	for (const part of header.split(',')) {
		const match = /^\s*<([^>]*)>\s*(.*)$/.exec(part);
		if (match && /(?:^|;)\s*rel\s*=\s*"?next"?\s*(?:;|$)/i.test(match[2] ?? '')) {
			return new URL(match[1] ?? '', reply.url).toString();
		}
	}

	throw new Error(`Link header without rel="next": ${header}`);
}

export function jsonOf<T>(reply: Reply): T {
	return JSON.parse(reply.body.toString('utf8')) as T;
}

/** A mirror with every `private/` repository local, stopped when the test ends. */
export async function localRegistry(t: ExecutionContext, options: MirrorOptions = {}): Promise<{mirror: Mirror; client: OciClient}> {
	const mirror = await startMirror({namespaces: [{prefix: 'private/', local: true}], ...options});
	t.teardown(async () => mirror.stop());
	return {mirror, client: new OciClient(mirror.url)};
}

/**
 * Sends `prefix` as the start of a PATCH body of `announced` bytes, then cuts
 * the connection (once `cutAfter` has resolved, when given): a client whose
 * network dropped mid-chunk. Resolves once the socket is closed.
 */
export async function droppedPatch(sessionUrl: string, prefix: Buffer, announced: number, cutAfter?: Promise<void>): Promise<void> {
	await new Promise<void>(resolve => {
		const request = httpRequest(sessionUrl, {
			method: 'PATCH',
			headers: {'content-type': 'application/octet-stream', 'content-length': String(announced)},
		});
		request.on('error', () => resolve());
		request.on('response', response => {
			response.resume();
			response.on('end', () => resolve());
			response.on('error', () => resolve());
		});
		request.on('close', () => resolve());
		request.write(prefix, () => {
			void (cutAfter ?? Promise.resolve()).then(() => request.destroy());
		});
	});
}
