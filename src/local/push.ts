/**
 * Writes to local namespaces: manifest PUT (validated, every reference
 * checked, stored byte for byte), deletes, and cross-repository mounts.
 */
import {createHash} from 'node:crypto';
import {type LocalTarget, type Target} from '../service/namespaces.js';
import {type MetadataStore, type ReferrerRecord} from '../store/metadata.js';
import {RegistryError} from '../v2/errors.js';
import {type Digest, type Reference, parseDigest} from '../v2/grammar.js';
import {MEDIA_TYPES} from '../v2/media-types.js';

const PUSHABLE: ReadonlySet<string> = new Set([
	MEDIA_TYPES.dockerManifest,
	MEDIA_TYPES.dockerManifestList,
	MEDIA_TYPES.ociManifest,
	MEDIA_TYPES.ociIndex,
]);

type Descriptor = {mediaType: string; digest: Digest; size: number; urls?: unknown; artifactType?: unknown};

export type PutManifestResult = {digest: string; mediaType: string; subject?: string};

function invalid(message: string, detail?: unknown): RegistryError {
	return new RegistryError('MANIFEST_INVALID', {message, detail});
}

function descriptor(value: unknown, where: string): Descriptor {
	if (typeof value !== 'object' || value === null) {
		throw invalid(`${where} is not a descriptor`);
	}

	const record = value as Record<string, unknown>;
	if (typeof record['mediaType'] !== 'string' || record['mediaType'] === '') {
		throw invalid(`${where}.mediaType is missing`);
	}

	if (typeof record['size'] !== 'number' || !Number.isSafeInteger(record['size']) || record['size'] < 0) {
		throw invalid(`${where}.size is not a non-negative integer`);
	}

	if (typeof record['digest'] !== 'string') {
		throw invalid(`${where}.digest is missing`);
	}

	let digest: Digest;
	try {
		digest = parseDigest(record['digest']);
	} catch {
		throw invalid(`${where}.digest is not a valid digest`, {digest: record['digest']});
	}

	return {mediaType: record['mediaType'], digest, size: record['size'], urls: record['urls'], artifactType: record['artifactType']};
}

function descriptors(value: unknown, where: string): Descriptor[] {
	if (!Array.isArray(value)) {
		throw invalid(`${where} is not an array`);
	}

	return value.map((entry, index) => descriptor(entry, `${where}[${index}]`));
}

export class LocalWriter {
	constructor(private readonly metadata: MetadataStore) {}

	async putManifest(target: LocalTarget, reference: Reference, content: Buffer, contentType: string | undefined): Promise<PutManifestResult> {
		const repo = target.repo;
		let body: Record<string, unknown>;
		try {
			const parsed: unknown = JSON.parse(content.toString('utf8'));
			if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
				throw new Error('not an object');
			}

			body = parsed as Record<string, unknown>;
		} catch {
			throw invalid('manifest is not a JSON object');
		}

		if (body['schemaVersion'] === 1) {
			throw invalid('schema1 manifests are not accepted; push with a current client (Docker schema 2 or OCI)');
		}

		if (body['schemaVersion'] !== 2) {
			throw invalid('schemaVersion must be 2');
		}

		const declared = typeof body['mediaType'] === 'string' ? body['mediaType'] : undefined;
		const headerType = contentType?.split(';')[0]?.trim().toLowerCase() || undefined;
		if (declared && headerType && declared !== headerType) {
			throw invalid(`Content-Type ${headerType} does not match the manifest's mediaType ${declared}`);
		}

		const mediaType = declared ?? headerType ?? (Array.isArray(body['manifests']) ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest);
		if (!PUSHABLE.has(mediaType)) {
			throw invalid(`unsupported manifest media type: ${mediaType}`);
		}

		const algorithm = reference.kind === 'digest' ? reference.digest.algorithm : 'sha256';
		const digest = `${algorithm}:${createHash(algorithm).update(content).digest('hex')}`;
		if (reference.kind === 'digest' && digest !== reference.digest.value) {
			throw new RegistryError('DIGEST_INVALID', {message: 'manifest digest does not match the reference', detail: {expected: reference.digest.value, actual: digest}});
		}

		const isIndex = mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerManifestList;
		const references: string[] = [];
		let artifactType = typeof body['artifactType'] === 'string' ? body['artifactType'] : undefined;
		if (isIndex) {
			for (const child of descriptors(body['manifests'], 'manifests')) {
				if (!(await this.metadata.hasRepoManifest(repo, child.digest.value))) {
					throw new RegistryError('MANIFEST_BLOB_UNKNOWN', {detail: {digest: child.digest.value}});
				}

				references.push(child.digest.value);
			}
		} else {
			const config = descriptor(body['config'], 'config');
			const layers = body['layers'] === undefined && mediaType === MEDIA_TYPES.ociManifest ? [] : descriptors(body['layers'], 'layers');
			for (const blob of [config, ...layers]) {
				if (Array.isArray(blob.urls) && blob.urls.length > 0) {
					continue; // non-distributable layer: fetched by clients from its URLs
				}

				const known = (await this.metadata.hasRepoBlob(repo, blob.digest.value)) ? await this.metadata.getBlob(blob.digest.value) : undefined;
				if (!known) {
					throw new RegistryError('MANIFEST_BLOB_UNKNOWN', {detail: {digest: blob.digest.value}});
				}

				if (known.size !== blob.size) {
					throw invalid(`descriptor size ${blob.size} does not match blob ${blob.digest.value} (${known.size} bytes)`);
				}

				references.push(blob.digest.value);
			}

			artifactType ??= config.mediaType;
		}

		const subject = body['subject'] === undefined ? undefined : descriptor(body['subject'], 'subject');
		await this.metadata.putManifest({
			repo,
			manifest: {digest, mediaType, content},
			tag: reference.kind === 'tag' ? reference.tag : undefined,
			pushed: true,
			references,
			now: Date.now(),
		});
		if (subject) {
			const referrer: ReferrerRecord = {digest, mediaType, size: content.length};
			if (artifactType !== undefined) {
				referrer.artifactType = artifactType;
			}

			if (typeof body['annotations'] === 'object' && body['annotations'] !== null) {
				referrer.annotations = body['annotations'] as Record<string, string>;
			}

			await this.metadata.putReferrer(repo, subject.digest.value, referrer);
		}

		return {digest, mediaType, subject: subject?.digest.value};
	}

	async deleteManifest(target: LocalTarget, reference: Reference): Promise<void> {
		const deleted =
			reference.kind === 'tag'
				? await this.metadata.deleteTag(target.repo, reference.tag)
				: await this.metadata.deleteRepoManifest(target.repo, reference.digest.value);
		if (!deleted) {
			throw new RegistryError('MANIFEST_UNKNOWN', {detail: reference.kind === 'tag' ? {tag: reference.tag} : {digest: reference.digest.value}});
		}
	}

	async deleteBlob(target: LocalTarget, digest: Digest): Promise<void> {
		if (!(await this.metadata.unlinkBlob(target.repo, digest.value))) {
			throw new RegistryError('BLOB_UNKNOWN', {detail: {digest: digest.value}});
		}
	}

	/** Links a blob another repository holds. False when the source cannot provide it. */
	async mount(target: LocalTarget, digest: Digest, from: Target | undefined): Promise<boolean> {
		if (!from || !(await this.metadata.hasRepoBlob(from.repo, digest.value))) {
			return false;
		}

		const blob = await this.metadata.getBlob(digest.value);
		if (!blob) {
			return false;
		}

		// Pushed content references it now, so it must never be evicted.
		await this.metadata.putBlob(target.repo, {digest: digest.value, size: blob.size, pushed: true, now: Date.now()});
		return true;
	}
}
