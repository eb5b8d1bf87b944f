export const MEDIA_TYPES = {
	dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
	dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
	dockerManifestV1: 'application/vnd.docker.distribution.manifest.v1+json',
	dockerManifestV1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
	ociManifest: 'application/vnd.oci.image.manifest.v1+json',
	ociIndex: 'application/vnd.oci.image.index.v1+json',
} as const;

/** What we ask an upstream for: every manifest type, so we cache exactly what it has. */
export const MANIFEST_ACCEPT = [
	MEDIA_TYPES.ociIndex,
	MEDIA_TYPES.dockerManifestList,
	MEDIA_TYPES.ociManifest,
	MEDIA_TYPES.dockerManifest,
	MEDIA_TYPES.dockerManifestV1Signed,
	MEDIA_TYPES.dockerManifestV1,
].join(', ');

const INDEX_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);

export function isIndexType(mediaType: string): boolean {
	return INDEX_TYPES.has(mediaType);
}

/** Parses an Accept header into bare media types (parameters and q-values dropped). */
export function parseAccept(header: string | string[] | undefined): string[] {
	const values = Array.isArray(header) ? header : header ? [header] : [];
	return values
		.flatMap(value => value.split(','))
		.filter(part => !/;\s*q\s*=\s*0(?:\.0*)?\s*(?:;|$)/i.test(part)) // q=0: explicitly not acceptable
		.map(part => part.split(';')[0]!.trim().toLowerCase())
		.filter(part => part.length > 0);
}

/**
 * Whether a client that sent `accept` can take a manifest of `mediaType`.
 * No Accept header or a wildcard takes anything we have, as with the
 * reference registry.
 */
export function accepts(accept: string[], mediaType: string): boolean {
	if (accept.length === 0) {
		return true;
	}

	return accept.some(type => type === mediaType || type === '*/*' || type === 'application/*');
}

/**
 * The media type a manifest body declares, or, for bodies without a
 * `mediaType` field (OCI allows that), what its shape says.
 */
export function detectManifestType(body: unknown): string | undefined {
	if (typeof body !== 'object' || body === null) {
		return undefined;
	}

	const record = body as Record<string, unknown>;
	if (typeof record['mediaType'] === 'string') {
		return record['mediaType'];
	}

	if (record['schemaVersion'] === 1) {
		return record['signatures'] ? MEDIA_TYPES.dockerManifestV1Signed : MEDIA_TYPES.dockerManifestV1;
	}

	if (Array.isArray(record['manifests'])) {
		return MEDIA_TYPES.ociIndex;
	}

	if (record['config'] !== undefined) {
		return MEDIA_TYPES.ociManifest;
	}

	return undefined;
}
