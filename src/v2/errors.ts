/**
 * Every error code this registry can answer, declared once with its default
 * message and HTTP status (distribution-spec "Error Codes" plus the codes the
 * reference registry adds). Handlers and services throw `RegistryError` (or
 * one of the situations below); only the error middleware turns one into a
 * response.
 */
export const ERROR_CODES = {
	BLOB_UNKNOWN: {status: 404, message: 'blob unknown to registry'},
	BLOB_UPLOAD_INVALID: {status: 400, message: 'blob upload invalid'},
	BLOB_UPLOAD_UNKNOWN: {status: 404, message: 'blob upload unknown to registry'},
	DIGEST_INVALID: {status: 400, message: 'provided digest did not match uploaded content'},
	MANIFEST_BLOB_UNKNOWN: {status: 400, message: 'manifest references a manifest or blob unknown to registry'},
	MANIFEST_INVALID: {status: 400, message: 'manifest invalid'},
	MANIFEST_UNKNOWN: {status: 404, message: 'manifest unknown to registry'},
	NAME_INVALID: {status: 400, message: 'invalid repository name'},
	NAME_UNKNOWN: {status: 404, message: 'repository name not known to registry'},
	SIZE_INVALID: {status: 400, message: 'provided length did not match content length'},
	TAG_INVALID: {status: 400, message: 'manifest tag did not match URI'},
	UNAUTHORIZED: {status: 401, message: 'authentication required'},
	DENIED: {status: 403, message: 'requested access to the resource is denied'},
	UNSUPPORTED: {status: 405, message: 'the operation is unsupported'},
	NOT_FOUND: {status: 404, message: 'no such endpoint'},
	TOOMANYREQUESTS: {status: 429, message: 'too many requests'},
	RANGE_INVALID: {status: 416, message: 'invalid content range'},
	PAGINATION_NUMBER_INVALID: {status: 400, message: 'invalid number of results requested'},
	UNAVAILABLE: {status: 503, message: 'service unavailable'},
	UNKNOWN: {status: 500, message: 'unknown error'},
} as const;

/**
 * The situations in which a code answers with another status than its own,
 * each declared once; each has its error class below.
 */
export const SITUATION_STATUS = {
	/** The upstream misbehaved: unreachable, a 5xx, wrong bytes, a bad manifest (UpstreamError). */
	upstream: 502,
	/** A request body over the limit (TooLargeError). */
	tooLarge: 413,
	/** An upload chunk that does not continue the session (ChunkRangeError). */
	chunkRange: 416,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export type RegistryErrorOptions = {
	message?: string;
	detail?: unknown;
	headers?: Record<string, string>;
	cause?: unknown;
};

export class RegistryError extends Error {
	override name = 'RegistryError';
	readonly code: ErrorCode;
	readonly status: number;
	readonly detail: unknown;
	readonly headers: Record<string, string>;

	constructor(code: ErrorCode, options: RegistryErrorOptions = {}, status: number = ERROR_CODES[code].status) {
		super(options.message ?? ERROR_CODES[code].message, {cause: options.cause});
		this.code = code;
		this.status = status;
		this.detail = options.detail;
		this.headers = options.headers ?? {};
	}

	toJSON(): {errors: Array<{code: string; message: string; detail?: unknown}>} {
		const entry: {code: string; message: string; detail?: unknown} = {code: this.code, message: this.message};
		if (this.detail !== undefined) {
			entry.detail = this.detail;
		}

		return {errors: [entry]};
	}
}

/** The upstream failed us: 502, whatever the code says about what went wrong. */
export class UpstreamError extends RegistryError {
	override name = 'UpstreamError';

	constructor(code: ErrorCode, options: RegistryErrorOptions = {}) {
		super(code, options, SITUATION_STATUS.upstream);
	}
}

/** A request body larger than this registry takes. */
export class TooLargeError extends RegistryError {
	override name = 'TooLargeError';

	constructor(code: 'MANIFEST_INVALID' | 'SIZE_INVALID', options: RegistryErrorOptions = {}) {
		super(code, options, SITUATION_STATUS.tooLarge);
	}
}

/** An upload chunk that does not start where the session ends, or a malformed Content-Range. */
export class ChunkRangeError extends RegistryError {
	override name = 'ChunkRangeError';

	constructor(options: RegistryErrorOptions = {}) {
		super('BLOB_UPLOAD_INVALID', options, SITUATION_STATUS.chunkRange);
	}
}

/** A status the HTTP framework chose (a 4xx it raised before any handler ran), passed on as UNSUPPORTED. */
export class FrameworkError extends RegistryError {
	override name = 'FrameworkError';

	constructor(status: number, options: RegistryErrorOptions = {}) {
		super('UNSUPPORTED', options, status);
	}
}

export function isRegistryError(error: unknown): error is RegistryError {
	return error instanceof RegistryError;
}

/** Errors that mean "the upstream could not answer", as opposed to an authoritative answer like 404. */
export function isUpstreamFailure(error: unknown): boolean {
	return error instanceof RegistryError && (error.code === 'UNAVAILABLE' || error.code === 'TOOMANYREQUESTS');
}
