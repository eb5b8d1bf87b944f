/**
 * Structured logs (pino): JSON lines, one per event, fields first and the
 * message last; human-readable (pino-pretty) when stdout is a terminal.
 */
import {pino, type Logger as PinoLogger} from 'pino';

export type Logger = PinoLogger;

export function createLogger(level: string, pretty = Boolean(process.stdout.isTTY)): Logger {
	return pino({
		level,
		base: undefined,
		timestamp: pino.stdTimeFunctions.isoTime,
		...(pretty ? {transport: {target: 'pino-pretty', options: {translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname'}}} : {}),
	});
}

/** For tests and tools that want no output. */
export function silentLogger(): Logger {
	return pino({level: 'silent'});
}
