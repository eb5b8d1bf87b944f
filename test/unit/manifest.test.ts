import {createHash} from 'node:crypto';
import test, {type ExecutionContext} from 'ava';
import {RegistryError, TooLargeError, UpstreamError} from '../../src/v2/errors.js';
import {parseDigest} from '../../src/v2/grammar.js';
import {MAX_MANIFEST_BYTES, type ManifestMode, type ParseManifestOptions, indexChildren, parseManifest} from '../../src/v2/manifest.js';
import {MEDIA_TYPES} from '../../src/v2/media-types.js';

const d = (char: string) => 'sha256:' + char.repeat(64);
const bytes = (body: unknown) => Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
const sha256 = (content: Buffer) => `sha256:${createHash('sha256').update(content).digest('hex')}`;
const strict: ParseManifestOptions = {mode: 'strict'};
const lenient: ParseManifestOptions = {mode: 'lenient'};
const CONFIG = 'application/vnd.docker.container.image.v1+json';
const LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const FOREIGN = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';

const dockerImage = {
	schemaVersion: 2,
	mediaType: MEDIA_TYPES.dockerManifest,
	config: {mediaType: CONFIG, size: 7, digest: d('c')},
	layers: [
		{mediaType: LAYER, size: 10, digest: d('1')},
		{mediaType: LAYER, size: 20, digest: d('2')},
	],
};

/** The error a parse throws: class, status, code, message and detail, all exact. */
function rejects(
	t: ExecutionContext,
	body: unknown,
	contentType: string | undefined,
	options: ParseManifestOptions,
	expected: {type?: typeof RegistryError; status: number; code: string; message: string; detail?: unknown},
): void {
	const error = t.throws(() => parseManifest(bytes(body), contentType, options));
	t.true(error instanceof (expected.type ?? RegistryError), error?.name);
	t.like(error, {status: expected.status, code: expected.code, message: expected.message});
	t.deepEqual((error as RegistryError).detail, expected.detail);
	if (!expected.type) {
		t.is(error?.constructor, RegistryError);
	}
}

test('Docker schema2 manifest', t => {
	const content = bytes(dockerImage);
	const parsed = parseManifest(content, `${MEDIA_TYPES.dockerManifest}; charset=utf-8`, strict);
	t.is(parsed.digest, sha256(content));
	t.is(parsed.mediaType, MEDIA_TYPES.dockerManifest);
	t.false(parsed.isIndex);
	t.deepEqual(parsed.config, {mediaType: CONFIG, size: 7, digest: parseDigest(d('c'))});
	t.deepEqual(
		parsed.layers.map(layer => [layer.mediaType, layer.size, layer.digest.value]),
		[
			[LAYER, 10, d('1')],
			[LAYER, 20, d('2')],
		],
	);
	t.deepEqual(parsed.blobs.map(blob => blob.digest.value), [d('c'), d('1'), d('2')]);
	t.deepEqual(parsed.nonDistributable, []);
	t.deepEqual(parsed.children, []);
	t.is(parsed.subject, undefined);
	t.is(parsed.artifactType, CONFIG);
	t.deepEqual(parsed.references, [d('c'), d('1'), d('2')]);
	// Lenient reads the same manifest the same way, references as manifestReferences.
	const upstream = parseManifest(content, undefined, lenient);
	t.deepEqual({...upstream}, {...parsed});
});

test('OCI manifest with subject, artifactType and annotations; no mediaType in the body, none in the header', t => {
	const body = {
		schemaVersion: 2,
		artifactType: 'application/vnd.example.sbom',
		config: {mediaType: 'application/vnd.oci.empty.v1+json', size: 2, digest: d('e')},
		layers: [{mediaType: 'application/spdx+json', size: 100, digest: d('3')}],
		subject: {mediaType: MEDIA_TYPES.ociManifest, size: 500, digest: d('7')},
		annotations: {'org.opencontainers.image.created': '2024-01-01T00:00:00Z'},
	};
	const parsed = parseManifest(bytes(body), undefined, strict);
	t.is(parsed.mediaType, MEDIA_TYPES.ociManifest);
	t.is(parsed.artifactType, 'application/vnd.example.sbom');
	t.deepEqual(parsed.subject, {mediaType: MEDIA_TYPES.ociManifest, size: 500, digest: parseDigest(d('7'))});
	t.deepEqual(parsed.annotations, {'org.opencontainers.image.created': '2024-01-01T00:00:00Z'});
	t.deepEqual(parsed.references, [d('e'), d('3')], 'the subject is not a reference');
	// An OCI manifest may leave layers out.
	const bare = parseManifest(bytes({schemaVersion: 2, config: body.config}), MEDIA_TYPES.ociManifest, strict);
	t.deepEqual(bare.layers, []);
	t.is(bare.artifactType, 'application/vnd.oci.empty.v1+json');
});

test('OCI index with platforms', t => {
	const body = {
		schemaVersion: 2,
		mediaType: MEDIA_TYPES.ociIndex,
		manifests: [
			{mediaType: MEDIA_TYPES.ociManifest, size: 10, digest: d('a'), platform: {os: 'linux', architecture: 'amd64'}},
			{mediaType: MEDIA_TYPES.ociManifest, size: 11, digest: d('b'), platform: {os: 'linux', architecture: 'arm64', variant: 'v8'}},
			{mediaType: MEDIA_TYPES.ociManifest, size: 12, digest: d('a'), platform: {os: 'linux', architecture: 'amd64'}},
		],
	};
	const parsed = parseManifest(bytes(body), MEDIA_TYPES.ociIndex, strict);
	t.true(parsed.isIndex);
	t.is(parsed.config, undefined);
	t.deepEqual(parsed.layers, []);
	t.deepEqual(parsed.blobs, []);
	t.deepEqual(
		parsed.children.map(child => [child.digest.value, child.size, child.platform]),
		[
			[d('a'), 10, {os: 'linux', architecture: 'amd64'}],
			[d('b'), 11, {os: 'linux', architecture: 'arm64', variant: 'v8'}],
			[d('a'), 12, {os: 'linux', architecture: 'amd64'}],
		],
	);
	t.deepEqual(parsed.references, [d('a'), d('b')]);
	t.is(parsed.artifactType, undefined);
	t.deepEqual(indexChildren(body).map(child => child.platform?.architecture), ['amd64', 'arm64', 'amd64']);
	// Without a mediaType anywhere, `manifests` makes it an OCI index.
	t.is(parseManifest(bytes({schemaVersion: 2, manifests: body.manifests}), undefined, strict).mediaType, MEDIA_TYPES.ociIndex);
});

test('Docker manifest list: every child must be a valid descriptor', t => {
	const body = {
		schemaVersion: 2,
		mediaType: MEDIA_TYPES.dockerManifestList,
		manifests: [{mediaType: MEDIA_TYPES.dockerManifest, size: 10, digest: d('a'), platform: {os: 'linux', architecture: 'amd64'}}],
	};
	const parsed = parseManifest(bytes(body), MEDIA_TYPES.dockerManifestList, strict);
	t.true(parsed.isIndex);
	t.is(parsed.mediaType, MEDIA_TYPES.dockerManifestList);
	t.deepEqual(parsed.references, [d('a')]);
	rejects(t, {...body, manifests: [...body.manifests, {mediaType: MEDIA_TYPES.dockerManifest, digest: d('b')}]}, undefined, strict, {
		status: 400,
		code: 'MANIFEST_INVALID',
		message: 'manifests[1].size is not a non-negative integer',
	});
	rejects(t, {...body, manifests: 'x'}, undefined, strict, {status: 400, code: 'MANIFEST_INVALID', message: 'manifests is not an array'});
	// Lenient leaves the bad entry out of the children but references what is named.
	const upstream = parseManifest(bytes({...body, manifests: [...body.manifests, {digest: d('b')}]}), undefined, lenient);
	t.deepEqual(upstream.children.map(child => child.digest.value), [d('a')]);
	t.deepEqual(upstream.references, [d('a'), d('b')]);
});

test('schema1: rejected on push, its fsLayers referenced from an upstream', t => {
	const body = {schemaVersion: 1, name: 'library/x', tag: 'latest', fsLayers: [{blobSum: d('5')}, {blobSum: d('6')}, {blobSum: d('5')}], signatures: [{}]};
	rejects(t, body, MEDIA_TYPES.dockerManifestV1Signed, strict, {
		status: 400,
		code: 'MANIFEST_INVALID',
		message: 'schema1 manifests are not accepted; push with a current client (Docker schema 2 or OCI)',
	});
	rejects(t, {...body, schemaVersion: 3}, undefined, strict, {status: 400, code: 'MANIFEST_INVALID', message: 'schemaVersion must be 2'});
	const upstream = parseManifest(bytes(body), 'application/json', lenient);
	t.is(upstream.mediaType, MEDIA_TYPES.dockerManifestV1Signed);
	t.false(upstream.isIndex);
	t.deepEqual(upstream.references, [d('5'), d('6')]);
	t.deepEqual(upstream.blobs, []);
});

test('Content-Type that contradicts the mediaType', t => {
	rejects(t, dockerImage, `${MEDIA_TYPES.ociManifest}; charset=utf-8`, strict, {
		status: 400,
		code: 'MANIFEST_INVALID',
		message: `Content-Type ${MEDIA_TYPES.ociManifest} does not match the manifest's mediaType ${MEDIA_TYPES.dockerManifest}`,
	});
	// Case and parameters do not make a mismatch; an upstream's body wins over its header.
	t.is(parseManifest(bytes(dockerImage), 'Application/VND.Docker.Distribution.Manifest.V2+JSON ;x=1', strict).mediaType, MEDIA_TYPES.dockerManifest);
	t.is(parseManifest(bytes(dockerImage), MEDIA_TYPES.ociManifest, lenient).mediaType, MEDIA_TYPES.dockerManifest);
});

test('bad descriptor size or digest', t => {
	const withLayer = (layer: unknown) => ({...dockerImage, layers: [dockerImage.layers[0], layer]});
	for (const size of [-1, 1.5, '10', Number.MAX_SAFE_INTEGER + 2, undefined]) {
		rejects(t, withLayer({mediaType: LAYER, size, digest: d('2')}), undefined, strict, {
			status: 400,
			code: 'MANIFEST_INVALID',
			message: 'layers[1].size is not a non-negative integer',
		});
	}

	rejects(t, withLayer({mediaType: LAYER, size: 1, digest: 'sha256:abc'}), undefined, strict, {
		status: 400,
		code: 'MANIFEST_INVALID',
		message: 'layers[1].digest is not a valid digest',
		detail: {digest: 'sha256:abc'},
	});
	rejects(t, withLayer({mediaType: LAYER, size: 1}), undefined, strict, {status: 400, code: 'MANIFEST_INVALID', message: 'layers[1].digest is missing'});
	rejects(t, withLayer({mediaType: '', size: 1, digest: d('2')}), undefined, strict, {status: 400, code: 'MANIFEST_INVALID', message: 'layers[1].mediaType is missing'});
	rejects(t, {...dockerImage, config: null}, undefined, strict, {status: 400, code: 'MANIFEST_INVALID', message: 'config is not a descriptor'});
	rejects(t, {...dockerImage, subject: {mediaType: MEDIA_TYPES.ociManifest, size: 1, digest: 'md5:x'}}, undefined, strict, {
		status: 400,
		code: 'MANIFEST_INVALID',
		message: 'subject.digest is not a valid digest',
		detail: {digest: 'md5:x'},
	});
	rejects(t, {schemaVersion: 2, mediaType: MEDIA_TYPES.dockerManifest, config: dockerImage.config}, undefined, strict, {
		status: 400,
		code: 'MANIFEST_INVALID',
		message: 'layers is not an array',
	});
	// Lenient: not an error; the bad layer is left out, its digest still referenced.
	const upstream = parseManifest(bytes(withLayer({mediaType: LAYER, size: -1, digest: d('2')})), undefined, lenient);
	t.deepEqual(upstream.layers.map(layer => layer.digest.value), [d('1')]);
	t.deepEqual(upstream.references, [d('c'), d('1'), d('2')]);
});

test('unsupported media type', t => {
	rejects(t, {...dockerImage, mediaType: 'application/vnd.example+json'}, undefined, strict, {
		status: 400,
		code: 'MANIFEST_INVALID',
		message: 'unsupported manifest media type: application/vnd.example+json',
	});
	rejects(t, {schemaVersion: 2, config: dockerImage.config}, 'application/json', strict, {
		status: 400,
		code: 'MANIFEST_INVALID',
		message: 'unsupported manifest media type: application/json',
	});
	t.is(parseManifest(bytes({...dockerImage, mediaType: 'application/vnd.example+json'}), undefined, lenient).mediaType, 'application/vnd.example+json');
});

test('not JSON: MANIFEST_INVALID for a push, UpstreamError from an upstream', t => {
	for (const body of ['{"schemaVersion": 2', '[1]', '"x"', 'null']) {
		rejects(t, body, MEDIA_TYPES.ociManifest, strict, {status: 400, code: 'MANIFEST_INVALID', message: 'manifest is not a JSON object'});
	}

	rejects(t, '{"schemaVersion": 2', MEDIA_TYPES.ociManifest, lenient, {type: UpstreamError, status: 502, code: 'MANIFEST_INVALID', message: 'upstream manifest is not JSON'});
	// Any JSON will do from an upstream that says what it is.
	t.deepEqual(parseManifest(bytes('[1]'), MEDIA_TYPES.ociManifest, lenient).references, []);
});

test('mediaType from the header when the body has none', t => {
	const body = {schemaVersion: 2, config: dockerImage.config, layers: dockerImage.layers};
	t.is(parseManifest(bytes(body), `${MEDIA_TYPES.dockerManifest}; charset=utf-8`, strict).mediaType, MEDIA_TYPES.dockerManifest);
	t.is(parseManifest(bytes({blobs: [{digest: d('9')}]}), `${MEDIA_TYPES.ociManifest} ; x=y`, lenient).mediaType, MEDIA_TYPES.ociManifest);
	t.deepEqual(parseManifest(bytes({blobs: [{digest: d('9')}]}), MEDIA_TYPES.ociManifest, lenient).references, [d('9')]);
	for (const header of [undefined, '', ' ; charset=utf-8']) {
		rejects(t, {blobs: []}, header, lenient, {type: UpstreamError, status: 502, code: 'MANIFEST_INVALID', message: 'upstream manifest has no media type'});
	}
});

test('digest with sha512, checked against the expected digest', t => {
	const content = bytes(dockerImage);
	const sha512 = `sha512:${createHash('sha512').update(content).digest('hex')}`;
	for (const mode of ['strict', 'lenient'] satisfies ManifestMode[]) {
		t.is(parseManifest(content, undefined, {mode, expected: parseDigest(sha512)}).digest, sha512);
	}

	const wrong = parseDigest('sha512:' + 'f'.repeat(128));
	rejects(t, dockerImage, undefined, {mode: 'strict', expected: wrong}, {
		status: 400,
		code: 'DIGEST_INVALID',
		message: 'manifest digest does not match the reference',
		detail: {expected: wrong.value, actual: sha512},
	});
	rejects(t, dockerImage, undefined, {mode: 'lenient', expected: wrong}, {
		type: UpstreamError,
		status: 502,
		code: 'DIGEST_INVALID',
		message: 'upstream manifest does not match the requested digest',
		detail: {expected: wrong.value, actual: sha512},
	});
	// A push's body is judged before its digest; an upstream's digest before its body.
	rejects(t, 'nope', undefined, {mode: 'strict', expected: wrong}, {status: 400, code: 'MANIFEST_INVALID', message: 'manifest is not a JSON object'});
	rejects(t, 'nope', undefined, {mode: 'lenient', expected: wrong}, {
		type: UpstreamError,
		status: 502,
		code: 'DIGEST_INVALID',
		message: 'upstream manifest does not match the requested digest',
		detail: {expected: wrong.value, actual: `sha512:${createHash('sha512').update('nope').digest('hex')}`},
	});
});

test('an upstream Docker-Content-Digest must match when it is sha256 and no digest was requested', t => {
	const content = bytes(dockerImage);
	t.is(parseManifest(content, undefined, {mode: 'lenient', announced: sha256(content)}).digest, sha256(content));
	t.is(parseManifest(content, undefined, {mode: 'lenient', announced: 'sha512:' + 'f'.repeat(128)}).digest, sha256(content));
	t.is(parseManifest(content, undefined, {mode: 'lenient', announced: [d('0')]}).digest, sha256(content));
	rejects(t, dockerImage, undefined, {mode: 'lenient', announced: d('0')}, {
		type: UpstreamError,
		status: 502,
		code: 'DIGEST_INVALID',
		message: 'upstream manifest does not match its Docker-Content-Digest',
		detail: {announced: d('0'), actual: sha256(content)},
	});
});

test('non-distributable layers are not blobs to hold; an upstream still references them', t => {
	const foreign = {mediaType: FOREIGN, size: 30, digest: d('f'), urls: ['https://example.com/layer']};
	const body = {...dockerImage, layers: [...dockerImage.layers, foreign, {...foreign, digest: d('8'), urls: []}]};
	const parsed = parseManifest(bytes(body), undefined, strict);
	t.deepEqual(parsed.blobs.map(blob => blob.digest.value), [d('c'), d('1'), d('2'), d('8')]);
	t.deepEqual(parsed.nonDistributable.map(blob => [blob.digest.value, blob.urls]), [[d('f'), ['https://example.com/layer']]]);
	t.is(parsed.layers.length, 4);
	t.deepEqual(parsed.references, [d('c'), d('1'), d('2'), d('8')]);
	t.deepEqual(parseManifest(bytes(body), undefined, lenient).references, [d('c'), d('1'), d('2'), d('f'), d('8')]);
});

test('a manifest over the size limit', t => {
	const content = Buffer.alloc(MAX_MANIFEST_BYTES + 1, 0x20);
	const pushed = t.throws(() => parseManifest(content, undefined, strict));
	t.true(pushed instanceof TooLargeError);
	t.like(pushed, {status: 413, code: 'MANIFEST_INVALID', message: `manifest is larger than ${MAX_MANIFEST_BYTES} bytes`});
	const fetched = t.throws(() => parseManifest(content, undefined, lenient));
	t.true(fetched instanceof UpstreamError);
	t.like(fetched, {status: 502, code: 'MANIFEST_INVALID', message: 'upstream manifest is larger than 4 MiB'});
});
