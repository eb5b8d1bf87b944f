import test, {type ExecutionContext} from 'ava';
import {RegistryError} from '../../src/v2/errors.js';
import {MAX_NAME_LENGTH, isTag, isValidName, parseDigest, parseName, parseReference} from '../../src/v2/grammar.js';

const SHA256 = 'sha256:' + 'a'.repeat(64);
const SHA512 = 'sha512:' + '0123456789abcdef'.repeat(8);

function registryError(t: ExecutionContext, fn: () => unknown): RegistryError {
	const error = t.throws(fn, {instanceOf: RegistryError});
	if (!error) {
		throw new Error('expected a RegistryError');
	}

	return error;
}

test('valid repository names', t => {
	for (const name of [
		'a',
		'nginx',
		'library/ubuntu',
		'a/b/c/d',
		'my-org/my-app',
		'a--b',
		'a---b',
		'a.b',
		'a_b',
		'a__b',
		'0/9',
		'foo.bar_baz__qux-quux/x1',
		'private/team/app',
	]) {
		t.true(isValidName(name), name);
		t.is(parseName(name), name);
	}
});

test('invalid repository names', t => {
	for (const name of [
		'',
		'Nginx',
		'library/Ubuntu',
		'a..b',
		'a___b',
		'a._b',
		'a-.b',
		'-a',
		'a-',
		'.a',
		'a.',
		'_a',
		'a_',
		'/a',
		'a/',
		'a//b',
		'/',
		'a b',
		'a:b',
		'a@b',
		'a/../b',
		'ä',
	]) {
		t.false(isValidName(name), JSON.stringify(name));
	}
});

test('names are limited to 255 characters', t => {
	t.is(MAX_NAME_LENGTH, 255);
	t.true(isValidName('a'.repeat(255)));
	t.false(isValidName('a'.repeat(256)));
	const multi = ('abc/'.repeat(64) + 'abcdefghij').slice(0, 255);
	t.is(multi.length, 255);
	t.true(isValidName(multi));
	t.false(isValidName(multi + 'x'));
});

test('parseName throws NAME_INVALID with the name in detail', t => {
	const error = registryError(t, () => parseName('Bad/Name'));
	t.is(error.code, 'NAME_INVALID');
	t.is(error.status, 400);
	t.is(error.message, 'invalid repository name');
	t.deepEqual(error.detail, {name: 'Bad/Name'});
	const long = registryError(t, () => parseName('a'.repeat(1000)));
	t.deepEqual(long.detail, {name: 'a'.repeat(300)});
});

test('tags: up to 128 characters, first character a word character', t => {
	for (const tag of ['latest', 'v1.2.3', '1', '_x', 'A', 'a-b_c.d', 'UPPER', 'a'.repeat(128)]) {
		t.true(isTag(tag), tag);
	}

	for (const tag of ['', '.hidden', '-x', 'a'.repeat(129), 'a/b', 'a:b', 'a b', 'a+b', 'ä']) {
		t.false(isTag(tag), JSON.stringify(tag));
	}
});

test('parseDigest accepts sha256 and sha512', t => {
	t.deepEqual(parseDigest(SHA256), {algorithm: 'sha256', hex: 'a'.repeat(64), value: SHA256});
	t.deepEqual(parseDigest(SHA512), {algorithm: 'sha512', hex: '0123456789abcdef'.repeat(8), value: SHA512});
});

test('parseDigest rejects wrong lengths and upper-case hex as invalid encoding', t => {
	for (const value of [
		'sha256:' + 'a'.repeat(63),
		'sha256:' + 'a'.repeat(65),
		'sha256:' + 'A'.repeat(64),
		'sha256:' + 'a'.repeat(63) + 'G',
		'sha512:' + 'a'.repeat(64),
		'sha256:' + 'a'.repeat(62) + '==',
	]) {
		const error = registryError(t, () => parseDigest(value));
		t.is(error.code, 'DIGEST_INVALID', value);
		t.is(error.status, 400);
		t.is(error.message, 'invalid digest encoding', value);
	}
});

test('parseDigest rejects unknown algorithms', t => {
	for (const value of ['md5:' + 'a'.repeat(32), 'sha384:' + 'a'.repeat(96), 'sha256+b64:' + 'a'.repeat(64)]) {
		const error = registryError(t, () => parseDigest(value));
		t.is(error.code, 'DIGEST_INVALID');
		t.is(error.message, 'unsupported digest algorithm', value);
		t.deepEqual(error.detail, {algorithm: value.split(':')[0]});
	}
});

test('parseDigest rejects malformed values', t => {
	for (const value of ['a'.repeat(64), 'sha256' + 'a'.repeat(64), 'sha256:', ':' + 'a'.repeat(64), 'SHA256:' + 'a'.repeat(64), 'sha256:abc:def', '']) {
		const error = registryError(t, () => parseDigest(value));
		t.is(error.code, 'DIGEST_INVALID', value);
		t.is(error.message, 'invalid digest', value);
		t.deepEqual(error.detail, {digest: value});
	}
});

test('parseReference picks digest or tag', t => {
	t.deepEqual(parseReference('latest'), {kind: 'tag', tag: 'latest'});
	t.deepEqual(parseReference('v1.0'), {kind: 'tag', tag: 'v1.0'});
	t.deepEqual(parseReference(SHA256), {kind: 'digest', digest: {algorithm: 'sha256', hex: 'a'.repeat(64), value: SHA256}});
});

test('parseReference error codes', t => {
	const tag = registryError(t, () => parseReference('.bad'));
	t.is(tag.code, 'TAG_INVALID');
	t.is(tag.status, 400);
	t.is(tag.message, 'invalid tag');
	t.deepEqual(tag.detail, {tag: '.bad'});

	t.is(registryError(t, () => parseReference('a'.repeat(129))).code, 'TAG_INVALID');
	t.is(registryError(t, () => parseReference('')).code, 'TAG_INVALID');

	// anything with a colon is treated as a digest
	const digest = registryError(t, () => parseReference('sha256:' + 'A'.repeat(64)));
	t.is(digest.code, 'DIGEST_INVALID');
	t.is(registryError(t, () => parseReference('latest:foo')).code, 'DIGEST_INVALID');
});
