/** The largest manifest accepted from a client or an upstream. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** What a manifest body references: config, layers, blobs and child manifests. */
type Descriptor = {digest?: unknown};

function digestsOf(list: unknown): string[] {
	return Array.isArray(list)
		? list.map((entry: Descriptor) => entry?.digest).filter((digest): digest is string => typeof digest === 'string')
		: [];
}

export function manifestReferences(body: unknown): string[] {
	if (typeof body !== 'object' || body === null) {
		return [];
	}

	const record = body as Record<string, unknown>;
	const references = [
		...digestsOf(record['config'] ? [record['config']] : []),
		...digestsOf(record['layers']),
		...digestsOf(record['blobs']),
		...digestsOf(record['manifests']),
		// schema1
		...(Array.isArray(record['fsLayers'])
			? (record['fsLayers'] as Array<{blobSum?: unknown}>).map(layer => layer?.blobSum).filter((d): d is string => typeof d === 'string')
			: []),
	];
	return [...new Set(references)];
}

export type Platform = {os?: string; architecture?: string; variant?: string};

/** The children of an index / manifest list with their platforms. */
export function indexChildren(body: unknown): Array<{digest: string; mediaType?: string; platform?: Platform}> {
	if (typeof body !== 'object' || body === null || !Array.isArray((body as {manifests?: unknown}).manifests)) {
		return [];
	}

	return ((body as {manifests: unknown[]}).manifests as Array<Record<string, unknown>>)
		.filter(entry => typeof entry?.['digest'] === 'string')
		.map(entry => ({
			digest: entry['digest'] as string,
			mediaType: typeof entry['mediaType'] === 'string' ? entry['mediaType'] : undefined,
			platform: (entry['platform'] as Platform | undefined) ?? undefined,
		}));
}
