/** Structured JSON logs (pino): one line per event, fields first, message last. */
import {pino, type Logger as PinoLogger} from 'pino';

export type Logger = PinoLogger;

export function createLogger(level: string): Logger {
	return pino({level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime});
}

/** For tests and tools that want no output. */
export function silentLogger(): Logger {
	return pino({level: 'silent'});
}
