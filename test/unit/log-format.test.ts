import {PassThrough} from 'node:stream';
import test from 'ava';
import {createLogger, formatTextLine} from '../../src/util/log.js';

function capture(isTTY: boolean): {stream: PassThrough & {isTTY?: boolean}; text: () => string} {
	const stream: PassThrough & {isTTY?: boolean} = new PassThrough();
	stream.isTTY = isTTY;
	let output = '';
	stream.on('data', (chunk: Buffer) => {
		output += chunk.toString('utf8');
	});
	return {stream, text: () => output};
}

const REQUEST = {id: 'req-1f2e', method: 'GET', path: '/v2/library/alpine/blobs/sha256:abc', status: 200, ms: 12, bytes: 3_250_000, complete: true, user: 'alice'};

test('text: one readable line per request with method, path, status, size, time and the request id', t => {
	const {stream, text} = capture(false);
	createLogger('info', 'text', stream).info(REQUEST, 'request');
	const lines = text().split('\n');
	t.is(lines.length, 2, 'one line and its newline');
	t.regex(lines[0]!, /^\d\d:\d\d:\d\d\.\d{3} INFO {2}GET \/v2\/library\/alpine\/blobs\/sha256:abc 200 3\.1 MiB 12 ms id=req-1f2e user=alice$/);
});

test('text: other events show the message, then key=value; a cut response says so', t => {
	const {stream, text} = capture(false);
	const log = createLogger('info', 'text', stream);
	log.warn({upstream: 'docker.io', reason: 'connect ECONNREFUSED 127.0.0.1:1'}, 'serving stale tag');
	log.info({...REQUEST, complete: false, bytes: undefined, user: undefined}, 'request');
	const [warn, request] = text().trimEnd().split('\n');
	t.regex(warn!, / WARN {2}serving stale tag upstream=docker\.io reason="connect ECONNREFUSED 127\.0\.0\.1:1"$/);
	t.regex(request!, / INFO {2}GET \/v2\/library\/alpine\/blobs\/sha256:abc 200 - 12 ms id=req-1f2e complete=false$/);
});

test('text: an error shows its message on the line and its stack below', t => {
	const line = formatTextLine(JSON.stringify({level: 50, time: '2026-12-04T12:00:00.000Z', msg: 'fill failed', err: {type: 'Error', message: 'digest mismatch', stack: 'Error: digest mismatch\n    at fill (fill.ts:1:1)'}}));
	t.is(line, '12:00:00.000 ERROR fill failed err="digest mismatch"\n    at fill (fill.ts:1:1)\n');
});

test('json: one JSON object per line with the request id', t => {
	const {stream, text} = capture(true);
	createLogger('info', 'json', stream).info(REQUEST, 'request');
	const lines = text().trimEnd().split('\n');
	t.is(lines.length, 1);
	const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
	t.like(entry, {level: 30, msg: 'request', id: 'req-1f2e', method: 'GET', status: 200, bytes: 3_250_000});
	t.regex(String(entry['time']), /^\d{4}-\d\d-\d\dT/);
});

test('auto: text on a terminal, JSON otherwise', t => {
	const terminal = capture(true);
	createLogger('info', 'auto', terminal.stream).info(REQUEST, 'request');
	t.regex(terminal.text(), / INFO {2}GET .* id=req-1f2e/);
	const pipe = capture(false);
	createLogger('info', 'auto', pipe.stream).info(REQUEST, 'request');
	t.is((JSON.parse(pipe.text()) as {id: string}).id, 'req-1f2e');
});
