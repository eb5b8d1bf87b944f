import {mkdtemp, rm} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import path from 'node:path';
import test, {type ExecutionContext} from 'ava';
import {parsePurgeTarget, Purger} from '../../src/service/purge.js';
import {NamespaceRouter} from '../../src/service/namespaces.js';
import {parseConfig} from '../../src/config/load.js';
import {LOCAL_REGISTRY} from '../../src/store/metadata.js';
import {SqliteMetadataStore} from '../../src/store/sqlite/index.js';
import {catalogCases, image} from '../helpers/catalog-cases.js';
import {RegistryError} from '../../src/v2/errors.js';

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

async function openStore(t: ExecutionContext): Promise<SqliteMetadataStore> {
	const dir = await mkdtemp(path.join(tmpdir(), 'mirror-catalog-'));
	const store = new SqliteMetadataStore(path.join(dir, 'mirror.db'));
	t.teardown(async () => {
		await store.close();
		await rm(dir, {recursive: true, force: true});
	});
	return store;
}


catalogCases(test, 'sqlite', openStore);

test('parsePurgeTarget and Purger: NAME[:TAG], V2 errors for bad names and tags, pushed repositories refused', async t => {
	t.deepEqual(parsePurgeTarget('nginx'), {name: 'nginx'});
	t.deepEqual(parsePurgeTarget('library/nginx:1.27'), {name: 'library/nginx', tag: '1.27'});
	t.deepEqual(parsePurgeTarget('ghcr.io/org/tool:v1'), {name: 'ghcr.io/org/tool', tag: 'v1'});
	t.is(t.throws(() => parsePurgeTarget('Upper/Case'), {instanceOf: RegistryError})?.code, 'NAME_INVALID');
	t.is(t.throws(() => parsePurgeTarget('app:.bad'), {instanceOf: RegistryError})?.code, 'TAG_INVALID');

	const store = await openStore(t);
	const config = parseConfig({upstreams: {'docker.io': {url: 'http://127.0.0.1:9'}}, namespaces: [{prefix: 'private/', local: true}, {prefix: '', upstream: 'docker.io'}]}, process.cwd());
	const purger = new Purger(store, new NamespaceRouter(config));
	await image(store, {registry: LOCAL_REGISTRY, name: 'private/app'}, 'v1', 1, [{n: 10, size: 1}]);
	await image(store, {registry: 'docker.io', name: 'library/nginx'}, '1', 2, [{n: 11, size: 1}]);
	const refused = await t.throwsAsync(purger.purge('private/app'), {instanceOf: RegistryError});
	t.is(refused?.code, 'UNSUPPORTED');
	t.true(await store.hasRepoManifest({registry: LOCAL_REGISTRY, name: 'private/app'}, digest(1)));
	t.is((await t.throwsAsync(purger.purge('nginx:2'), {instanceOf: RegistryError}))?.code, 'MANIFEST_UNKNOWN');
	t.deepEqual(await purger.purge('nginx'), {repository: 'nginx', upstream: 'docker.io', tags: ['1'], manifests: 1});
	t.is((await t.throwsAsync(purger.purge('nginx'), {instanceOf: RegistryError}))?.code, 'NAME_UNKNOWN');
});
