import {mkdtemp, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test, {type ExecutionContext} from 'ava';
import {ConfigError, loadConfig, parseConfig, parseConfigText} from '../../src/config/load.js';
import {parseDuration, parseSize} from '../../src/config/units.js';

const REPO_CONFIG = fileURLToPath(new URL('../../mirror.config.yml', import.meta.url));
const BASE = path.join(tmpdir(), 'config-test-base');

async function tempDir(t: ExecutionContext): Promise<string> {
	const dir = await mkdtemp(path.join(tmpdir(), 'mirror-config-'));
	t.teardown(async () => rm(dir, {recursive: true, force: true}));
	return dir;
}

/** The ConfigError thrown for `text`, checked to be one line starting `config: `. */
function configError(t: ExecutionContext, run: () => unknown): string {
	const error = t.throws(run, {instanceOf: ConfigError});
	if (!error) {
		throw new Error('expected a ConfigError');
	}

	t.is(error.name, 'ConfigError');
	t.is(error.code, 'ERR_CONFIG');
	t.true(error.message.startsWith('config: '), error.message);
	t.false(error.message.includes('\n'), JSON.stringify(error.message));
	return error.message;
}

function textError(t: ExecutionContext, text: string): string {
	return configError(t, () => parseConfigText(text, BASE, '/etc/mirror.yml'));
}

test('parseDuration', t => {
	t.is(parseDuration('5m'), 300_000);
	t.is(parseDuration('90s'), 90_000);
	t.is(parseDuration('1h30m'), 5_400_000);
	t.is(parseDuration('250ms'), 250);
	t.is(parseDuration('1d'), 86_400_000);
	t.is(parseDuration('1.5s'), 1500);
	t.is(parseDuration(' 2H '), 7_200_000);
	t.is(parseDuration('1m250ms'), 60_250);
	t.is(parseDuration(90), 90_000);
	t.is(parseDuration(0), 0);
	t.is(parseDuration(0.5), 500);
	for (const bad of ['', '5', '5x', 'm', '-5m', '5 m', '1h 30m', 'five minutes', '5m-']) {
		t.is(parseDuration(bad), undefined, JSON.stringify(bad));
	}

	t.is(parseDuration(-1), undefined);
	t.is(parseDuration(Number.NaN), undefined);
	t.is(parseDuration(Number.POSITIVE_INFINITY), undefined);
});

test('parseSize', t => {
	t.is(parseSize('50GiB'), 50 * 2 ** 30);
	t.is(parseSize('500MB'), 500_000_000);
	t.is(parseSize('1.5 TiB'), 1.5 * 2 ** 40);
	t.is(parseSize('10k'), 10_000);
	t.is(parseSize('2KiB'), 2048);
	t.is(parseSize('1gb'), 1e9);
	t.is(parseSize('123'), 123);
	t.is(parseSize('123B'), 123);
	t.is(parseSize('1.5'), 1);
	t.is(parseSize(4096), 4096);
	t.is(parseSize(0), 0);
	for (const bad of ['', 'GiB', '12XB', '-1', '1,5GB', '5 G i B', 'lots']) {
		t.is(parseSize(bad), undefined, JSON.stringify(bad));
	}

	t.is(parseSize(-1), undefined);
	t.is(parseSize(1.5), undefined);
	t.is(parseSize(Number.NaN), undefined);
});

test("the repository's mirror.config.yml loads", t => {
	const config = loadConfig(REPO_CONFIG);
	t.deepEqual(config.listen, {host: '0.0.0.0', port: 5000});
	t.is(config.prefix, '');
	t.is(config.publicUrl, undefined);
	t.is(config.tls, undefined);
	t.is(config.auth, undefined);
	t.is(config.logLevel, 'info');
	t.true(path.isAbsolute(config.storage.dir));
	t.is(config.storage.dir, path.join(path.dirname(REPO_CONFIG), 'data'));
	t.is(config.storage.maxSize, undefined);
	t.deepEqual([...config.upstreams.keys()], ['docker.io']);
	t.deepEqual(config.upstreams.get('docker.io'), {
		name: 'docker.io',
		url: 'https://registry-1.docker.io',
		tagTtlMs: 5 * 60_000,
		timeoutMs: 30_000,
		revalidateTimeoutMs: 3000,
		tokenRealm: undefined,
		maxStaleMs: undefined,
		ratelimitReserve: 0,
		offline: false,
		credentials: undefined,
		libraryPrefix: true,
	});
	t.deepEqual(config.namespaces, [
		{prefix: 'private/', local: true},
		{prefix: '', upstream: 'docker.io'},
	]);
});

test('an empty document gets the defaults', t => {
	const config = parseConfigText('', BASE);
	t.deepEqual(config.listen, {host: '0.0.0.0', port: 5000});
	t.is(config.storage.dir, path.join(BASE, 'data'));
	t.is(config.upstreams.size, 0);
	t.deepEqual(config.namespaces, []);
	t.deepEqual(parseConfig(undefined, BASE).listen, {host: '0.0.0.0', port: 5000});
});

test('values people write are converted', t => {
	const config = parseConfig(
		{
			listen: '127.0.0.1:8080',
			public_url: 'https://mirror.lan:5000/',
			prefix: '/registry/',
			storage: {dir: '/var/lib/mirror', max_size: '50GiB'},
			log: {level: 'debug'},
			upstreams: {
				'ghcr.io': {url: 'https://ghcr.io/', tag_ttl: '90s', timeout: 10, revalidate_timeout: '2s', token_realm: 'https://ghcr.io/token', max_stale: '7d', ratelimit_reserve: 20, offline: true, username: 'u', password: 'p'},
				'hub.example.com:5000': {url: 'http://hub.example.com:5000'},
				mirror: {url: 'https://mirror.docker.io'},
			},
			namespaces: [{prefix: 'ghcr/', upstream: 'ghcr.io'}],
		},
		BASE,
	);
	t.deepEqual(config.listen, {host: '127.0.0.1', port: 8080});
	t.is(config.publicUrl, 'https://mirror.lan:5000');
	t.is(config.prefix, '/registry');
	t.deepEqual(config.storage, {dir: '/var/lib/mirror', maxSize: 50 * 2 ** 30});
	t.is(config.logLevel, 'debug');
	t.deepEqual(config.upstreams.get('ghcr.io'), {
		name: 'ghcr.io',
		url: 'https://ghcr.io',
		tagTtlMs: 90_000,
		timeoutMs: 10_000,
		revalidateTimeoutMs: 2000,
		tokenRealm: 'https://ghcr.io/token',
		maxStaleMs: 7 * 86_400_000,
		ratelimitReserve: 20,
		offline: true,
		credentials: {username: 'u', password: 'p'},
		libraryPrefix: false,
	});
	t.is(config.upstreams.get('hub.example.com:5000')?.url, 'http://hub.example.com:5000');
	t.is(config.upstreams.get('hub.example.com:5000')?.libraryPrefix, false);
	// Docker Hub by URL, whatever the upstream is called
	t.is(config.upstreams.get('mirror')?.libraryPrefix, true);
});

test('listen forms', t => {
	t.deepEqual(parseConfig({listen: 5001}, BASE).listen, {host: '0.0.0.0', port: 5001});
	t.deepEqual(parseConfig({listen: ':5002'}, BASE).listen, {host: '0.0.0.0', port: 5002});
	t.deepEqual(parseConfig({listen: '[::1]:5003'}, BASE).listen, {host: '::1', port: 5003});
	t.deepEqual(parseConfig({listen: 'localhost:65535'}, BASE).listen, {host: 'localhost', port: 65_535});
});

test('unknown top-level key', t => {
	t.is(textError(t, 'listen: 0.0.0.0:5000\nlisten_addr: 1\n'), 'config: listen_addr: unknown key');
});

test('unknown nested keys', t => {
	t.is(textError(t, 'storage:\n  dir: ./d\n  foo: 1\n'), 'config: storage.foo: unknown key');
	t.is(
		textError(t, 'upstreams:\n  docker.io:\n    url: https://registry-1.docker.io\n    ttl: 5m\n'),
		'config: upstreams.docker.io.ttl: unknown key',
	);
});

test('upstream url that is not a URL', t => {
	t.is(textError(t, 'upstreams:\n  docker.io:\n    url: not a URL\n'), 'config: upstreams.docker.io.url: not a URL: not a URL');
	t.is(textError(t, 'upstreams:\n  docker.io:\n    url: ftp://x\n'), 'config: upstreams.docker.io.url: not an http(s) URL: ftp://x');
	t.is(textError(t, 'upstreams:\n  docker.io:\n    tag_ttl: 5m\n'), 'config: upstreams.docker.io.url: required');
});

test('bad tag_ttl', t => {
	t.is(
		textError(t, 'upstreams:\n  docker.io:\n    url: https://registry-1.docker.io\n    tag_ttl: 5 minutes\n'),
		'config: upstreams.docker.io.tag_ttl: not a duration (like 30s, 5m, 1h): 5 minutes',
	);
	t.is(
		textError(t, 'upstreams:\n  docker.io:\n    url: https://registry-1.docker.io\n    tag_ttl: -5\n'),
		'config: upstreams.docker.io.tag_ttl: not a duration (like 30s, 5m, 1h): -5',
	);
});

test('bad listen', t => {
	t.is(textError(t, 'listen: "0.0.0.0:99999"\n'), 'config: listen: not host:port: 0.0.0.0:99999');
	t.is(textError(t, 'listen: "0.0.0.0"\n'), 'config: listen: not host:port: 0.0.0.0');
	t.is(textError(t, 'listen: "a:b:5000"\n'), 'config: listen: not host:port: a:b:5000');
});

test('bad max_size, prefix and log level', t => {
	t.is(textError(t, 'storage:\n  max_size: 12XB\n'), 'config: storage.max_size: not a size (like 500MB, 50GiB): 12XB');
	t.is(textError(t, 'prefix: registry\n'), 'config: prefix: not a path like /registry: registry');
	t.regex(textError(t, 'log:\n  level: loud\n'), /^config: log\.level: /);
});

test('upstream names must be host names', t => {
	t.regex(textError(t, 'upstreams:\n  "bad host!":\n    url: https://r\n'), /^config: upstreams\.bad host!: /);
});

test('namespace referring to a missing upstream', t => {
	t.is(
		textError(t, 'upstreams:\n  docker.io:\n    url: https://registry-1.docker.io\nnamespaces:\n  - prefix: ""\n    upstream: ghcr.io\n'),
		'config: namespaces.0.upstream: no upstream named ghcr.io under upstreams',
	);
	t.is(
		textError(
			t,
			'upstreams:\n  docker.io:\n    url: https://registry-1.docker.io\nnamespaces:\n  - prefix: a/\n    upstream: docker.io\n  - prefix: ""\n    upstream: quay.io\n',
		),
		'config: namespaces.1.upstream: no upstream named quay.io under upstreams',
	);
});

test('namespace entry with neither upstream nor local', t => {
	const expected = 'config: namespaces.0: needs prefix and either upstream: NAME or local: true';
	t.is(textError(t, 'namespaces:\n  - prefix: ""\n'), expected);
	t.is(textError(t, 'namespaces:\n  - prefix: ""\n    local: false\n'), expected);
	t.is(textError(t, 'namespaces:\n  - local: true\n'), expected);
});

test('username without password (and the reverse)', t => {
	t.is(
		textError(t, 'upstreams:\n  docker.io:\n    url: https://registry-1.docker.io\n    username: me\n'),
		'config: upstreams.docker.io: username and password go together',
	);
	t.is(
		textError(t, 'upstreams:\n  docker.io:\n    url: https://registry-1.docker.io\n    password: secret\n'),
		'config: upstreams.docker.io: username and password go together',
	);
});

test('missing htpasswd file', async t => {
	const dir = await tempDir(t);
	t.is(
		configError(t, () => parseConfigText('auth:\n  htpasswd: ./auth/htpasswd\n', dir)),
		`config: auth.htpasswd: file not found: ${path.join(dir, 'auth/htpasswd')}`,
	);
	await writeFile(path.join(dir, 'htpasswd'), 'user:$2y$05$abc\n');
	const config = parseConfigText('auth:\n  htpasswd: htpasswd\n', dir);
	t.deepEqual(config.auth, {htpasswd: path.join(dir, 'htpasswd'), anonymousPull: false, admins: []});
});

test('missing tls files', async t => {
	const dir = await tempDir(t);
	await writeFile(path.join(dir, 'tls.crt'), 'cert');
	t.is(
		configError(t, () => parseConfigText('tls: {cert: tls.crt, key: tls.key}\n', dir)),
		`config: tls.key: file not found: ${path.join(dir, 'tls.key')}`,
	);
});

test('invalid YAML names the file and the line', t => {
	const message = textError(t, 'listen: 0.0.0.0:5000\nstorage:\n  dir: [\n');
	t.regex(message, /^config: \/etc\/mirror\.yml:4: invalid YAML: /);
});

test('invalid YAML is a one-line ConfigError naming the file', t => {
	const message = textError(t, 'listen: 0.0.0.0:5000\nstorage:\n  dir: [\n');
	t.regex(message, /^config: \/etc\/mirror\.yml(?::\d+)?: invalid YAML: Flow sequence/);
});

test('a value of the wrong type is not reported as missing', t => {
	t.not(textError(t, 'storage: 5\n'), 'config: storage: required');
	t.not(textError(t, 'upstreams:\n  docker.io:\n    url: https://r\n    offline: "yes"\n'), 'config: upstreams.docker.io.offline: required');
});

test('a bad value containing a newline still gives one line', t => {
	textError(t, 'listen: |\n  0.0.0.0:5000\n');
});

test('missing config file', t => {
	const file = path.join(tmpdir(), 'no-such-dir-for-mirror-tests', 'mirror.yml');
	t.is(
		configError(t, () => loadConfig(file)),
		`config: ${file}: file not found`,
	);
});

test('loadConfig resolves paths next to the file', async t => {
	const dir = await tempDir(t);
	const file = path.join(dir, 'm.yml');
	await writeFile(file, 'storage:\n  dir: ./cache\n');
	t.is(loadConfig(file).storage.dir, path.join(dir, 'cache'));
	await writeFile(file, 'storage:\n  foo: 1\n');
	t.is(configError(t, () => loadConfig(file)), 'config: storage.foo: unknown key');
});

test('scale-out keys: s3 storage and postgres metadata are read, with defaults', t => {
	const config = parseConfigText(
		[
			'storage:',
			'  dir: ./scratch',
			'  driver: s3',
			'  s3: {endpoint: "http://rgw.lan:7480/", bucket: mirror, access_key: AK, secret_key: SK, prefix: team}',
			'metadata: {driver: postgres, url: "postgres://mirror@db.lan:5432/mirror"}',
			'cluster: {advertise_url: "http://10.0.0.11:5000"}',
		].join('\n'),
		BASE,
	);
	t.deepEqual(config.storage.s3, {
		endpoint: 'http://rgw.lan:7480',
		bucket: 'mirror',
		region: 'us-east-1',
		accessKey: 'AK',
		secretKey: 'SK',
		forcePathStyle: true,
		prefix: 'team/',
		redirect: false,
		partSize: 8 * 1024 * 1024,
	});
	t.is(config.storage.dir, path.join(BASE, 'scratch'));
	t.is(config.postgresUrl, 'postgres://mirror@db.lan:5432/mirror');
	t.is(config.advertiseUrl, 'http://10.0.0.11:5000');

	const defaults = parseConfig({}, BASE);
	t.is(defaults.storage.s3, undefined, 'filesystem by default');
	t.is(defaults.postgresUrl, undefined, 'SQLite by default');
});

test('scale-out keys: what is missing or wrong is named', t => {
	t.is(textError(t, 'storage: {driver: s3}'), 'config: storage.s3: required with driver: s3 (endpoint, bucket, access_key, secret_key)');
	t.is(textError(t, 'storage: {driver: gcs}'), 'config: storage.driver: Invalid option: expected one of "filesystem"|"s3"');
	t.regex(textError(t, 'storage: {driver: s3, s3: {endpoint: "http://x", bucket: "Bad_Bucket", access_key: a, secret_key: b}}'), /^config: storage\.s3\.bucket: not an S3 bucket name/);
	t.regex(textError(t, 'storage: {driver: s3, s3: {endpoint: "http://x", bucket: ok-bucket, access_key: a}}'), /^config: storage\.s3\.secret_key: required/);
	t.regex(textError(t, 'storage: {driver: s3, s3: {endpoint: "http://x", bucket: ok-bucket, access_key: a, secret_key: b, prefix: "../x"}}'), /^config: storage\.s3\.prefix: /);
	t.is(textError(t, 'metadata: {driver: postgres}'), 'config: metadata.url: required with driver: postgres');
	t.is(textError(t, 'metadata: {driver: postgres, url: "mysql://db/x"}'), 'config: metadata.url: not a postgres:// URL');
	t.regex(textError(t, 'cluster: {advertise_url: "not a url"}'), /^config: cluster\.advertise_url: not a URL/);
});
