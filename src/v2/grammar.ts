/**
 * The distribution-spec grammar for repository names, tags and digests.
 * Parsers throw RegistryError so a handler can call them directly.
 */
import {RegistryError} from './errors.js';

const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;
export const MAX_NAME_LENGTH = 255;

const HEX_LENGTHS = {sha256: 64, sha512: 128} as const;
export type DigestAlgorithm = keyof typeof HEX_LENGTHS;

export type Digest = {algorithm: DigestAlgorithm; hex: string; value: string};

export function isValidName(name: string): boolean {
	if (name.length === 0 || name.length > MAX_NAME_LENGTH) {
		return false;
	}

	return name.split('/').every(component => COMPONENT.test(component));
}

export function parseName(name: string): string {
	if (!isValidName(name)) {
		throw new RegistryError('NAME_INVALID', {detail: {name: name.slice(0, 300)}});
	}

	return name;
}

export function isTag(reference: string): boolean {
	return TAG.test(reference);
}

export function isDigestLike(reference: string): boolean {
	return reference.includes(':');
}

/** Parses `sha256:<64 hex>` (or sha512); anything else is DIGEST_INVALID. */
export function parseDigest(value: string): Digest {
	const match = DIGEST.exec(value);
	if (!match) {
		throw new RegistryError('DIGEST_INVALID', {message: 'invalid digest', detail: {digest: value.slice(0, 200)}});
	}

	const algorithm = match[1]!;
	const hex = match[2]!;
	if (!Object.hasOwn(HEX_LENGTHS, algorithm)) {
		throw new RegistryError('DIGEST_INVALID', {message: 'unsupported digest algorithm', detail: {algorithm}});
	}

	const length = HEX_LENGTHS[algorithm as DigestAlgorithm];
	if (hex.length !== length || !/^[a-f0-9]+$/.test(hex)) {
		throw new RegistryError('DIGEST_INVALID', {message: 'invalid digest encoding', detail: {digest: value.slice(0, 200)}});
	}

	return {algorithm: algorithm as DigestAlgorithm, hex, value};
}

export type Reference = {kind: 'tag'; tag: string} | {kind: 'digest'; digest: Digest};

/** A manifest reference is a tag or a digest. */
export function parseReference(reference: string): Reference {
	if (isDigestLike(reference)) {
		return {kind: 'digest', digest: parseDigest(reference)};
	}

	if (!isTag(reference)) {
		throw new RegistryError('TAG_INVALID', {message: 'invalid tag', detail: {tag: reference.slice(0, 200)}});
	}

	return {kind: 'tag', tag: reference};
}
