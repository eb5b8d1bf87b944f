/**
 * Structured logs (pino), one line per event. Two formats of the same events:
 * `json` (JSON lines, for collectors and journald) and `text` (one readable
 * line: time, level, message, then key=value; a request line reads
 * `GET /v2/... 200 1.2 KiB 12 ms id=...`). `auto` picks text on a terminal.
 */
import {pino, type DestinationStream, type Logger as PinoLogger} from 'pino';

export type Logger = PinoLogger;

export type LogFormat = 'auto' | 'text' | 'json';

export function createLogger(
	level: string,
	format: LogFormat = 'auto',
	out: NodeJS.WritableStream & {isTTY?: boolean} = process.stdout,
): Logger {
	const text = format === 'text' || (format === 'auto' && Boolean(out.isTTY));
	const options = {level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime};
	if (text) {
		return pino(options, textDestination(out));
	}

	return out === process.stdout ? pino(options) : pino(options, out as DestinationStream);
}

/** For tests and tools that want no output. */
export function silentLogger(): Logger {
	return pino({level: 'silent'});
}

function textDestination(out: NodeJS.WritableStream): DestinationStream {
	return {
		write(line: string) {
			out.write(formatTextLine(line));
		},
	};
}

const LEVELS: Record<number, string> = {10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL'};

/** The fields a request line shows in its own layout rather than as key=value. */
const REQUEST_FIELDS = new Set(['method', 'path', 'status', 'bytes', 'ms', 'id']);

/** One JSON log line (as pino writes it) → one readable line; an error's stack follows, indented. */
export function formatTextLine(json: string): string {
	let entry: Record<string, unknown>;
	try {
		entry = JSON.parse(json) as Record<string, unknown>;
	} catch {
		return json.endsWith('\n') ? json : `${json}\n`;
	}

	const {time, level, msg, ...fields} = entry;
	const clock = typeof time === 'string' ? time.slice(11, 23) : '';
	const label = (LEVELS[Number(level)] ?? String(level)).padEnd(5);
	const parts = [clock, label];
	let stack = '';
	if (msg === 'request' && typeof fields['method'] === 'string') {
		const bytes = typeof fields['bytes'] === 'number' ? formatBytes(fields['bytes']) : '-';
		parts.push(`${fields['method']} ${String(fields['path'])} ${String(fields['status'])} ${bytes} ${String(fields['ms'])} ms id=${String(fields['id'])}`);
		for (const key of REQUEST_FIELDS) {
			delete fields[key];
		}

		if (fields['complete'] === true) {
			delete fields['complete'];
		}
	} else if (typeof msg === 'string') {
		parts.push(msg);
	}

	for (const [key, value] of Object.entries(fields)) {
		if (value === undefined) {
			continue;
		}

		if (key === 'err' && typeof value === 'object' && value !== null) {
			const error = value as {message?: unknown; stack?: unknown};
			parts.push(`err=${JSON.stringify(typeof error.message === 'string' ? error.message : '')}`);
			if (typeof error.stack === 'string') {
				stack = error.stack.split('\n').slice(1).map(frame => `    ${frame.trim()}\n`).join('');
			}

			continue;
		}

		parts.push(`${key}=${typeof value === 'string' && /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)}`);
	}

	return `${parts.filter(part => part !== '').join(' ')}\n${stack}`;
}

function formatBytes(bytes: number): string {
	if (bytes < 1024) {
		return `${bytes} B`;
	}

	const units = ['KiB', 'MiB', 'GiB', 'TiB'];
	let value = bytes / 1024;
	let unit = 0;
	while (value >= 1024 && unit < units.length - 1) {
		value /= 1024;
		unit += 1;
	}

	return `${value.toFixed(1)} ${units[unit]!}`;
}
