/**
 * Writes to local namespaces: manifest PUT (validated, every reference
 * checked, stored byte for byte), deletes, and cross-repository mounts.
 */
import {type LocalTarget, type Target} from '../service/namespaces.js';
import {type ReadIndex, type ReferrerRecord, type WriteIndex} from '../store/metadata.js';
import {RegistryError} from '../v2/errors.js';
import {type Digest, type Reference} from '../v2/grammar.js';
import {parseManifest} from '../v2/manifest.js';

export type PutManifestResult = {digest: string; mediaType: string; subject?: string};

export class LocalWriter {
	constructor(private readonly metadata: ReadIndex & WriteIndex) {}

	async putManifest(target: LocalTarget, reference: Reference, content: Buffer, contentType: string | undefined): Promise<PutManifestResult> {
		const repo = target.repo;
		const manifest = parseManifest(content, contentType, {mode: 'strict', expected: reference.kind === 'digest' ? reference.digest : undefined});
		const {digest, mediaType, subject} = manifest;
		for (const child of manifest.children) {
			if (!(await this.metadata.hasRepoManifest(repo, child.digest.value))) {
				throw new RegistryError('MANIFEST_BLOB_UNKNOWN', {detail: {digest: child.digest.value}});
			}
		}

		// Non-distributable layers are not among the blobs: clients fetch them from their URLs.
		for (const blob of manifest.blobs) {
			const known = (await this.metadata.hasRepoBlob(repo, blob.digest.value)) ? await this.metadata.getBlob(blob.digest.value) : undefined;
			if (!known) {
				throw new RegistryError('MANIFEST_BLOB_UNKNOWN', {detail: {digest: blob.digest.value}});
			}

			if (known.size !== blob.size) {
				throw new RegistryError('MANIFEST_INVALID', {message: `descriptor size ${blob.size} does not match blob ${blob.digest.value} (${known.size} bytes)`});
			}
		}

		await this.metadata.putManifest({
			repo,
			manifest: {digest, mediaType, content},
			tag: reference.kind === 'tag' ? reference.tag : undefined,
			pushed: true,
			references: manifest.references,
			now: Date.now(),
		});
		if (subject) {
			const referrer: ReferrerRecord = {digest, mediaType, size: content.length};
			if (manifest.artifactType !== undefined) {
				referrer.artifactType = manifest.artifactType;
			}

			if (manifest.annotations !== undefined) {
				referrer.annotations = manifest.annotations;
			}

			await this.metadata.putReferrer(repo, subject.digest.value, referrer);
		}

		return {digest, mediaType, subject: subject?.digest.value};
	}

	/** Deletes a tag, or a manifest with every tag of the repository that points at it; returns those tags. */
	async deleteManifest(target: LocalTarget, reference: Reference): Promise<{untagged: string[]}> {
		const untagged: string[] = [];
		if (reference.kind === 'digest') {
			for (const tag of await this.metadata.listTags(target.repo)) {
				if ((await this.metadata.getTag(target.repo, tag))?.digest === reference.digest.value) {
					untagged.push(tag);
				}
			}
		}

		const deleted =
			reference.kind === 'tag'
				? await this.metadata.deleteTag(target.repo, reference.tag)
				: await this.metadata.deleteRepoManifest(target.repo, reference.digest.value);
		if (!deleted) {
			throw new RegistryError('MANIFEST_UNKNOWN', {detail: reference.kind === 'tag' ? {tag: reference.tag} : {digest: reference.digest.value}});
		}

		return {untagged};
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
