import path from 'node:path';
import test, {type ExecutionContext} from 'ava';
import {ConfigError, parseConfig, parseConfigText} from '../../src/config/load.js';
import {upstreamVariablePart} from '../../src/config/env.js';

const BASE = '/etc/registry-mirror';
const FILE = {
	listen: '0.0.0.0:5000',
	storage: {dir: './data', max_size: '10GiB'},
	log: {level: 'info'},
	upstreams: {'docker.io': {url: 'https://registry-1.docker.io'}, 'ghcr.io': {url: 'https://ghcr.io', username: 'file-user', password: 'file-pass'}},
	namespaces: [{prefix: '', upstream: 'docker.io'}],
};

function startupError(t: ExecutionContext, run: () => unknown): string {
	const error = t.throws(run, {instanceOf: ConfigError});
	t.false(error?.message.includes('\n') ?? true);
	return error?.message ?? '';
}

test('without MIRROR_* variables the file is used as written', t => {
	const config = parseConfig(FILE, BASE, {MIRROR_CONFIG: '/x.yml', MIRROR_TEST_STORES: 's3+postgres', HOME: '/root'});
	t.deepEqual(config.listen, {host: '0.0.0.0', port: 5000});
	t.is(config.storage.dir, path.join(BASE, 'data'));
	t.is(config.logFormat, 'auto');
	t.deepEqual(config.upstreams.get('ghcr.io')?.credentials, {username: 'file-user', password: 'file-pass'});
	t.is(config.upstreams.get('docker.io')?.credentials, undefined);
});

test('a set variable wins over the file; an empty one counts as unset', t => {
	const config = parseConfig(FILE, BASE, {
		MIRROR_LISTEN: '127.0.0.1:5050',
		MIRROR_PUBLIC_URL: 'https://mirror.lan',
		MIRROR_STORAGE_DIR: '/srv/mirror',
		MIRROR_STORAGE_MAX_SIZE: '2GiB',
		MIRROR_LOG_LEVEL: 'debug',
		MIRROR_LOG_FORMAT: 'json',
		MIRROR_UPSTREAM_DOCKER_IO_USERNAME: 'hub-user',
		MIRROR_UPSTREAM_DOCKER_IO_PASSWORD: 'hub-token',
		MIRROR_UPSTREAM_GHCR_IO_PASSWORD: 'env-pass',
		MIRROR_UPSTREAM_GHCR_IO_URL: '',
	});
	t.deepEqual(config.listen, {host: '127.0.0.1', port: 5050});
	t.is(config.publicUrl, 'https://mirror.lan');
	t.is(config.storage.dir, '/srv/mirror');
	t.is(config.storage.maxSize, 2 * 1024 ** 3);
	t.is(config.logLevel, 'debug');
	t.is(config.logFormat, 'json');
	t.deepEqual(config.upstreams.get('docker.io')?.credentials, {username: 'hub-user', password: 'hub-token'});
	t.deepEqual(config.upstreams.get('ghcr.io')?.credentials, {username: 'file-user', password: 'env-pass'});
	t.is(config.upstreams.get('ghcr.io')?.url, 'https://ghcr.io');
});

test('variables work without any file (the image\'s defaults plus the environment)', t => {
	const config = parseConfigText('', BASE, 'config', {MIRROR_STORAGE_DIR: 'relative/dir', MIRROR_LISTEN: ':5001'});
	t.is(config.storage.dir, path.resolve('relative/dir'), 'relative to the working directory, not the config file');
	t.deepEqual(config.listen, {host: '0.0.0.0', port: 5001});
});

test('an upstream URL from the environment', t => {
	const config = parseConfig(FILE, BASE, {MIRROR_UPSTREAM_DOCKER_IO_URL: 'http://127.0.0.1:5999'});
	t.is(config.upstreams.get('docker.io')?.url, 'http://127.0.0.1:5999');
	t.true(config.upstreams.get('docker.io')?.libraryPrefix, 'still Docker Hub by name');
});

test('a bad value names the variable and the key, in one line', t => {
	t.is(startupError(t, () => parseConfig(FILE, BASE, {MIRROR_LISTEN: 'localhost'})), 'config: MIRROR_LISTEN (listen): not host:port: localhost');
	t.regex(startupError(t, () => parseConfig(FILE, BASE, {MIRROR_LOG_LEVEL: 'loud'})), /^config: MIRROR_LOG_LEVEL \(log\.level\): /);
	t.regex(startupError(t, () => parseConfig(FILE, BASE, {MIRROR_LOG_FORMAT: 'xml'})), /^config: MIRROR_LOG_FORMAT \(log\.format\): /);
	t.regex(startupError(t, () => parseConfig(FILE, BASE, {MIRROR_STORAGE_MAX_SIZE: 'lots'})), /^config: MIRROR_STORAGE_MAX_SIZE \(storage\.max_size\): not a size/);
	t.regex(startupError(t, () => parseConfig(FILE, BASE, {MIRROR_UPSTREAM_DOCKER_IO_URL: 'nope'})), /^config: MIRROR_UPSTREAM_DOCKER_IO_URL \(upstreams\.docker\.io\.url\): /);
	t.regex(startupError(t, () => parseConfig(FILE, BASE, {MIRROR_PUBLIC_URL: 'mirror.lan'})), /^config: MIRROR_PUBLIC_URL \(public_url\): /);
});

test('a file error is still named by its key', t => {
	t.is(startupError(t, () => parseConfig({...FILE, listen: 'x'}, BASE, {MIRROR_LOG_LEVEL: 'debug'})), 'config: listen: not host:port: x');
});

test('credentials for an upstream the file does not declare are refused, naming the variable', t => {
	t.is(
		startupError(t, () => parseConfig(FILE, BASE, {MIRROR_UPSTREAM_QUAY_IO_USERNAME: 'u'})),
		'config: MIRROR_UPSTREAM_QUAY_IO_USERNAME: no upstream named QUAY_IO under upstreams (known: docker.io as DOCKER_IO, ghcr.io as GHCR_IO)',
	);
	t.regex(startupError(t, () => parseConfig(FILE, BASE, {MIRROR_UPSTREAM_DOCKER_IO_USERNAME: 'u'})), /^config: MIRROR_UPSTREAM_DOCKER_IO_USERNAME \(upstreams\.docker\.io\): username and password go together$/);
});

test('upstream names map to variable names', t => {
	t.is(upstreamVariablePart('docker.io'), 'DOCKER_IO');
	t.is(upstreamVariablePart('registry.k8s.io'), 'REGISTRY_K8S_IO');
	t.is(upstreamVariablePart('my-registry:5000'), 'MY_REGISTRY_5000');
});
