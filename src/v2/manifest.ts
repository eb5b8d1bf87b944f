/**
 * The one place that knows a manifest's shape. `parseManifest` reads a
 * manifest body for both callers: a push (`strict`: schema 2 only, a
 * supported media type agreeing with Content-Type, every descriptor valid;
 * errors are the client's, 4xx) and a pull-through fetch (`lenient`: any JSON
 * with a media type, its references as named; errors are the upstream's,
 * UpstreamError 502). The checks run in the order each caller always had.
 */
import {createHash} from 'node:crypto';
import {type ErrorCode, RegistryError, TooLargeError, UpstreamError} from './errors.js';
import {type Digest, type DigestAlgorithm, parseDigest} from './grammar.js';
import {MEDIA_TYPES, detectManifestType, isIndexType} from './media-types.js';

/** The largest manifest accepted from a client or an upstream. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export type Platform = {os?: string; architecture?: string; variant?: string};

/** A checked descriptor: mediaType a non-empty string, size a safe non-negative integer, digest well-formed. */
export type Descriptor = {
	mediaType: string;
	digest: Digest;
	size: number;
	/** As given; a non-empty list marks a non-distributable blob, fetched by clients from these URLs. */
	urls?: unknown[];
	/** Index entries only, as given. */
	platform?: Platform;
};

export type ParsedManifest = {
	/** `algorithm:hex` of the bytes, with the expected digest's algorithm (default sha256). */
	digest: string;
	mediaType: string;
	isIndex: boolean;
	/** Images: the config (absent only from a lenient parse of a manifest without a valid one). */
	config?: Descriptor;
	layers: Descriptor[];
	/** Indexes / manifest lists: the child manifests with their platforms. */
	children: Descriptor[];
	subject?: Descriptor;
	/** The manifest's artifactType, or for an image its config's media type. */
	artifactType?: string;
	annotations?: Record<string, string>;
	/** Config and layers the registry must hold, in manifest order. */
	blobs: Descriptor[];
	/** Config and layers with `urls`: clients fetch them elsewhere. */
	nonDistributable: Descriptor[];
	/**
	 * What the metadata store records as this manifest's references. Strict:
	 * the children, or the blobs (what a push checks the registry holds).
	 * Lenient: every digest the body names (config, layers, blobs, manifests,
	 * schema1 fsLayers), as `manifestReferences`.
	 */
	references: string[];
};

export type ManifestMode = 'strict' | 'lenient';

export type ParseManifestOptions = {
	/** strict: a client's push; lenient: an upstream's manifest for the cache. */
	mode: ManifestMode;
	/** The digest the manifest was pushed or requested by: its algorithm is used, and the bytes must match. */
	expected?: Digest | undefined;
	/** An upstream's Docker-Content-Digest: without `expected`, a sha256 one must match. */
	announced?: string | string[] | undefined;
};

const PUSHABLE: ReadonlySet<string> = new Set([
	MEDIA_TYPES.dockerManifest,
	MEDIA_TYPES.dockerManifestList,
	MEDIA_TYPES.ociManifest,
	MEDIA_TYPES.ociIndex,
]);

const MESSAGES = {
	strict: {
		tooLarge: `manifest is larger than ${MAX_MANIFEST_BYTES} bytes`,
		notJson: 'manifest is not a JSON object',
		expected: 'manifest digest does not match the reference',
	},
	lenient: {
		tooLarge: 'upstream manifest is larger than 4 MiB',
		notJson: 'upstream manifest is not JSON',
		expected: 'upstream manifest does not match the requested digest',
	},
} as const;

/** A client's mistake (strict) or the upstream's (lenient). */
function failure(mode: ManifestMode, code: ErrorCode, message: string, detail?: unknown): RegistryError {
	return mode === 'strict' ? new RegistryError(code, {message, detail}) : new UpstreamError(code, {message, detail});
}

function invalid(message: string, detail?: unknown): RegistryError {
	return failure('strict', 'MANIFEST_INVALID', message, detail);
}

export function parseManifest(content: Buffer, contentType: string | undefined, options: ParseManifestOptions): ParsedManifest {
	const {mode} = options;
	if (content.length > MAX_MANIFEST_BYTES) {
		const message = MESSAGES[mode].tooLarge;
		throw mode === 'strict' ? new TooLargeError('MANIFEST_INVALID', {message}) : new UpstreamError('MANIFEST_INVALID', {message});
	}

	const algorithm: DigestAlgorithm = options.expected?.algorithm ?? 'sha256';
	const digest = `${algorithm}:${createHash(algorithm).update(content).digest('hex')}`;
	if (mode === 'lenient') {
		verifyDigest(digest, options); // an upstream's bytes are checked before they are read
	}

	let body: unknown;
	try {
		body = JSON.parse(content.toString('utf8'));
	} catch {
		throw failure(mode, 'MANIFEST_INVALID', MESSAGES[mode].notJson);
	}

	const mediaType = mode === 'strict' ? pushedType(body, contentType) : upstreamType(body, contentType);
	if (mode === 'strict') {
		verifyDigest(digest, options); // a push's body is judged first, as pushes always were
	}

	return {digest, mediaType, ...shape(body, mediaType, mode)};
}

function verifyDigest(actual: string, {mode, expected, announced}: ParseManifestOptions): void {
	if (expected && actual !== expected.value) {
		throw failure(mode, 'DIGEST_INVALID', MESSAGES[mode].expected, {expected: expected.value, actual});
	}

	if (!expected && typeof announced === 'string' && announced.startsWith('sha256:') && announced !== actual) {
		throw failure(mode, 'DIGEST_INVALID', 'upstream manifest does not match its Docker-Content-Digest', {announced, actual});
	}
}

/** A push: schema 2, a supported type, and a Content-Type that agrees with the body. */
function pushedType(body: unknown, contentType: string | undefined): string {
	if (typeof body !== 'object' || body === null || Array.isArray(body)) {
		throw invalid(MESSAGES.strict.notJson);
	}

	const record = body as Record<string, unknown>;
	if (record['schemaVersion'] === 1) {
		throw invalid('schema1 manifests are not accepted; push with a current client (Docker schema 2 or OCI)');
	}

	if (record['schemaVersion'] !== 2) {
		throw invalid('schemaVersion must be 2');
	}

	const declared = typeof record['mediaType'] === 'string' ? record['mediaType'] : undefined;
	const headerType = contentType?.split(';')[0]?.trim().toLowerCase() || undefined;
	if (declared && headerType && declared !== headerType) {
		throw invalid(`Content-Type ${headerType} does not match the manifest's mediaType ${declared}`);
	}

	const mediaType = declared ?? headerType ?? detectManifestType(record) ?? MEDIA_TYPES.ociManifest;
	if (!PUSHABLE.has(mediaType)) {
		throw invalid(`unsupported manifest media type: ${mediaType}`);
	}

	return mediaType;
}

/** An upstream's manifest: the type its body declares or shows, else its Content-Type. */
function upstreamType(body: unknown, contentType: string | undefined): string {
	const mediaType = detectManifestType(body) ?? (contentType ?? '').split(';')[0]!.trim();
	if (!mediaType) {
		throw new UpstreamError('MANIFEST_INVALID', {message: 'upstream manifest has no media type'});
	}

	return mediaType;
}

/** Everything but digest and media type. A lenient parse leaves out what a strict one rejects. */
function shape(body: unknown, mediaType: string, mode: ManifestMode): Omit<ParsedManifest, 'digest' | 'mediaType'> {
	const record = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
	const isIndex = isIndexType(mediaType);
	const children = isIndex ? descriptors(record['manifests'], 'manifests', mode) : [];
	const config = isIndex ? undefined : descriptor(record['config'], 'config', mode);
	const layers = isIndex || (record['layers'] === undefined && mediaType === MEDIA_TYPES.ociManifest) ? [] : descriptors(record['layers'], 'layers', mode);
	const external = (blob: Descriptor) => Array.isArray(blob.urls) && blob.urls.length > 0;
	const images = [...(config ? [config] : []), ...layers];
	const blobs = images.filter(blob => !external(blob));
	const subject = record['subject'] === undefined ? undefined : descriptor(record['subject'], 'subject', mode);
	const annotations = record['annotations'];
	return {
		isIndex,
		config,
		layers,
		children,
		subject,
		artifactType: typeof record['artifactType'] === 'string' ? record['artifactType'] : config?.mediaType,
		annotations: typeof annotations === 'object' && annotations !== null ? (annotations as Record<string, string>) : undefined,
		blobs,
		nonDistributable: images.filter(blob => external(blob)),
		references: mode === 'strict' ? [...new Set((isIndex ? children : blobs).map(entry => entry.digest.value))] : manifestReferences(body),
	};
}

/** A checked descriptor; what is wrong with it is an error (strict) or leaves it out (lenient). */
function descriptor(value: unknown, where: string, mode: ManifestMode): Descriptor | undefined {
	const reject = (message: string, detail?: unknown) => {
		if (mode === 'strict') {
			throw invalid(message, detail);
		}

		return undefined;
	};

	if (typeof value !== 'object' || value === null) {
		return reject(`${where} is not a descriptor`);
	}

	const record = value as Record<string, unknown>;
	if (typeof record['mediaType'] !== 'string' || record['mediaType'] === '') {
		return reject(`${where}.mediaType is missing`);
	}

	if (typeof record['size'] !== 'number' || !Number.isSafeInteger(record['size']) || record['size'] < 0) {
		return reject(`${where}.size is not a non-negative integer`);
	}

	if (typeof record['digest'] !== 'string') {
		return reject(`${where}.digest is missing`);
	}

	let digest: Digest;
	try {
		digest = parseDigest(record['digest']);
	} catch {
		return reject(`${where}.digest is not a valid digest`, {digest: record['digest']});
	}

	const entry: Descriptor = {mediaType: record['mediaType'], digest, size: record['size']};
	if (Array.isArray(record['urls'])) {
		entry.urls = record['urls'] as unknown[];
	}

	if (record['platform'] !== undefined) {
		entry.platform = record['platform'] as Platform;
	}

	return entry;
}

function descriptors(value: unknown, where: string, mode: ManifestMode): Descriptor[] {
	if (!Array.isArray(value)) {
		if (mode === 'strict') {
			throw invalid(`${where} is not an array`);
		}

		return [];
	}

	return value.flatMap((entry, index) => descriptor(entry, `${where}[${index}]`, mode) ?? []);
}

type Named = Record<string, unknown> & {digest: string};

/** Entries of a list that name a digest: all references and index children ask of an upstream's descriptor. */
function named(list: unknown): Named[] {
	return Array.isArray(list) ? (list as unknown[]).filter((entry): entry is Named => typeof (entry as Partial<Named> | null | undefined)?.digest === 'string') : [];
}

/** Every digest a manifest body names: config, layers, blobs, child manifests and schema1 fsLayers. */
export function manifestReferences(body: unknown): string[] {
	if (typeof body !== 'object' || body === null) {
		return [];
	}

	const record = body as Record<string, unknown>;
	const references = [
		...named([record['config']]),
		...named(record['layers']),
		...named(record['blobs']),
		...named(record['manifests']),
		// schema1
		...named(Array.isArray(record['fsLayers']) ? (record['fsLayers'] as unknown[]).map(layer => ({digest: (layer as {blobSum?: unknown} | null)?.blobSum})) : []),
	];
	return [...new Set(references.map(entry => entry.digest))];
}

/** The children of an index / manifest list with their platforms, as named (unchecked: for reading stored or upstream indexes). */
export function indexChildren(body: unknown): Array<{digest: string; mediaType?: string; platform?: Platform}> {
	if (typeof body !== 'object' || body === null) {
		return [];
	}

	return named((body as Record<string, unknown>)['manifests']).map(entry => ({
		digest: entry.digest,
		mediaType: typeof entry['mediaType'] === 'string' ? entry['mediaType'] : undefined,
		platform: (entry['platform'] as Platform | undefined) ?? undefined,
	}));
}
