/**
 * OCI distribution-spec v1.1 conformance, workflow 3: Content Discovery
 * (spec.md "Listing Tags", "Listing Referrers"; the checks of
 * conformance/03_discovery_test.go), plus `_catalog` with the same `n` /
 * `last` / `Link` pagination (not in the OCI spec; the Docker Registry V2 API
 * defines it, and issue 4 asks for it).
 */
import test, {type ExecutionContext} from 'ava';
import {
	EMPTY_JSON,
	MEDIA,
	blob,
	configBlob,
	errorCodes,
	imageIndex,
	jsonOf,
	localRegistry,
	nextLink,
	ociManifest,
	randomBlob,
	unknownDigest,
	type Blob,
	type Descriptor,
	type Manifest,
	type OciClient,
	type Reply,
} from '../helpers/oci-client.js';
import {stopSharedStoreServers} from '../helpers/mirror.js';

// Run again on S3 + PostgreSQL with MIRROR_TEST_STORES=s3+postgres (see helpers/mirror.ts).
test.after.always(stopSharedStoreServers);

const REPO = 'private/conformance/a';
const OTHER = 'private/conformance/b';

type TagList = {name: string; tags: string[]};
type Index = {schemaVersion: number; mediaType: string; manifests: Descriptor[]};

/** "lexical order (i.e. case-insensitive alphanumeric order)" */
function lexical(values: readonly string[]): string[] {
	return [...values].sort((a, b) => {
		const x = a.toLowerCase();
		const y = b.toLowerCase();
		return x < y ? -1 : x > y ? 1 : a < b ? -1 : a > b ? 1 : 0;
	});
}

/** One image in `repo`, tagged with every tag of `tags`. */
async function tagged(client: OciClient, repo: string, tags: readonly string[]): Promise<Manifest> {
	const config = configBlob(`tags-${repo}`);
	const layer = randomBlob(256);
	const manifest = ociManifest({config, layers: [layer]});
	await client.pushBlobs(repo, [config, layer]);
	for (const tag of tags) {
		await client.pushManifest(repo, tag, manifest);
	}

	return manifest;
}

function tagsOf(t: ExecutionContext, reply: Reply, repo: string): string[] {
	t.is(reply.status, 200, reply.body.toString());
	const body = jsonOf<TagList>(reply);
	t.is(body.name, repo);
	t.true(Array.isArray(body.tags), JSON.stringify(body));
	return body.tags;
}

// --- Listing Tags -------------------------------------------------------------------------------------

const TAGS = ['test0', 'test1', 'test2', 'test3', 'v1.0', 'v1.1', 'latest', 'alpha_1'];

test('GET request to list tags should yield 200 with {name, tags} in lexical order', async t => {
	const {client} = await localRegistry(t);
	await tagged(client, REPO, TAGS);
	const tags = tagsOf(t, await client.tags(REPO), REPO);
	t.deepEqual(tags, lexical(TAGS));
});

test('GET number of tags should be limitable by the `n` query parameter, with a Link rel="next" to the rest', async t => {
	const {client} = await localRegistry(t);
	await tagged(client, REPO, TAGS);
	const n = TAGS.length / 2;
	const reply = await client.tags(REPO, `?n=${n}`);
	const tags = tagsOf(t, reply, REPO);
	// "Otherwise, the response MUST include <int> results."
	t.deepEqual(tags, lexical(TAGS).slice(0, n));
	// "If included, the Link header MUST be set according to RFC5988 with the Relation Type rel="next"."
	const next = nextLink(reply);
	t.truthy(next, 'a Link header when more tags are available');
	const rest = await client.get(next!);
	t.deepEqual(tagsOf(t, rest, REPO), lexical(TAGS).slice(n));
	t.is(rest.headers.get('link'), null, 'no Link on the last page');
});

test('following Link rel="next" with n=3 visits every tag exactly once, in order', async t => {
	const {client} = await localRegistry(t);
	await tagged(client, REPO, TAGS);
	const seen: string[] = [];
	let url: string | undefined = client.url(`/v2/${REPO}/tags/list?n=3`);
	let pages = 0;
	for (; url !== undefined && pages < 10; pages++) {
		const reply = await client.get(url);
		const tags = tagsOf(t, reply, REPO);
		// Full pages of 3 while tags remain; the Link goes away with the last (short) page.
		t.deepEqual(tags, lexical(TAGS).slice(3 * pages, 3 * pages + 3), `page ${pages}`);
		seen.push(...tags);
		url = nextLink(reply);
	}

	t.is(url, undefined, 'pagination ends');
	t.is(pages, Math.ceil(TAGS.length / 3));
	t.deepEqual(seen, lexical(TAGS));
});

test('GET start of tag list is set by the `last` query parameter', async t => {
	const {client} = await localRegistry(t);
	await tagged(client, REPO, TAGS);
	const n = TAGS.length / 2;
	const first = tagsOf(t, await client.tags(REPO, `?n=${n}`), REPO);
	const last = first[n - 1]!;
	const reply = await client.tags(REPO, `?n=${n}&last=${encodeURIComponent(last)}`);
	const tags = tagsOf(t, reply, REPO);
	// "<tagname> will not be included in the results, but up to <int> tags *after* <tagname> will be returned."
	t.false(tags.includes(last));
	t.deepEqual(tags, lexical(TAGS).slice(n, 2 * n));
});

test('`last` without `n` returns every tag after it', async t => {
	const {client} = await localRegistry(t);
	await tagged(client, REPO, TAGS);
	const sorted = lexical(TAGS);
	const tags = tagsOf(t, await client.tags(REPO, `?last=${sorted[2]!}`), REPO);
	t.deepEqual(tags, sorted.slice(3));
});

test('n=0 returns an empty list and no Link header', async t => {
	const {client} = await localRegistry(t);
	await tagged(client, REPO, TAGS);
	const reply = await client.tags(REPO, '?n=0');
	// "When n is zero, this endpoint MUST return an empty list, and MUST NOT include a Link header."
	t.deepEqual(tagsOf(t, reply, REPO), []);
	t.is(reply.headers.get('link'), null);
});

test('n larger than the number of tags returns them all, without a Link header', async t => {
	const {client} = await localRegistry(t);
	await tagged(client, REPO, TAGS);
	const reply = await client.tags(REPO, '?n=100');
	t.deepEqual(tagsOf(t, reply, REPO), lexical(TAGS));
	t.is(reply.headers.get('link'), null);
});

test('tags are listed in case-insensitive alphanumeric order', async t => {
	const {client} = await localRegistry(t);
	const tags = ['alpha', 'Beta', 'gamma', 'Delta', 'ZETA', 'epsilon'];
	await tagged(client, REPO, tags);
	// "If the list is not empty, the tags MUST be in lexical order (i.e. case-insensitive alphanumeric order)."
	t.deepEqual(tagsOf(t, await client.tags(REPO), REPO), ['alpha', 'Beta', 'Delta', 'epsilon', 'gamma', 'ZETA']);
	// ... and the pages follow the same order.
	const page = await client.tags(REPO, '?n=2&last=Beta');
	t.deepEqual(tagsOf(t, page, REPO), ['Delta', 'epsilon']);
});

test('a repository with a manifest but no tags lists an empty tag list', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('untagged');
	await client.pushBlob(REPO, config);
	const manifest = ociManifest({config, layers: []});
	await client.pushManifest(REPO, manifest.digest, manifest);
	// The repository exists: its manifest is served, and _catalog lists it.
	t.is((await client.getManifest(REPO, manifest.digest)).status, 200);
	t.deepEqual(jsonOf<{repositories: string[]}>(await client.get('/v2/_catalog')).repositories, [REPO]);
	// "Assuming a repository is found, this request MUST return a 200 OK response code. The list of tags MAY be empty"
	t.deepEqual(tagsOf(t, await client.tags(REPO), REPO), []);
});

// The spec's error table has no code for a malformed page size; like the reference registry, the
// server answers 400 PAGINATION_NUMBER_INVALID (a deliberate extension, listed in the README).
test('a non-numeric n is refused with 400 PAGINATION_NUMBER_INVALID', async t => {
	const {client} = await localRegistry(t);
	await tagged(client, REPO, ['v1']);
	const reply = await client.tags(REPO, '?n=x');
	t.is(reply.status, 400);
	t.deepEqual(errorCodes(reply), ['PAGINATION_NUMBER_INVALID']);
});

test('tags/list of a repository that does not exist is 404 NAME_UNKNOWN', async t => {
	const {client} = await localRegistry(t);
	await tagged(client, REPO, ['v1']);
	const reply = await client.tags('private/conformance/nothere');
	t.is(reply.status, 404);
	t.deepEqual(errorCodes(reply), ['NAME_UNKNOWN']);
});

test('tags of one repository do not show in another', async t => {
	const {client} = await localRegistry(t);
	await tagged(client, REPO, ['a1', 'a2']);
	await tagged(client, OTHER, ['b1']);
	t.deepEqual(tagsOf(t, await client.tags(REPO), REPO), ['a1', 'a2']);
	t.deepEqual(tagsOf(t, await client.tags(OTHER), OTHER), ['b1']);
});

// --- _catalog -----------------------------------------------------------------------------------------

const REPOS = ['private/conformance/a', 'private/conformance/b', 'private/conformance/c', 'private/conformance/d', 'private/other/e'];

async function catalogSetup(t: ExecutionContext): Promise<OciClient> {
	const {client} = await localRegistry(t);
	for (const repo of REPOS) {
		await tagged(client, repo, ['v1']);
	}

	return client;
}

function repositoriesOf(t: ExecutionContext, reply: Reply): string[] {
	t.is(reply.status, 200, reply.body.toString());
	const body = jsonOf<{repositories: string[]}>(reply);
	t.true(Array.isArray(body.repositories), JSON.stringify(body));
	return body.repositories;
}

test('_catalog lists every repository, sorted', async t => {
	const client = await catalogSetup(t);
	t.deepEqual(repositoriesOf(t, await client.get('/v2/_catalog')), REPOS);
});

test('_catalog with n returns n repositories and a Link rel="next" that leads through the rest', async t => {
	const client = await catalogSetup(t);
	const first = await client.get('/v2/_catalog?n=2');
	t.deepEqual(repositoriesOf(t, first), REPOS.slice(0, 2));
	const seen = [...repositoriesOf(t, first)];
	let url = nextLink(first);
	t.truthy(url);
	for (let page = 1; url !== undefined && page < 10; page++) {
		const reply = await client.get(url);
		const repos = repositoriesOf(t, reply);
		t.deepEqual(repos, REPOS.slice(2 * page, 2 * page + 2), `page ${page}`);
		seen.push(...repos);
		url = nextLink(reply);
	}

	t.is(url, undefined, 'pagination ends');
	t.deepEqual(seen, REPOS);
});

test('_catalog with last starts after that repository; n=0 is empty without a Link', async t => {
	const client = await catalogSetup(t);
	t.deepEqual(repositoriesOf(t, await client.get(`/v2/_catalog?n=2&last=${REPOS[1]!}`)), REPOS.slice(2, 4));
	t.deepEqual(repositoriesOf(t, await client.get(`/v2/_catalog?last=${REPOS[3]!}`)), REPOS.slice(4));
	const empty = await client.get('/v2/_catalog?n=0');
	t.deepEqual(repositoriesOf(t, empty), []);
	t.is(empty.headers.get('link'), null);
});

// --- Listing Referrers --------------------------------------------------------------------------------

const TYPE_A = 'application/vnd.example.sbom.v1';
const TYPE_B = 'application/vnd.example.signature.v1';
const TYPE_INDEX = 'application/vnd.example.bundle.v1';
const ANNOTATION = 'org.opencontainers.conformance.test';

type Referrers = {
	subject: Manifest;
	dangling: Descriptor;
	/** Every referrer of `subject`, with the descriptor the referrers API must list for it. */
	expected: Descriptor[];
	danglingReferrer: Manifest;
	client: OciClient;
};

function descriptorFor(manifest: Manifest, artifactType: string | undefined, annotations: Record<string, string>): Descriptor {
	const entry: Descriptor = {mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size, annotations};
	if (artifactType !== undefined) {
		entry.artifactType = artifactType;
	}

	return entry;
}

/**
 * The official suite's referrers setup: a subject image; two referrers per
 * artifact type (one naming it in `config.mediaType`, one in `artifactType`
 * with the empty config), an index referrer, and a referrer of a subject that
 * was never pushed. Every referrer is pushed by digest and must answer OCI-Subject.
 */
async function referrersSetup(t: ExecutionContext): Promise<Referrers> {
	const {client} = await localRegistry(t);
	const empty = blob(EMPTY_JSON, MEDIA.ociEmpty);
	const refBlobA = randomBlob(128, 'application/vnd.example.data.v1');
	await client.pushBlobs(REPO, [empty, refBlobA]);

	const subjectConfig = configBlob('subject');
	const subjectLayer = randomBlob(512);
	const subject = ociManifest({config: subjectConfig, layers: [subjectLayer]});
	const subjectDescriptor: Descriptor = {mediaType: subject.mediaType, digest: subject.digest, size: subject.size};
	const expected: Descriptor[] = [];

	const push = async (manifest: Manifest, subjectDigest: string) => {
		const reply = await client.putManifest(REPO, manifest.digest, manifest);
		t.is(reply.status, 201, reply.body.toString());
		t.is(reply.headers.get('oci-subject'), subjectDigest, 'OCI-Subject on a manifest PUT with a subject');
	};

	const configTyped = (type: string, label: string, layer: Blob) => {
		const config = blob(Buffer.from(JSON.stringify({label})), type);
		const annotations = {[ANNOTATION]: `config-typed ${label}`};
		return {config, manifest: ociManifest({config, layers: [layer], subject: subjectDescriptor, annotations}), annotations};
	};

	const artifactTyped = (type: string, label: string, layer: Blob) => {
		const annotations = {[ANNOTATION]: `artifact-typed ${label}`};
		return {manifest: ociManifest({config: empty, layers: [layer], artifactType: type, subject: subjectDescriptor, annotations}), annotations};
	};

	// Referrers pushed before their subject exists.
	const a1 = configTyped(TYPE_A, 'a1', refBlobA);
	await client.pushBlob(REPO, a1.config);
	await push(a1.manifest, subject.digest);
	expected.push(descriptorFor(a1.manifest, TYPE_A, a1.annotations)); // artifactType from config.mediaType
	const a2 = artifactTyped(TYPE_A, 'a2', refBlobA);
	await push(a2.manifest, subject.digest);
	expected.push(descriptorFor(a2.manifest, TYPE_A, a2.annotations));

	// An index referrer (its child must exist first).
	await client.pushManifest(REPO, a2.manifest.digest, a2.manifest);
	const indexAnnotations = {[ANNOTATION]: 'index'};
	const index = imageIndex({manifests: [a2.manifest], artifactType: TYPE_INDEX, subject: subjectDescriptor, annotations: indexAnnotations});
	await push(index, subject.digest);
	expected.push(descriptorFor(index, TYPE_INDEX, indexAnnotations));

	// The subject itself.
	await client.pushImage(REPO, 'tagtest0', {config: subjectConfig, layers: [subjectLayer], manifest: subject});

	// Referrers pushed after their subject.
	const refBlobB = randomBlob(128, 'application/vnd.example.data.v1');
	await client.pushBlob(REPO, refBlobB);
	const b1 = configTyped(TYPE_B, 'b1', refBlobB);
	await client.pushBlob(REPO, b1.config);
	await push(b1.manifest, subject.digest);
	expected.push(descriptorFor(b1.manifest, TYPE_B, b1.annotations));
	const b2 = artifactTyped(TYPE_B, 'b2', refBlobB);
	await push(b2.manifest, subject.digest);
	expected.push(descriptorFor(b2.manifest, TYPE_B, b2.annotations));

	// A referrer of a subject that is never pushed.
	const dangling: Descriptor = {mediaType: MEDIA.ociManifest, digest: unknownDigest(), size: 999};
	const danglingReferrer = ociManifest({config: empty, layers: [refBlobA], artifactType: TYPE_A, subject: dangling, annotations: {[ANNOTATION]: 'dangling'}});
	await push(danglingReferrer, dangling.digest);

	return {subject, dangling, expected, danglingReferrer, client};
}

function indexOf(t: ExecutionContext, reply: Reply): Index {
	t.is(reply.status, 200, reply.body.toString());
	// "The Content-Type header MUST be set to application/vnd.oci.image.index.v1+json."
	t.is(reply.headers.get('content-type'), MEDIA.ociIndex);
	const body = jsonOf<Index>(reply);
	t.is(body.schemaVersion, 2);
	t.is(body.mediaType, MEDIA.ociIndex);
	t.true(Array.isArray(body.manifests), JSON.stringify(body));
	return body;
}

function byDigest(entries: readonly Descriptor[]): Descriptor[] {
	return [...entries].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
}

test('referrers: GET for a digest nothing refers to is 200 with an empty index', async t => {
	const {client} = await referrersSetup(t);
	const body = indexOf(t, await client.get(`/v2/${REPO}/referrers/${unknownDigest()}`));
	t.deepEqual(body.manifests, []);
});

test('referrers: GET for the subject lists all five referrers with artifactType and annotations', async t => {
	const {client, subject, expected} = await referrersSetup(t);
	const body = indexOf(t, await client.get(`/v2/${REPO}/referrers/${subject.digest}`));
	// Each descriptor: mediaType, digest, size of the referrer; "The descriptors MUST include an artifactType field that is set
	// to the value of the artifactType in the image manifest or index, if present. If the artifactType is empty or missing in
	// the image manifest, the value of artifactType MUST be set to the config descriptor mediaType value."
	// "The descriptors MUST include annotations from the image manifest or index."
	t.is(body.manifests.length, 5);
	t.deepEqual(byDigest(body.manifests), byDigest(expected));
});

test('referrers: the ?artifactType= filter returns only that type, with OCI-Filters-Applied: artifactType', async t => {
	const {client, subject, expected} = await referrersSetup(t);
	const reply = await client.get(`/v2/${REPO}/referrers/${subject.digest}?artifactType=${encodeURIComponent(TYPE_A)}`);
	const body = indexOf(t, reply);
	// "If filtering is requested and applied, the response MUST include a header OCI-Filters-Applied: artifactType"
	t.is(reply.headers.get('oci-filters-applied'), 'artifactType');
	t.deepEqual(byDigest(body.manifests), byDigest(expected.filter(entry => entry.artifactType === TYPE_A)));
	t.is(body.manifests.length, 2);
});

test('referrers: a filter that matches nothing is an empty index, still with OCI-Filters-Applied', async t => {
	const {client, subject} = await referrersSetup(t);
	const reply = await client.get(`/v2/${REPO}/referrers/${subject.digest}?artifactType=${encodeURIComponent('application/vnd.example.none')}`);
	t.deepEqual(indexOf(t, reply).manifests, []);
	t.is(reply.headers.get('oci-filters-applied'), 'artifactType');
});

test('referrers: without a filter there is no OCI-Filters-Applied header', async t => {
	const {client, subject} = await referrersSetup(t);
	const reply = await client.get(`/v2/${REPO}/referrers/${subject.digest}`);
	t.is(reply.status, 200);
	t.is(reply.headers.get('oci-filters-applied'), null);
});

test('referrers: GET for a subject that was never pushed lists the referrer pushed for it', async t => {
	const {client, dangling, danglingReferrer} = await referrersSetup(t);
	const body = indexOf(t, await client.get(`/v2/${REPO}/referrers/${dangling.digest}`));
	t.is(body.manifests.length, 1);
	t.is(body.manifests[0]!.digest, danglingReferrer.digest);
	t.is(body.manifests[0]!.artifactType, TYPE_A);
	t.is(body.manifests[0]!.size, danglingReferrer.size);
});

test('referrers: an index referrer without artifactType is listed without an artifactType field', async t => {
	const {client} = await localRegistry(t);
	const config = configBlob('index-subject');
	await client.pushBlob(REPO, config);
	const subject = ociManifest({config, layers: []});
	await client.pushManifest(REPO, 'v1', subject);
	const index = imageIndex({manifests: [subject], subject: subject, annotations: {[ANNOTATION]: 'untyped index'}});
	const reply = await client.putManifest(REPO, index.digest, index);
	t.is(reply.status, 201);
	t.is(reply.headers.get('oci-subject'), subject.digest);
	const body = indexOf(t, await client.get(`/v2/${REPO}/referrers/${subject.digest}`));
	// "If the artifactType is empty or missing in an index, the artifactType MUST be omitted."
	t.deepEqual(body.manifests, [{mediaType: MEDIA.ociIndex, digest: index.digest, size: index.size, annotations: {[ANNOTATION]: 'untyped index'}}]);
});

test('referrers: only referrers in the same repository are listed', async t => {
	const {client, subject, expected} = await referrersSetup(t);
	// The same subject digest, referred to from another repository.
	const empty = blob(EMPTY_JSON, MEDIA.ociEmpty);
	await client.pushBlob(OTHER, empty);
	const elsewhere = ociManifest({config: empty, layers: [], artifactType: TYPE_B, subject: {mediaType: MEDIA.ociManifest, digest: subject.digest, size: subject.size}});
	const reply = await client.putManifest(OTHER, elsewhere.digest, elsewhere);
	t.is(reply.status, 201);
	// "Each descriptor is of an image manifest or index in the same <name> namespace with a subject field that specifies the value of <digest>."
	t.deepEqual(byDigest(indexOf(t, await client.get(`/v2/${REPO}/referrers/${subject.digest}`)).manifests), byDigest(expected));
	const there = indexOf(t, await client.get(`/v2/${OTHER}/referrers/${subject.digest}`));
	t.deepEqual(there.manifests.map(entry => entry.digest), [elsewhere.digest]);
});

test('referrers: a repository that does not exist is 200 with an empty index, never 404', async t => {
	const {client} = await localRegistry(t);
	// "If the registry supports the referrers API, the registry MUST NOT return a 404 Not Found to a referrers API requests."
	const body = indexOf(t, await client.get(`/v2/private/conformance/nothere/referrers/${unknownDigest()}`));
	t.deepEqual(body.manifests, []);
});

test('referrers: a digest with invalid syntax is 400', async t => {
	const {client} = await localRegistry(t);
	// "If the request is invalid, such as a <digest> with an invalid syntax, a 400 Bad Request MUST be returned."
	for (const digest of ['sha256:xyz', 'notadigest', `sha256:${'a'.repeat(63)}`]) {
		const reply = await client.get(`/v2/${REPO}/referrers/${digest}`);
		t.is(reply.status, 400, digest);
	}
});

test('referrers: the same referrer pushed twice (by digest and by tag) is listed once', async t => {
	const {client} = await localRegistry(t);
	const empty = blob(EMPTY_JSON, MEDIA.ociEmpty);
	await client.pushBlob(REPO, empty);
	const subject = {mediaType: MEDIA.ociManifest, digest: unknownDigest(), size: 10};
	const referrer = ociManifest({config: empty, layers: [], artifactType: TYPE_A, subject});
	t.is((await client.putManifest(REPO, referrer.digest, referrer)).status, 201);
	t.is((await client.putManifest(REPO, 'sig', referrer)).status, 201);
	const body = indexOf(t, await client.get(`/v2/${REPO}/referrers/${subject.digest}`));
	t.deepEqual(body.manifests.map(entry => entry.digest), [referrer.digest]);
});

test('referrers: a long list is returned whole, or in pages linked with Link rel="next"', async t => {
	const {client} = await localRegistry(t);
	const empty = blob(EMPTY_JSON, MEDIA.ociEmpty);
	await client.pushBlob(REPO, empty);
	const subject = {mediaType: MEDIA.ociManifest, digest: unknownDigest(), size: 10};
	const digests: string[] = [];
	for (let i = 0; i < 40; i++) {
		const referrer = ociManifest({config: empty, layers: [], artifactType: TYPE_A, subject, annotations: {[ANNOTATION]: `n${i}`}});
		await client.pushManifest(REPO, referrer.digest, referrer);
		digests.push(referrer.digest);
	}

	// "A Link header MUST be included in the response when the descriptor list cannot be returned in a single manifest.
	//  Each response is an image index with different descriptors in the manifests field."
	const seen: string[] = [];
	let url: string | undefined = client.url(`/v2/${REPO}/referrers/${subject.digest}`);
	for (let page = 0; url !== undefined && page < 50; page++) {
		const reply = await client.get(url);
		seen.push(...indexOf(t, reply).manifests.map(entry => entry.digest));
		url = nextLink(reply);
	}

	t.deepEqual([...seen].sort(), [...digests].sort());
});
