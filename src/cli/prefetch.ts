/**
 * `registry-mirror prefetch IMAGE...`: pulls images through a running mirror
 * so they are cached before anyone needs them (every platform of an index, or
 * the chosen ones). A progress bar per layer on a terminal, plain lines otherwise.
 */
import {createHash} from 'node:crypto';
import cliProgress from 'cli-progress';
import got, {HTTPError} from 'got';
import {isIndexType, MANIFEST_ACCEPT} from '../v2/media-types.js';
import {indexChildren, type Platform} from '../v2/manifest.js';
import {formatBytes} from '../util/format.js';

export type ImageRef = {name: string; reference: string};

/** `nginx`, `nginx:1.27`, `ghcr.io/org/tool:1`, `alpine@sha256:...` → name and tag/digest. */
export function parseImageRef(ref: string): ImageRef {
	const at = ref.indexOf('@');
	if (at > 0) {
		return {name: ref.slice(0, at), reference: ref.slice(at + 1)};
	}

	const colon = ref.lastIndexOf(':');
	if (colon > ref.lastIndexOf('/')) {
		return {name: ref.slice(0, colon), reference: ref.slice(colon + 1)};
	}

	return {name: ref, reference: 'latest'};
}

function platformString(platform: Platform | undefined): string {
	return platform ? [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/') : 'unknown';
}

type Descriptor = {digest: string; size: number};

export type PrefetchOptions = {url: string; platforms: string[]; user?: string; progress: boolean};

/** Node's codes for a certificate chain it cannot verify against its trusted CAs. */
const UNTRUSTED_CERT_CODES = new Set([
	'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
	'UNABLE_TO_GET_ISSUER_CERT',
	'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
	'SELF_SIGNED_CERT_IN_CHAIN',
	'DEPTH_ZERO_SELF_SIGNED_CERT',
]);

/** One line saying why a request to the mirror failed: the V2 error's message, or what to do about TLS. */
export function describeFailure(error: unknown): string {
	const code = (error as {code?: string}).code ?? '';
	const message = error instanceof Error ? error.message : String(error);
	if (UNTRUSTED_CERT_CODES.has(code)) {
		return `the mirror's TLS certificate is not trusted (${message}): to trust a private CA, set NODE_EXTRA_CA_CERTS=/path/to/ca.pem`;
	}

	if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
		return `the mirror's TLS certificate is for another name (${message})`;
	}

	if (code === 'ECONNREFUSED' || code === 'ENOTFOUND') {
		return `cannot reach the mirror (${message})`;
	}

	if (error instanceof HTTPError) {
		const body: unknown = error.response.body;
		try {
			const first = (JSON.parse(Buffer.isBuffer(body) ? body.toString('utf8') : String(body)) as {errors?: Array<{code?: string; message?: string}>}).errors?.[0];
			if (first?.message) {
				return `${first.message} (${error.response.statusCode} ${first.code ?? ''})`.replace(' )', ')');
			}
		} catch {
			// not a V2 error body
		}

		return `the mirror answered ${error.response.statusCode} ${error.response.statusMessage ?? ''}`.trimEnd();
	}

	return message;
}

export async function prefetch(images: string[], options: PrefetchOptions): Promise<number> {
	const headers: Record<string, string> = {};
	if (options.user) {
		headers['authorization'] = `Basic ${Buffer.from(options.user).toString('base64')}`;
	}

	const client = got.extend({prefixUrl: `${options.url.replace(/\/+$/, '')}/v2/`, headers, retry: {limit: 2}, timeout: {response: 120_000}});
	// Lines are written only while no bars are drawn (the bars of one image at a time), so none is lost to a redraw.
	const say = (line: string) => process.stdout.write(`${line}\n`);
	let failures = 0;

	const fetchBlob = async (name: string, blob: Descriptor, label: string, bars: cliProgress.MultiBar | undefined) => {
		// `total` is a built-in of cli-progress (the raw value), so the formatted sizes go by other names.
		const bar = bars?.create(blob.size, 0, {name: label, doneBytes: formatBytes(0), totalBytes: formatBytes(blob.size)});
		const hash = createHash('sha256');
		let received = 0;
		for await (const chunk of client.stream(`${name}/blobs/${blob.digest}`)) {
			hash.update(chunk as Buffer);
			received += (chunk as Buffer).length;
			bar?.update(received, {doneBytes: formatBytes(received)});
		}

		if (`sha256:${hash.digest('hex')}` !== blob.digest) {
			throw new Error(`${blob.digest}: content does not match its digest`);
		}

		return `  ${label} ${formatBytes(received)} ok`;
	};

	/** Every blob of one image at once, with a bar each on a terminal; the first failure is thrown once all ended. */
	const fetchBlobs = async (name: string, blobs: Array<{blob: Descriptor; label: string}>) => {
		const bars = options.progress
			? new cliProgress.MultiBar(
					{format: ' {bar} {percentage}% | {name} | {doneBytes}/{totalBytes}', hideCursor: true, clearOnComplete: false, stopOnComplete: false},
					cliProgress.Presets.shades_classic,
				)
			: undefined;
		let results: Array<PromiseSettledResult<string>>;
		try {
			results = await Promise.allSettled(blobs.map(async ({blob, label}) => fetchBlob(name, blob, label, bars)));
		} finally {
			bars?.stop(); // draws the last state of every bar and moves below them
		}

		for (const result of results) {
			if (result.status === 'rejected') {
				throw result.reason;
			}

			if (!bars) {
				say(result.value);
			}
		}
	};

	const fetchImage = async (name: string, reference: string, label: string) => {
		const response = await client.get(`${name}/manifests/${reference}`, {headers: {accept: MANIFEST_ACCEPT}, responseType: 'buffer'});
		const mediaType = String(response.headers['content-type'] ?? '');
		const manifest = JSON.parse(response.body.toString('utf8')) as {config?: Descriptor; layers?: Descriptor[]; manifests?: unknown};
		if (isIndexType(mediaType) || Array.isArray(manifest.manifests)) {
			const children = indexChildren(manifest).filter(child => {
				const platform = platformString(child.platform);
				return platform !== 'unknown/unknown' && (options.platforms.length === 0 || options.platforms.includes(platform));
			});
			if (children.length === 0) {
				throw new Error(`no platform of ${label} matches ${options.platforms.join(', ')}`);
			}

			for (const child of children) {
				await fetchImage(name, child.digest, `${label} ${platformString(child.platform)}`);
			}

			return;
		}

		const blobs = [...(manifest.config ? [manifest.config] : []), ...(manifest.layers ?? [])];
		say(`${label}: ${blobs.length} blobs, ${formatBytes(blobs.reduce((sum, blob) => sum + blob.size, 0))}`);
		await fetchBlobs(
			name,
			blobs.map((blob, index) => ({blob, label: `${index === 0 && manifest.config ? 'config' : `layer ${index}`} ${blob.digest.slice(7, 19)}`})),
		);
	};

	for (const image of images) {
		const {name, reference} = parseImageRef(image);
		try {
			await fetchImage(name, reference, image);
			say(`${image}: cached`);
		} catch (error) {
			failures++;
			say(`${image}: failed: ${describeFailure(error)}`);
		}
	}

	return failures === 0 ? 0 : 1;
}
