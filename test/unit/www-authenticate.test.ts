import test from 'ava';
import {parseWwwAuthenticate} from '../../src/upstream/www-authenticate.js';

test('Docker Hub Bearer challenge with a scope holding colons and commas', t => {
	const header =
		'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push"';
	t.deepEqual(parseWwwAuthenticate(header), [
		{
			scheme: 'bearer',
			params: {realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull,push'},
		},
	]);
});

test('Bearer challenge with error params after the scope', t => {
	const header =
		'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull",error="insufficient_scope"';
	const [challenge] = parseWwwAuthenticate(header);
	t.is(challenge?.params['error'], 'insufficient_scope');
	t.is(challenge?.params['scope'], 'repository:a/b:pull');
});

test('Basic realm', t => {
	t.deepEqual(parseWwwAuthenticate('Basic realm="Registry Realm"'), [{scheme: 'basic', params: {realm: 'Registry Realm'}}]);
});

test('a scheme without params', t => {
	t.deepEqual(parseWwwAuthenticate('Negotiate'), [{scheme: 'negotiate', params: {}}]);
});

test('several challenges in one header', t => {
	t.deepEqual(parseWwwAuthenticate('Bearer realm="https://a/token", service="a", Basic realm="b"'), [
		{scheme: 'bearer', params: {realm: 'https://a/token', service: 'a'}},
		{scheme: 'basic', params: {realm: 'b'}},
	]);
	t.deepEqual(parseWwwAuthenticate('Basic realm="x",Bearer realm="y"'), [
		{scheme: 'basic', params: {realm: 'x'}},
		{scheme: 'bearer', params: {realm: 'y'}},
	]);
	t.deepEqual(parseWwwAuthenticate('Negotiate, Basic realm="x"'), [
		{scheme: 'negotiate', params: {}},
		{scheme: 'basic', params: {realm: 'x'}},
	]);
});

test('an array of headers', t => {
	t.deepEqual(parseWwwAuthenticate(['Basic realm="one"', 'Bearer realm="https://two/token",service="two"']), [
		{scheme: 'basic', params: {realm: 'one'}},
		{scheme: 'bearer', params: {realm: 'https://two/token', service: 'two'}},
	]);
	t.deepEqual(parseWwwAuthenticate([]), []);
	t.deepEqual(parseWwwAuthenticate(undefined), []);
	t.deepEqual(parseWwwAuthenticate(''), []);
});

test('escaped quotes and backslashes inside quoted values', t => {
	t.deepEqual(parseWwwAuthenticate(String.raw`Basic realm="say \"hi\" \\ ok", charset="UTF-8"`), [
		{scheme: 'basic', params: {realm: 'say "hi" \\ ok', charset: 'UTF-8'}},
	]);
});

test('empty quoted value', t => {
	t.deepEqual(parseWwwAuthenticate('Bearer realm="",service="s"'), [{scheme: 'bearer', params: {realm: '', service: 's'}}]);
});

test('bare-token values and whitespace around =', t => {
	t.deepEqual(parseWwwAuthenticate('Bearer realm = "https://r/token" , service=registry.example.com, error=invalid_token'), [
		{scheme: 'bearer', params: {realm: 'https://r/token', service: 'registry.example.com', error: 'invalid_token'}},
	]);
});

test('scheme and parameter names are case-insensitive, values keep their case', t => {
	t.deepEqual(parseWwwAuthenticate('BEARER Realm="https://R/Token",SERVICE="Svc"'), [
		{scheme: 'bearer', params: {realm: 'https://R/Token', service: 'Svc'}},
	]);
});

test('garbage does not throw', t => {
	for (const input of [
		'"',
		'"""',
		'=',
		',,,',
		'   ',
		'Bearer realm="unterminated',
		'Bearer realm=',
		'Bearer =x',
		'Bearer realm="a",,,,service',
		'Negotiate abc==',
		'\u0000\u0001',
		'Bearer realm="a" garbage "more"',
		'x'.repeat(10_000),
	]) {
		t.notThrows(() => parseWwwAuthenticate(input), JSON.stringify(input.slice(0, 40)));
	}

	t.deepEqual(parseWwwAuthenticate('Bearer realm="unterminated'), [{scheme: 'bearer', params: {realm: 'unterminated'}}]);
	t.deepEqual(parseWwwAuthenticate('Bearer realm='), [{scheme: 'bearer', params: {realm: ''}}]);
	t.deepEqual(parseWwwAuthenticate('"'), []);
});
