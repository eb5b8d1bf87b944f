/**
 * An upstream body that gives up nothing it received. got destroys its
 * stream when the connection fails (a reset, a FIN before Content-Length is
 * reached), and an async iterator over a destroyed stream throws at once,
 * dropping the bytes that had arrived but were not read yet. A resumed fill
 * would fetch those bytes again. This reader moves bytes into a buffer of its
 * own as they arrive (with backpressure) and reports a failure only after
 * everything before it was read.
 */
import {PassThrough, type Readable} from 'node:stream';

/** A body to iterate; `destroy` stops the download. */
export type UpstreamBody = AsyncIterable<Uint8Array> & {destroy(error?: Error): void; readonly destroyed: boolean};

/** Bytes held ahead of the reader; past this the upstream socket is paused. */
const HOLD_BYTES = 4 * 1024 * 1024;

export function losslessBody(source: Readable): UpstreamBody {
	const held = new PassThrough({highWaterMark: HOLD_BYTES});
	let failure: Error | undefined;
	if (source.destroyed) {
		held.end(); // disposed of already (an answer other than the blob): nothing to read
	}

	source.on('data', (chunk: Buffer) => {
		if (!held.write(chunk)) {
			source.pause();
		}
	});
	held.on('drain', () => source.resume());
	source.once('end', () => held.end());
	source.once('error', (error: Error) => {
		failure = error;
		held.end();
	});

	async function* read(): AsyncGenerator<Uint8Array> {
		for await (const chunk of held) {
			yield chunk as Uint8Array;
		}

		if (failure) {
			throw failure;
		}
	}

	const body = read();
	return Object.defineProperties(body, {
		destroy: {
			value(error?: Error) {
				source.destroy(error);
				held.destroy();
			},
		},
		destroyed: {get: () => source.destroyed},
	}) as typeof body & UpstreamBody;
}
