import {tmpdir} from 'node:os';
import path from 'node:path';
import test, {type ExecutionContext} from 'ava';
import {type Config, parseConfig} from '../../src/config/load.js';
import {NamespaceRouter, type Target, clientName} from '../../src/service/namespaces.js';
import {LOCAL_REGISTRY} from '../../src/store/metadata.js';
import {RegistryError} from '../../src/v2/errors.js';

const BASE = path.join(tmpdir(), 'namespaces-test-base');

const UPSTREAMS = {
	'docker.io': {url: 'https://registry-1.docker.io'},
	'ghcr.io': {url: 'https://ghcr.io'},
	'quay.io': {url: 'https://quay.io'},
	hub: {url: 'https://mirror.docker.io'},
};

function config(namespaces: unknown[]): Config {
	return parseConfig({upstreams: UPSTREAMS, namespaces}, BASE);
}

/** local first, ghcr/ to ghcr.io, everything else through Docker Hub. */
const STANDARD = config([
	{prefix: 'private/', local: true},
	{prefix: 'ghcr/', upstream: 'ghcr.io'},
	{prefix: '', upstream: 'docker.io'},
]);

/** What a target says, without the upstream's whole config. */
function summary(target: Target): Record<string, unknown> {
	return target.kind === 'local'
		? {kind: 'local', repo: target.repo, clientName: target.clientName}
		: {kind: 'cached', upstream: target.upstream.name, remoteName: target.remoteName, repo: target.repo, clientName: target.clientName};
}

function rejects(t: ExecutionContext, run: () => unknown): RegistryError {
	const error = t.throws(run, {instanceOf: RegistryError});
	if (!error) {
		throw new Error('expected a RegistryError');
	}

	return error;
}

test('?ns= names the upstream; the name is the repository there, with library/ for Docker Hub single segments', t => {
	const router = new NamespaceRouter(STANDARD);
	t.deepEqual(summary(router.resolve('org/tool', 'ghcr.io')), {
		kind: 'cached',
		upstream: 'ghcr.io',
		remoteName: 'org/tool',
		repo: {registry: 'ghcr.io', name: 'org/tool'},
		clientName: 'org/tool',
	});
	t.deepEqual(summary(router.resolve('nginx', 'docker.io')), {
		kind: 'cached',
		upstream: 'docker.io',
		remoteName: 'library/nginx',
		repo: {registry: 'docker.io', name: 'library/nginx'},
		clientName: 'nginx',
	});
	// ns wins over a leading segment and over the rules (private/ is local by rule).
	t.deepEqual(summary(router.resolve('ghcr.io/org/tool', 'quay.io')).repo, {registry: 'quay.io', name: 'ghcr.io/org/tool'});
	t.deepEqual(summary(router.resolve('private/app', 'quay.io')).repo, {registry: 'quay.io', name: 'private/app'});
	// An empty ns is no ns.
	t.deepEqual(summary(router.resolve('private/app', '')), {kind: 'local', repo: {registry: LOCAL_REGISTRY, name: 'private/app'}, clientName: 'private/app'});
});

test('an unknown ns is NAME_UNKNOWN 404 listing the configured upstreams', t => {
	const router = new NamespaceRouter(STANDARD);
	const error = rejects(t, () => router.resolve('org/tool', 'registry.example.com'));
	t.is(error.code, 'NAME_UNKNOWN');
	t.is(error.status, 404);
	t.is(error.message, 'no upstream is configured for registry.example.com');
	t.deepEqual(error.detail, {ns: 'registry.example.com', configured: ['docker.io', 'ghcr.io', 'quay.io', 'hub']});
});

test('a leading segment naming an upstream routes there; the client keeps the full name', t => {
	const router = new NamespaceRouter(STANDARD);
	t.deepEqual(summary(router.resolve('ghcr.io/org/tool')), {
		kind: 'cached',
		upstream: 'ghcr.io',
		remoteName: 'org/tool',
		repo: {registry: 'ghcr.io', name: 'org/tool'},
		clientName: 'ghcr.io/org/tool',
	});
	t.deepEqual(summary(router.resolve('docker.io/nginx')), {
		kind: 'cached',
		upstream: 'docker.io',
		remoteName: 'library/nginx',
		repo: {registry: 'docker.io', name: 'library/nginx'},
		clientName: 'docker.io/nginx',
	});
	t.is((router.resolve('docker.io/bitnami/redis') as {remoteName: string}).remoteName, 'bitnami/redis');
	t.is((router.resolve('quay.io/private/x') as {remoteName: string}).remoteName, 'private/x'); // before the local rule
	// A segment that is no upstream's name falls through to the rules (here: Docker Hub, whole).
	t.deepEqual(summary(router.resolve('example.com/team/app')).repo, {registry: 'docker.io', name: 'example.com/team/app'});
	// An upstream's name alone is not a leading segment.
	t.deepEqual(summary(router.resolve('quay.io')).repo, {registry: 'docker.io', name: 'library/quay.io'});
});

test('rules match by prefix, first match wins; local rules give LOCAL_REGISTRY repositories', t => {
	const router = new NamespaceRouter(STANDARD);
	t.deepEqual(summary(router.resolve('private/team/app')), {
		kind: 'local',
		repo: {registry: LOCAL_REGISTRY, name: 'private/team/app'},
		clientName: 'private/team/app',
	});
	// The rule's prefix stays part of the name the upstream is asked for.
	t.deepEqual(summary(router.resolve('ghcr/tool')), {
		kind: 'cached',
		upstream: 'ghcr.io',
		remoteName: 'ghcr/tool',
		repo: {registry: 'ghcr.io', name: 'ghcr/tool'},
		clientName: 'ghcr/tool',
	});
	t.deepEqual(summary(router.resolve('privateer/app')).repo, {registry: 'docker.io', name: 'privateer/app'});
	t.deepEqual(summary(router.resolve('alpine')).repo, {registry: 'docker.io', name: 'library/alpine'});

	const reversed = new NamespaceRouter(config([{prefix: '', upstream: 'docker.io'}, {prefix: 'private/', local: true}]));
	t.is(reversed.resolve('private/app').kind, 'cached');
});

test('no matching rule is NAME_UNKNOWN 404', t => {
	const router = new NamespaceRouter(config([{prefix: 'private/', local: true}]));
	const error = rejects(t, () => router.resolve('library/nginx'));
	t.is(error.code, 'NAME_UNKNOWN');
	t.is(error.status, 404);
	t.is(error.message, 'no namespace rule matches this repository');
	t.deepEqual(error.detail, {name: 'library/nginx'});
	t.throws(() => new NamespaceRouter(config([])).resolve('nginx'), {instanceOf: RegistryError});
});

test('library/ goes to Docker Hub by URL, whatever the upstream is called, and to no other upstream', t => {
	const router = new NamespaceRouter(STANDARD);
	t.is((router.resolve('hub/nginx') as {remoteName: string}).remoteName, 'library/nginx');
	t.is((router.resolve('nginx', 'hub') as {remoteName: string}).remoteName, 'library/nginx');
	t.is((router.resolve('tool', 'ghcr.io') as {remoteName: string}).remoteName, 'tool');
	t.is((router.resolve('quay.io/tool') as {remoteName: string}).remoteName, 'tool');
});

test('a name the upstream cannot have is NAME_INVALID 400', t => {
	const router = new NamespaceRouter(STANDARD);
	for (const [name, ns, remote] of [
		['ghcr.io/Org/Tool', undefined, 'Org/Tool'],
		['Nginx', 'docker.io', 'library/Nginx'],
		['docker.io/a__-b', undefined, 'library/a__-b'],
	] as const) {
		const error = rejects(t, () => router.resolve(name, ns));
		t.is(error.code, 'NAME_INVALID', name);
		t.is(error.status, 400);
		t.deepEqual(error.detail, {name: remote});
	}

	// 255 characters is the limit, library/ included.
	t.is((router.resolve('a'.repeat(247), 'docker.io') as {remoteName: string}).remoteName, `library/${'a'.repeat(247)}`);
	t.is(rejects(t, () => router.resolve('a'.repeat(248), 'docker.io')).code, 'NAME_INVALID');
});

test('clientName: local names as they are; cached ones bare when a rule routes them back to their upstream, else under it', t => {
	const {namespaces} = STANDARD;
	t.is(clientName({registry: LOCAL_REGISTRY, name: 'private/app'}, namespaces), 'private/app');
	t.is(clientName({registry: 'docker.io', name: 'library/nginx'}, namespaces), 'library/nginx');
	t.is(clientName({registry: 'ghcr.io', name: 'ghcr/tool'}, namespaces), 'ghcr/tool');
	t.is(clientName({registry: 'ghcr.io', name: 'org/tool'}, namespaces), 'ghcr.io/org/tool'); // the catch-all routes to docker.io
	t.is(clientName({registry: 'docker.io', name: 'private/app'}, namespaces), 'docker.io/private/app'); // private/ is local
	t.is(clientName({registry: 'quay.io', name: 'org/x'}, []), 'quay.io/org/x');
});

test('a cached repository resolves back to itself from its client name', t => {
	const router = new NamespaceRouter(STANDARD);
	for (const repo of [
		{registry: 'docker.io', name: 'library/nginx'},
		{registry: 'docker.io', name: 'bitnami/redis'},
		{registry: 'docker.io', name: 'private/app'},
		{registry: 'ghcr.io', name: 'org/tool'},
		{registry: 'ghcr.io', name: 'ghcr/tool'},
		{registry: 'quay.io', name: 'coreos/etcd'},
		{registry: LOCAL_REGISTRY, name: 'private/app'},
	]) {
		const name = clientName(repo, STANDARD.namespaces);
		t.deepEqual(router.resolve(name).repo, repo, name);
	}
});
