import test from 'ava';
import {indexChildren, manifestReferences} from '../../src/v2/manifest.js';
import {MANIFEST_ACCEPT, MEDIA_TYPES, accepts, detectManifestType, isIndexType, parseAccept} from '../../src/v2/media-types.js';

const d = (char: string) => 'sha256:' + char.repeat(64);

test('parseAccept drops parameters and q-values and lower-cases', t => {
	t.deepEqual(
		parseAccept('application/vnd.oci.image.index.v1+json; q=0.9, Application/VND.Docker.Distribution.Manifest.V2+JSON;q=0.5;charset=utf-8 , */*;q=0.1'),
		['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.v2+json', '*/*'],
	);
});

test('parseAccept takes several headers and skips empty parts', t => {
	t.deepEqual(parseAccept([MEDIA_TYPES.ociManifest, `${MEDIA_TYPES.dockerManifest}, ,`, '']), [
		MEDIA_TYPES.ociManifest,
		MEDIA_TYPES.dockerManifest,
	]);
	t.deepEqual(parseAccept(undefined), []);
	t.deepEqual(parseAccept(''), []);
	t.deepEqual(parseAccept([]), []);
	t.deepEqual(parseAccept(' , ;q=1'), []);
});

test('accepts: no Accept takes anything', t => {
	t.true(accepts([], MEDIA_TYPES.ociIndex));
	t.true(accepts([], MEDIA_TYPES.dockerManifestV1Signed));
});

test('accepts: exact types and wildcards', t => {
	t.true(accepts([MEDIA_TYPES.dockerManifest], MEDIA_TYPES.dockerManifest));
	t.false(accepts([MEDIA_TYPES.dockerManifest], MEDIA_TYPES.ociManifest));
	t.false(accepts([MEDIA_TYPES.dockerManifest, MEDIA_TYPES.ociManifest], MEDIA_TYPES.ociIndex));
	t.true(accepts([MEDIA_TYPES.dockerManifest, '*/*'], MEDIA_TYPES.ociIndex));
	t.true(accepts(['application/*'], MEDIA_TYPES.dockerManifestList));
	t.false(accepts(['text/*'], MEDIA_TYPES.dockerManifestList));
	t.false(accepts(['application/json'], MEDIA_TYPES.ociManifest));
	t.true(accepts(parseAccept('Application/Vnd.Oci.Image.Manifest.V1+Json; q=1'), MEDIA_TYPES.ociManifest));
});

test('MANIFEST_ACCEPT lists every manifest type', t => {
	t.deepEqual(parseAccept(MANIFEST_ACCEPT).sort(), Object.values(MEDIA_TYPES).sort());
});

test('isIndexType', t => {
	t.true(isIndexType(MEDIA_TYPES.ociIndex));
	t.true(isIndexType(MEDIA_TYPES.dockerManifestList));
	t.false(isIndexType(MEDIA_TYPES.ociManifest));
	t.false(isIndexType(MEDIA_TYPES.dockerManifest));
});

test('detectManifestType uses the declared mediaType', t => {
	t.is(detectManifestType({schemaVersion: 2, mediaType: MEDIA_TYPES.dockerManifest, config: {}}), MEDIA_TYPES.dockerManifest);
	t.is(detectManifestType({schemaVersion: 2, mediaType: MEDIA_TYPES.dockerManifestList, manifests: []}), MEDIA_TYPES.dockerManifestList);
	t.is(detectManifestType({mediaType: 'application/x-custom'}), 'application/x-custom');
});

test('detectManifestType from the shape when mediaType is absent', t => {
	t.is(detectManifestType({schemaVersion: 2, manifests: [{digest: d('a')}]}), MEDIA_TYPES.ociIndex);
	t.is(detectManifestType({schemaVersion: 2, manifests: []}), MEDIA_TYPES.ociIndex);
	t.is(detectManifestType({schemaVersion: 2, config: {digest: d('a')}, layers: []}), MEDIA_TYPES.ociManifest);
	t.is(
		detectManifestType({schemaVersion: 1, name: 'library/x', tag: 'latest', fsLayers: [], signatures: [{header: {}}]}),
		MEDIA_TYPES.dockerManifestV1Signed,
	);
	t.is(detectManifestType({schemaVersion: 1, name: 'library/x', tag: 'latest', fsLayers: []}), MEDIA_TYPES.dockerManifestV1);
});

test('detectManifestType for bodies that are not manifests', t => {
	for (const body of [undefined, null, 'string', 42, [], {}, {schemaVersion: 2}, {mediaType: 5}]) {
		t.is(detectManifestType(body), undefined, JSON.stringify(body));
	}
});

test('manifestReferences: config and layers', t => {
	t.deepEqual(
		manifestReferences({
			schemaVersion: 2,
			mediaType: MEDIA_TYPES.ociManifest,
			config: {mediaType: 'application/vnd.oci.image.config.v1+json', digest: d('c'), size: 1},
			layers: [
				{digest: d('1'), size: 1},
				{digest: d('2'), size: 2},
			],
		}),
		[d('c'), d('1'), d('2')],
	);
});

test('manifestReferences: index children, deduplicated', t => {
	t.deepEqual(
		manifestReferences({
			schemaVersion: 2,
			manifests: [{digest: d('a')}, {digest: d('b')}, {digest: d('a')}],
		}),
		[d('a'), d('b')],
	);
});

test('manifestReferences: a layer that is also the config is listed once', t => {
	t.deepEqual(manifestReferences({config: {digest: d('1')}, layers: [{digest: d('1')}, {digest: d('2')}, {digest: d('2')}]}), [d('1'), d('2')]);
});

test('manifestReferences: artifact blobs and schema1 fsLayers', t => {
	t.deepEqual(manifestReferences({blobs: [{digest: d('9')}]}), [d('9')]);
	t.deepEqual(manifestReferences({schemaVersion: 1, fsLayers: [{blobSum: d('5')}, {blobSum: d('6')}, {blobSum: d('5')}, {}]}), [d('5'), d('6')]);
});

test('manifestReferences: the subject is not a reference', t => {
	t.deepEqual(
		manifestReferences({config: {digest: d('c')}, layers: [{digest: d('1')}], subject: {digest: d('s'), mediaType: MEDIA_TYPES.ociManifest}}),
		[d('c'), d('1')],
	);
});

test('manifestReferences ignores malformed entries', t => {
	t.deepEqual(manifestReferences({config: {}, layers: [null, 5, {digest: 7}, {digest: d('1')}], manifests: 'nope'}), [d('1')]);
	t.deepEqual(manifestReferences(null), []);
	t.deepEqual(manifestReferences('x'), []);
	t.deepEqual(manifestReferences({}), []);
});

test('indexChildren', t => {
	t.deepEqual(
		indexChildren({
			schemaVersion: 2,
			mediaType: MEDIA_TYPES.ociIndex,
			manifests: [
				{mediaType: MEDIA_TYPES.ociManifest, digest: d('a'), size: 1, platform: {os: 'linux', architecture: 'amd64'}},
				{mediaType: MEDIA_TYPES.ociManifest, digest: d('b'), size: 1, platform: {os: 'linux', architecture: 'arm64', variant: 'v8'}},
				{digest: d('c')},
				{mediaType: MEDIA_TYPES.ociManifest},
				null,
			],
		}),
		[
			{digest: d('a'), mediaType: MEDIA_TYPES.ociManifest, platform: {os: 'linux', architecture: 'amd64'}},
			{digest: d('b'), mediaType: MEDIA_TYPES.ociManifest, platform: {os: 'linux', architecture: 'arm64', variant: 'v8'}},
			{digest: d('c'), mediaType: undefined, platform: undefined},
		],
	);
	t.deepEqual(indexChildren({config: {}, layers: []}), []);
	t.deepEqual(indexChildren(null), []);
	t.deepEqual(indexChildren({manifests: 'x'}), []);
});
