/**
 * `registry-mirror prefetch IMAGE...`: pulls images through a running mirror
 * so they are cached before anyone needs them (every platform of an index, or
 * the chosen ones). A progress bar per layer on a terminal, plain lines otherwise.
 */
import {createHash} from 'node:crypto';
import cliProgress from 'cli-progress';
import got from 'got';
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

export async function prefetch(images: string[], options: PrefetchOptions): Promise<number> {
	const headers: Record<string, string> = {};
	if (options.user) {
		headers['authorization'] = `Basic ${Buffer.from(options.user).toString('base64')}`;
	}

	const client = got.extend({prefixUrl: `${options.url.replace(/\/+$/, '')}/v2/`, headers, retry: {limit: 2}, timeout: {response: 120_000}});
	const bars = options.progress
		? new cliProgress.MultiBar(
				{format: ' {bar} {percentage}% | {name} | {done}/{total}', hideCursor: true, clearOnComplete: false, stopOnComplete: true},
				cliProgress.Presets.shades_classic,
			)
		: undefined;
	const say = (line: string) => (bars ? bars.log(`${line}\n`) : process.stdout.write(`${line}\n`));
	let failures = 0;

	const fetchBlob = async (name: string, blob: Descriptor, label: string) => {
		const bar = bars?.create(blob.size, 0, {name: label, done: formatBytes(0), total: formatBytes(blob.size)});
		const hash = createHash('sha256');
		let received = 0;
		for await (const chunk of client.stream(`${name}/blobs/${blob.digest}`)) {
			hash.update(chunk as Buffer);
			received += (chunk as Buffer).length;
			bar?.update(received, {done: formatBytes(received)});
		}

		bar?.stop();
		if (`sha256:${hash.digest('hex')}` !== blob.digest) {
			throw new Error(`${blob.digest}: content does not match its digest`);
		}

		if (!bars) {
			say(`  ${label} ${formatBytes(received)} ok`);
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
		await Promise.all(blobs.map(async (blob, index) => fetchBlob(name, blob, `${index === 0 && manifest.config ? 'config' : `layer ${index}`} ${blob.digest.slice(7, 19)}`)));
	};

	for (const image of images) {
		const {name, reference} = parseImageRef(image);
		try {
			await fetchImage(name, reference, image);
			say(`${image}: cached`);
		} catch (error) {
			failures++;
			say(`${image}: failed: ${(error as Error).message}`);
		}
	}

	bars?.stop();
	return failures === 0 ? 0 : 1;
}
