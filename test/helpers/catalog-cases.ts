/** The Catalog role's cases, run on SQLite (test/unit/catalog.test.ts) and PostgreSQL (test/e2e/catalog-postgres.test.ts). */
import {type ExecutionContext, type TestFn} from 'ava';
import {LOCAL_REGISTRY, type MetadataStore, type RepoKey} from '../../src/store/metadata.js';

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;
const TYPE = 'application/vnd.oci.image.manifest.v1+json';

export async function image(store: MetadataStore, repo: RepoKey, tag: string | undefined, manifest: number, layers: Array<{n: number; size: number}>): Promise<void> {
	for (const layer of layers) {
		await store.putBlob(repo, {digest: digest(layer.n), size: layer.size, pushed: repo.registry === LOCAL_REGISTRY, now: 1000});
	}

	await store.putManifest({
		repo,
		manifest: {digest: digest(manifest), mediaType: TYPE, content: Buffer.from(`{"m":${manifest}}`)},
		...(tag === undefined ? {} : {tag}),
		pushed: repo.registry === LOCAL_REGISTRY,
		references: layers.map(layer => digest(layer.n)),
		now: 1000 + manifest,
	});
}

export function catalogCases(test: TestFn, driver: string, openStore: (t: ExecutionContext) => Promise<MetadataStore>): void {
	test(`${driver}: repositoryPage: pages in (registry, name) order, counts, searches names and upstreams, filters by kind, escapes LIKE wildcards`, async t => {
		const store = await openStore(t);
		for (let n = 0; n < 25; n++) {
			await image(store, {registry: 'docker.io', name: `team/app_${String(n).padStart(2, '0')}`}, 'latest', 100 + n, [{n: 1000 + n, size: n + 1}]);
		}

		await image(store, {registry: 'ghcr.io', name: 'org/tool'}, '1', 200, [{n: 2000, size: 5}]);
		await image(store, {registry: LOCAL_REGISTRY, name: 'private/app'}, 'v1', 300, [{n: 3000, size: 7}, {n: 3001, size: 8}]);
		await store.putBlob({registry: 'docker.io', name: 'blob/only'}, {digest: digest(4000), size: 1, pushed: false, now: 1}); // no manifest: not listed

		const first = await store.repositoryPage({offset: 0, limit: 10});
		t.is(first.total, 27);
		t.deepEqual(first.rows.slice(0, 3).map(row => `${row.registry}/${row.name}`), ['/private/app', 'docker.io/team/app_00', 'docker.io/team/app_01']);
		t.like(first.rows[0], {tags: 1, bytes: 15, lastAccess: 1300});
		const last = await store.repositoryPage({offset: 20, limit: 10});
		t.deepEqual(last.rows.map(row => row.name), ['team/app_19', 'team/app_20', 'team/app_21', 'team/app_22', 'team/app_23', 'team/app_24', 'org/tool']);
		t.deepEqual((await store.repositoryPage({search: 'APP_1', offset: 0, limit: 50})).rows.map(row => row.name).slice(0, 2), ['team/app_10', 'team/app_11']);
		t.is((await store.repositoryPage({search: 'app_1', offset: 0, limit: 50})).total, 10);
		t.is((await store.repositoryPage({search: 'ghcr', offset: 0, limit: 50})).total, 1, 'the upstream name matches too');
		t.is((await store.repositoryPage({search: '_', offset: 0, limit: 50})).total, 25, '_ is a character, not a wildcard');
		t.is((await store.repositoryPage({search: '%', offset: 0, limit: 50})).total, 0);
		t.deepEqual((await store.repositoryPage({kind: 'pushed', offset: 0, limit: 50})).rows.map(row => row.name), ['private/app']);
		t.is((await store.repositoryPage({kind: 'cached', offset: 0, limit: 50})).total, 26);
	});

	test(`${driver}: purge of a tag unlinks its manifest only when no other tag points there; purge of a repository leaves shared blobs to their other repositories`, async t => {
		const store = await openStore(t);
		const app: RepoKey = {registry: 'docker.io', name: 'library/app'};
		const other: RepoKey = {registry: 'docker.io', name: 'library/other'};
		await image(store, app, '1', 1, [{n: 10, size: 100}, {n: 11, size: 200}]);
		await store.putManifest({repo: app, manifest: {digest: digest(1), mediaType: TYPE, content: Buffer.from('{"m":1}')}, tag: 'latest', pushed: false, now: 2000});
		await image(store, other, '1', 2, [{n: 10, size: 100}]);

		t.deepEqual((await store.repositoryTags(app)).map(tag => [tag.tag, tag.digest, tag.size]), [['1', digest(1), 7], ['latest', digest(1), 7]]);
		t.deepEqual(await store.blobRepositories(digest(10), 10), [app, other].map(repo => ({registry: repo.registry, name: repo.name})));

		t.deepEqual(await store.purge(app, '1'), {tags: ['1'], manifests: 0}, '"latest" still points at the manifest');
		t.true(await store.hasRepoManifest(app, digest(1)));
		t.deepEqual(await store.purge(app, 'latest'), {tags: ['latest'], manifests: 1});
		t.false(await store.hasRepoManifest(app, digest(1)));
		t.deepEqual(await store.purge(app, 'latest'), {tags: [], manifests: 0});

		await image(store, app, '2', 3, [{n: 10, size: 100}, {n: 12, size: 300}]);
		t.deepEqual(await store.purge(app), {tags: ['2'], manifests: 1});
		t.false(await store.repositoryExists(app));
		t.deepEqual(await store.blobRepositories(digest(10), 10), [{registry: 'docker.io', name: 'library/other'}]);
		t.truthy(await store.getBlob(digest(12)), 'the blob row stays for gc');
		const garbage = await store.collectGarbage(Number.MAX_SAFE_INTEGER, false);
		t.deepEqual(garbage.blobs.map(blob => blob.digest).sort(), [digest(11), digest(12)], 'gc takes what nothing links; the shared layer stays');
		t.true(await store.hasRepoManifest(other, digest(2)));
	});
}
