import test, {type ExecutionContext} from 'ava';
import {parseRange} from '../../src/http/range.js';
import {RegistryError} from '../../src/v2/errors.js';

function unsatisfiable(t: ExecutionContext, header: string, size: number): RegistryError {
	const error = t.throws(() => parseRange(header, size), {instanceOf: RegistryError});
	if (!error) {
		throw new Error('expected a RegistryError');
	}

	t.is(error.code, 'RANGE_INVALID', header);
	t.is(error.status, 416, header);
	t.deepEqual(error.headers, {'Content-Range': `bytes */${size}`}, header);
	t.deepEqual(error.detail, {range: header});
	return error;
}

test('no header means the whole blob', t => {
	t.is(parseRange(undefined, 100), undefined);
	t.is(parseRange('', 100), undefined);
});

test('start and end', t => {
	t.deepEqual(parseRange('bytes=0-99', 1000), {start: 0, end: 99});
	t.deepEqual(parseRange('bytes=10-10', 1000), {start: 10, end: 10});
	t.deepEqual(parseRange('bytes=0-0', 1), {start: 0, end: 0});
	t.deepEqual(parseRange(' bytes=5-9 ', 1000), {start: 5, end: 9});
});

test('open-ended range runs to the last byte', t => {
	t.deepEqual(parseRange('bytes=100-', 1000), {start: 100, end: 999});
	t.deepEqual(parseRange('bytes=999-', 1000), {start: 999, end: 999});
	t.deepEqual(parseRange('bytes=0-', 1000), {start: 0, end: 999});
});

test('suffix range is the last N bytes', t => {
	t.deepEqual(parseRange('bytes=-10', 1000), {start: 990, end: 999});
	t.deepEqual(parseRange('bytes=-1000', 1000), {start: 0, end: 999});
	t.deepEqual(parseRange('bytes=-5000', 1000), {start: 0, end: 999});
});

test('an end past the size is clamped', t => {
	t.deepEqual(parseRange('bytes=0-5000', 1000), {start: 0, end: 999});
	t.deepEqual(parseRange('bytes=990-99999999999999999999', 1000), {start: 990, end: 999});
});

test('a start past the size is RANGE_INVALID 416 with Content-Range', t => {
	t.is(unsatisfiable(t, 'bytes=1000-', 1000).message, 'range starts past the end of the blob');
	unsatisfiable(t, 'bytes=1000-1001', 1000);
	unsatisfiable(t, 'bytes=5000-6000', 1000);
	unsatisfiable(t, 'bytes=0-', 0);
	unsatisfiable(t, 'bytes=-10', 0);
});

test('malformed headers', t => {
	for (const header of ['bytes=a-b', 'items=0-1', 'bytes=0-1,5-6', 'bytes=-', 'bytes=', 'bytes 0-1', 'bytes=1', 'bytes=--1', 'bytes=1.5-2', '0-1']) {
		t.is(unsatisfiable(t, header, 1000).message, 'malformed Range header (one range, bytes=START-END)', header);
	}
});

test('an end before its start', t => {
	t.is(unsatisfiable(t, 'bytes=10-5', 1000).message, 'range end before its start');
});

test('an empty suffix', t => {
	t.is(unsatisfiable(t, 'bytes=-0', 1000).message, 'empty suffix range');
});

test('detail keeps at most 100 characters of the header', t => {
	const header = 'bytes=' + '9'.repeat(200) + 'x';
	const error = t.throws(() => parseRange(header, 10), {instanceOf: RegistryError});
	t.deepEqual(error?.detail, {range: header.slice(0, 100)});
});
