import test from 'ava';
import {createPublicKey} from 'node:crypto';
import {SIMPLE_SIGNING, signatureTag, verifySimpleSigning} from '../../src/policy/cosign.js';
import {type SignatureSource, SignaturePolicy} from '../../src/policy/signature-policy.js';
import {type CachedTarget} from '../../src/service/namespaces.js';
import {RegistryError} from '../../src/v2/errors.js';
import {generateCosignKey, signatureImage} from '../helpers/cosign.js';
import {buildImage, buildIndex} from '../helpers/images.js';

const trusted = generateCosignKey();
const other = generateCosignKey();
const keys = [{file: 'cosign.pub', key: createPublicKey(trusted.publicPem)}];

function payloadOf(signature: ReturnType<typeof signatureImage>): {payload: Buffer; signature: string} {
	const body = JSON.parse(signature.manifest.toString('utf8')) as {layers: Array<{annotations: Record<string, string>}>};
	return {payload: signature.layers[0]!.bytes, signature: body.layers[0]!.annotations['dev.cosignproject.cosign/signature']!};
}

const digest = `sha256:${'a'.repeat(64)}`;

test('verifier: a signature by the trusted key over a payload naming the digest verifies', t => {
	const verdict = verifySimpleSigning({...payloadOf(signatureImage('library/app', digest, trusted.privateKey)), digest, keys});
	t.deepEqual(verdict, {ok: true, key: 'cosign.pub'});
});

test('verifier: another key, another digest, a tampered payload and garbage are refused with the reason', t => {
	t.deepEqual(verifySimpleSigning({...payloadOf(signatureImage('library/app', digest, other.privateKey)), digest, keys}), {
		ok: false,
		reason: 'signature does not verify with any trusted key',
	});
	const otherDigest = `sha256:${'b'.repeat(64)}`;
	t.deepEqual(verifySimpleSigning({...payloadOf(signatureImage('library/app', digest, trusted.privateKey, otherDigest)), digest, keys}), {
		ok: false,
		reason: `signature payload names ${otherDigest}`,
	});
	const signed = payloadOf(signatureImage('library/app', digest, trusted.privateKey));
	const tampered = Buffer.from(signed.payload.toString('utf8').replace('cosign container image signature', 'cosign container image signaturf'));
	t.false(verifySimpleSigning({payload: tampered, signature: signed.signature, digest, keys}).ok);
	t.false(verifySimpleSigning({payload: signed.payload, signature: 'not base64 at all', digest, keys}).ok);
	t.deepEqual(verifySimpleSigning({payload: Buffer.from('{'), signature: signed.signature, digest, keys}), {ok: false, reason: 'signature payload is not JSON'});
	t.is(signatureTag(digest), `sha256-${'a'.repeat(64)}.sig`);
});

/** A source holding signature manifests by tag and by digest, payloads by digest, and referrers. */
function fakeSource(entries: Array<ReturnType<typeof signatureImage> & {tag?: string}>, referrers: Record<string, string[]> = {}): SignatureSource & {asked: string[]} {
	const asked: string[] = [];
	return {
		asked,
		async manifest(_target, reference) {
			const wanted = reference.kind === 'tag' ? reference.tag : reference.digest.value;
			asked.push(wanted);
			const found = entries.find(entry => entry.tag === wanted || entry.digest === wanted);
			if (!found) {
				throw new RegistryError('MANIFEST_UNKNOWN');
			}

			return {digest: found.digest, mediaType: found.mediaType, content: found.manifest};
		},
		async blob(_target, blobDigest) {
			const layer = entries.flatMap(entry => entry.layers).find(entry => entry.digest === blobDigest.value);
			if (!layer) {
				throw new RegistryError('BLOB_UNKNOWN');
			}

			return layer.bytes;
		},
		async referrers(_target, subject) {
			return referrers[subject] ?? [];
		},
	};
}

function target(policy = true): CachedTarget {
	return {
		kind: 'cached',
		upstream: {name: 'docker.io', url: 'http://127.0.0.1:1', tagTtlMs: 1, timeoutMs: 1, revalidateTimeoutMs: 1, offline: false, libraryPrefix: true, ratelimitReserve: 0},
		remoteName: 'library/app',
		repo: {registry: 'docker.io', name: 'library/app'},
		clientName: 'app',
		...(policy ? {policy: {keys}} : {}),
	};
}

test('policy: the cosign tag or a referrer with a trusted signature admits; none, a wrong key or another digest is DENIED with the reasons', async t => {
	const image = await buildImage();
	const record = {digest: image.digest, mediaType: image.mediaType, content: image.manifest};
	const decisions: string[] = [];
	const signed = new SignaturePolicy(fakeSource([{...signatureImage('library/app', image.digest, trusted.privateKey), tag: signatureTag(image.digest)}]), (_, decision) =>
		decisions.push(decision),
	);
	await t.notThrowsAsync(signed.admit(target(), record));

	const viaReferrer = signatureImage('library/app', image.digest, trusted.privateKey);
	await t.notThrowsAsync(new SignaturePolicy(fakeSource([viaReferrer], {[image.digest]: [viaReferrer.digest]})).admit(target(), record));

	const none = fakeSource([]);
	const denied = await t.throwsAsync(new SignaturePolicy(none, (_, decision) => decisions.push(decision)).admit(target(), record), {instanceOf: RegistryError});
	t.is(denied.code, 'DENIED');
	t.is(denied.status, 403);
	t.is(denied.message, `no signature by a trusted key for ${image.digest}`);
	t.deepEqual(none.asked, [signatureTag(image.digest)]);
	t.deepEqual(decisions, ['allowed', 'denied']);

	const wrongKey = fakeSource([{...signatureImage('library/app', image.digest, other.privateKey), tag: signatureTag(image.digest)}]);
	const wrong = await t.throwsAsync(new SignaturePolicy(wrongKey).admit(target(), record), {instanceOf: RegistryError});
	t.regex(JSON.stringify(wrong.detail), /signature does not verify with any trusted key/);

	const otherDigest = `sha256:${'c'.repeat(64)}`;
	const misnamed = fakeSource([{...signatureImage('library/app', image.digest, trusted.privateKey, otherDigest), tag: signatureTag(image.digest)}]);
	const named = await t.throwsAsync(new SignaturePolicy(misnamed).admit(target(), record), {instanceOf: RegistryError});
	t.regex(JSON.stringify(named.detail), new RegExp(`signature payload names ${otherDigest}`));

	// No policy on the target: nothing is asked.
	const untouched = fakeSource([]);
	await t.notThrowsAsync(new SignaturePolicy(untouched).admit(target(false), record));
	t.deepEqual(untouched.asked, []);
});

test('policy: a signed index covers the children it lists; a child alone needs its own signature; signature manifests pass', async t => {
	const index = buildIndex([await buildImage({arch: 'amd64'}), await buildImage({arch: 'arm64'})]);
	const child = index.images[0]!;
	const childRecord = {digest: child.digest, mediaType: child.mediaType, content: child.manifest};
	const source = fakeSource([{...signatureImage('library/app', index.digest, trusted.privateKey), tag: signatureTag(index.digest)}]);
	const policy = new SignaturePolicy(source);
	await t.throwsAsync(policy.admit(target(), childRecord), {instanceOf: RegistryError, message: /no signature by a trusted key/});
	await t.notThrowsAsync(policy.admit(target(), {digest: index.digest, mediaType: index.mediaType, content: index.manifest}));
	await t.notThrowsAsync(policy.admit(target(), childRecord));

	const signature = signatureImage('library/app', child.digest, other.privateKey);
	await t.notThrowsAsync(new SignaturePolicy(fakeSource([])).admit(target(), {digest: signature.digest, mediaType: signature.mediaType, content: signature.manifest}));
	t.is(SIMPLE_SIGNING, 'application/vnd.dev.cosign.simplesigning.v1+json');
});
