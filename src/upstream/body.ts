/**
 * An upstream body that gives up nothing it received. got destroys its
 * stream when the connection fails (a reset, a FIN before Content-Length is
 * reached), and an async iterator over a destroyed stream throws at once,
 * dropping the bytes that had arrived but were not read yet. A resumed fill
 * would fetch those bytes again. This reader queues chunks as they arrive
 * (pausing the socket past HOLD_BYTES) and hands them out one by one, as
 * they came, reporting a failure only after everything before it was read.
 */
import {type Readable} from 'node:stream';

/** A body to iterate; `destroy` stops the download. */
export type UpstreamBody = AsyncIterable<Uint8Array> & {destroy(error?: Error): void; readonly destroyed: boolean};

/** Bytes held ahead of the reader; past this the upstream socket is paused. */
const HOLD_BYTES = 4 * 1024 * 1024;

export function losslessBody(source: Readable): UpstreamBody {
	const queue: Buffer[] = [];
	let queued = 0;
	let ended = source.destroyed; // disposed of already (an answer other than the blob): nothing to read
	let failure: Error | undefined;
	let wake: (() => void) | undefined;
	const notify = () => {
		const waiting = wake;
		wake = undefined;
		waiting?.();
	};

	source.on('data', (chunk: Buffer) => {
		queue.push(chunk);
		queued += chunk.length;
		if (queued >= HOLD_BYTES) {
			source.pause();
		}

		notify();
	});
	const finish = () => {
		ended = true;
		notify();
	};

	source.once('end', finish);
	source.once('close', finish);
	source.once('error', (error: Error) => {
		failure = error;
		finish();
	});

	async function* read(): AsyncGenerator<Uint8Array> {
		for (;;) {
			const chunk = queue.shift();
			if (chunk) {
				queued -= chunk.length;
				if (source.isPaused() && queued < HOLD_BYTES / 2) {
					source.resume();
				}

				yield chunk;
				continue;
			}

			if (ended) {
				if (failure) {
					throw failure;
				}

				return;
			}

			await new Promise<void>(resolve => {
				wake = resolve;
			});
		}
	}

	const body = read();
	return Object.defineProperties(body, {
		destroy: {
			value(error?: Error) {
				source.destroy(error);
			},
		},
		destroyed: {get: () => source.destroyed},
	}) as typeof body & UpstreamBody;
}
