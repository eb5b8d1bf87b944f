/**
 * cosign's key-based signatures, checked with Node's crypto. A signature is
 * an OCI manifest (under the tag `sha256-<hex>.sig`, or a referrer of the
 * image with the cosign artifact type) whose layers are "simple signing"
 * payloads: JSON naming the signed manifest's digest under
 * `critical.image.docker-manifest-digest`, signed (DER ECDSA, or RSA/Ed25519
 * by key type) over the payload blob's bytes, the base64 signature in the
 * layer's `dev.cosignproject.cosign/signature` annotation.
 */
import {type KeyObject, verify} from 'node:crypto';
import {type ParsedManifest} from '../v2/manifest.js';

export const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const COSIGN_SIGNATURE_ARTIFACT = 'application/vnd.dev.cosign.artifact.sig.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';

/** The cosign tag of a digest: sha256:ab.. → sha256-ab...sig */
export function signatureTag(digest: string): string {
	return `${digest.replace(':', '-')}.sig`;
}

/** A cosign signature manifest: simple-signing layers only (it carries no image content). */
export function isSignatureManifest(parsed: ParsedManifest): boolean {
	return !parsed.isIndex && parsed.layers.length > 0 && parsed.layers.every(layer => layer.mediaType === SIMPLE_SIGNING);
}

export type Verdict = {ok: true; key: string} | {ok: false; reason: string};

/** Checks one simple-signing payload and its base64 signature against the trusted keys, for `digest`. */
export function verifySimpleSigning(input: {payload: Buffer; signature: string; digest: string; keys: Array<{file: string; key: KeyObject}>}): Verdict {
	let named: unknown;
	try {
		const body = JSON.parse(input.payload.toString('utf8')) as {critical?: {image?: {'docker-manifest-digest'?: unknown}}};
		named = body.critical?.image?.['docker-manifest-digest'];
	} catch {
		return {ok: false, reason: 'signature payload is not JSON'};
	}

	if (named !== input.digest) {
		return {ok: false, reason: `signature payload names ${typeof named === 'string' ? named : 'no digest'}`};
	}

	const signature = Buffer.from(input.signature, 'base64');
	for (const {file, key} of input.keys) {
		const algorithm = key.asymmetricKeyType === 'ed25519' ? null : 'sha256';
		try {
			if (verify(algorithm, input.payload, key, signature)) {
				return {ok: true, key: file};
			}
		} catch {
			// a malformed signature for this key type: try the next key
		}
	}

	return {ok: false, reason: 'signature does not verify with any trusted key'};
}
