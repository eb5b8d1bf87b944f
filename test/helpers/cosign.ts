/**
 * Signs an image the way `cosign sign --key` does, without cosign: a
 * simple-signing payload naming the digest, signed with an ECDSA P-256 key
 * (what `cosign generate-key-pair` makes), pushed as an OCI manifest under
 * the tag `sha256-<hex>.sig` with the base64 signature in the layer's
 * `dev.cosignproject.cosign/signature` annotation.
 */
import {type KeyObject, generateKeyPairSync, sign} from 'node:crypto';
import {type Blob, type BuiltImage, mediaTypes, pushImage, sha256} from './images.js';

export type KeyPair = {privateKey: KeyObject; publicPem: string};

export function generateCosignKey(): KeyPair {
	const {privateKey, publicKey} = generateKeyPairSync('ec', {namedCurve: 'prime256v1'});
	return {privateKey, publicPem: publicKey.export({type: 'spki', format: 'pem'}).toString()};
}

/** The cosign signature manifest for `digest`; `names` is the digest the payload names (default: `digest`). */
export function signatureImage(repository: string, digest: string, key: KeyObject, names = digest): BuiltImage {
	const payload = Buffer.from(
		JSON.stringify({
			critical: {identity: {'docker-reference': repository}, image: {'docker-manifest-digest': names}, type: 'cosign container image signature'},
			optional: null,
		}),
	);
	const signature = sign('sha256', payload, key).toString('base64');
	const layer: Blob = {digest: sha256(payload), bytes: payload, mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json'};
	const configBytes = Buffer.from(JSON.stringify({architecture: '', config: {}, created: '0001-01-01T00:00:00Z', os: '', rootfs: {type: 'layers', diff_ids: [sha256(payload)]}}));
	const config: Blob = {digest: sha256(configBytes), bytes: configBytes, mediaType: mediaTypes.oci.config};
	const manifest = Buffer.from(
		JSON.stringify({
			schemaVersion: 2,
			mediaType: mediaTypes.oci.manifest,
			config: {mediaType: config.mediaType, size: configBytes.length, digest: config.digest},
			layers: [{mediaType: layer.mediaType, size: payload.length, digest: layer.digest, annotations: {'dev.cosignproject.cosign/signature': signature}}],
		}),
	);
	return {manifest, digest: sha256(manifest), mediaType: mediaTypes.oci.manifest, config, layers: [layer], arch: ''};
}

/** Pushes the signature of `digest` to `repo` under its cosign tag. */
export async function pushSignature(registryUrl: string, repo: string, digest: string, key: KeyObject, names = digest): Promise<BuiltImage> {
	const image = signatureImage(repo, digest, key, names);
	await pushImage(registryUrl, repo, `${digest.replace(':', '-')}.sig`, image);
	return image;
}
