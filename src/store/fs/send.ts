/**
 * Sends a stored file to a writable (an HTTP response) through two reused
 * 1 MiB buffers: the next chunk is read while the last one is written, and a
 * buffer is read into again only once its write has completed.
 *
 * A file stream allocates a fresh 1 MiB buffer per read instead; at a few GB/s
 * those allocations are external memory that makes V8 collect garbage every
 * few dozen megabytes (a 256 MiB blob cost 13 collections, 8 of them full, of
 * 3 to 11 ms each; more after the process has been idle and its heap shrank).
 */
import {open} from 'node:fs/promises';
import {type Writable} from 'node:stream';
import {type ByteRange} from '../blob-store.js';

const CHUNK = 1024 * 1024;
/** Buffers kept for the next sends; more concurrent sends allocate their own. */
const POOL_MAX = 32;
const pool: Buffer[] = [];

function take(): Buffer {
	return pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
}

function give(buffer: Buffer): void {
	if (pool.length < POOL_MAX) {
		pool.push(buffer);
	}
}

/** Resolves when `out` has handed `chunk` to the kernel; rejects when it cannot. */
async function write(out: Writable, chunk: Buffer): Promise<void> {
	return new Promise((resolve, reject) => {
		if (out.destroyed) {
			reject(new Error('the client went away'));
			return;
		}

		out.write(chunk, error => {
			if (error) {
				reject(error);
			} else {
				resolve();
			}
		});
	});
}

/** Writes bytes `range` (inclusive) of `file` to `out`, then ends it. */
export async function sendFile(file: string, range: ByteRange, out: Writable): Promise<void> {
	const handle = await open(file, 'r');
	const buffers = [take(), take()];
	let writing: Promise<void> = Promise.resolve();
	try {
		let position = range.start;
		let turn = 0;
		while (position <= range.end) {
			const buffer = buffers[turn]!;
			const {bytesRead} = await handle.read(buffer, 0, Math.min(CHUNK, range.end - position + 1), position);
			if (bytesRead === 0) {
				throw new Error(`${file} ended at byte ${position}, before byte ${range.end}`);
			}

			await writing; // the other buffer's write is done: it may be read into next
			position += bytesRead;
			writing = write(out, buffer.subarray(0, bytesRead));
			turn ^= 1;
		}

		await writing;
		out.end();
	} finally {
		await writing.catch(() => undefined); // never hand a buffer back while a write still holds it
		await handle.close();
		buffers.forEach(give);
	}
}
