/** The `Range: bytes=...` header for blob GETs: one range, or none. */
import {type ByteRange} from '../store/blob-store.js';
import {RegistryError} from '../v2/errors.js';

export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
	if (header === undefined || header === '') {
		return undefined;
	}

	const match = /^bytes=(\d*)-(\d*)$/i.exec(header.trim());
	const unsatisfiable = (reason: string) =>
		new RegistryError('RANGE_INVALID', {message: reason, headers: {'Content-Range': `bytes */${size}`}, detail: {range: header.slice(0, 100)}});
	if (!match || (match[1] === '' && match[2] === '')) {
		throw unsatisfiable('malformed Range header (one range, bytes=START-END)');
	}

	let start: number;
	let end: number;
	if (match[1] === '') {
		const suffix = Number(match[2]);
		if (suffix === 0) {
			throw unsatisfiable('empty suffix range');
		}

		start = Math.max(0, size - suffix);
		end = size - 1;
	} else {
		start = Number(match[1]);
		end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
		if (match[2] !== '' && Number(match[2]) < start) {
			throw unsatisfiable('range end before its start');
		}
	}

	if (start >= size || !Number.isSafeInteger(start)) {
		throw unsatisfiable('range starts past the end of the blob');
	}

	return {start, end};
}
