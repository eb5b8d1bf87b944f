/**
 * One client per configured upstream registry. Every request goes through one
 * attempt loop: refused at once while the circuit breaker is open,
 * authenticated by `TokenAuth` (renewed once on a 401), retried with one
 * backoff on 502/503/504 and on connections that fail, and counted once by
 * the breaker. Redirects are followed; got drops the Authorization header
 * when they leave the upstream's origin.
 */
import http from 'node:http';
import https from 'node:https';
import {type IncomingHttpHeaders} from 'node:http';
import {setTimeout as delay} from 'node:timers/promises';
import got, {type Got, type Request as GotRequest} from 'got';
import {type UpstreamConfig} from '../config/load.js';
import {RegistryError, UpstreamError} from '../v2/errors.js';
import {type UpstreamBody, losslessBody} from './body.js';
import {CircuitBreaker} from './breaker.js';
import {RateLimit} from './rate-limit.js';
import {type AuthResponse, type AuthTransport, TokenAuth} from './token-auth.js';

export type UpstreamResponse = {status: number; headers: IncomingHttpHeaders; body: Buffer};
export type UpstreamStream = {status: number; headers: IncomingHttpHeaders; body: UpstreamBody};

export type UpstreamEvents = {
	onRequest?: (upstream: string, method: string, kind: string, status: number) => void;
	onWarning?: (message: string, fields: Record<string, unknown>) => void;
	onError?: (upstream: string) => void;
};

/** The response of one HTTP attempt; `dispose` releases a body nobody will read. */
type Attempt<B> = {status: number; headers: IncomingHttpHeaders; body: B; dispose: () => void};
/** Makes one HTTP attempt with these extra headers (the Authorization, if any). */
type Open<B> = (headers: Record<string, string>) => Promise<Attempt<B>>;
type GetOptions = {method?: 'GET' | 'HEAD'; searchParams?: URLSearchParams; headers?: Record<string, string>};

const RETRYABLE_STATUS: ReadonlySet<number> = new Set([502, 503, 504]);
const MAX_RETRIES = 2;
const RETRY_DELAY_MS = 200;
/** Connection failures worth another try; a timeout is not (the upstream is slow, waiting again only doubles it). */
const RETRYABLE_ERRORS: ReadonlySet<string> = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH']);
const USER_AGENT = 'registry-mirror/0.1 (+pull-through cache)';

/** The one backoff, for retried statuses and failed connections alike: 200 ms, then 400 ms. */
async function backoff(attempt: number): Promise<void> {
	await delay(RETRY_DELAY_MS * 2 ** attempt);
}

export class UpstreamClient {
	readonly name: string;
	readonly #config: UpstreamConfig;
	readonly #got: Got;
	readonly #events: UpstreamEvents;
	readonly #auth: TokenAuth;
	readonly breaker = new CircuitBreaker();
	/** The pull budget the upstream's answers announce (Docker Hub: ratelimit-* headers, Retry-After). */
	readonly rateLimit = new RateLimit();
	#lastSuccessAt = 0;
	#lastFailure: {at: number; reason: string} | undefined;

	constructor(config: UpstreamConfig, events: UpstreamEvents = {}) {
		this.name = config.name;
		this.#config = config;
		this.#events = events;
		this.#got = got.extend({
			prefixUrl: '',
			throwHttpErrors: false,
			followRedirect: true,
			maxRedirects: 5,
			decompress: false,
			headers: {'user-agent': USER_AGENT},
			agent: {
				http: new http.Agent({keepAlive: true, maxSockets: 64}),
				https: new https.Agent({keepAlive: true, maxSockets: 64}),
			},
			timeout: {connect: 10_000, secureConnect: 10_000, response: config.timeoutMs, socket: config.timeoutMs},
			retry: {limit: 0}, // the attempt loop below is the one retry policy
		});
		const transport: AuthTransport = {
			ping: async () => {
				const response = await this.#forAuth('ping', this.url('/v2/'), {});
				this.#checkServerSide(response.status, response.headers);
				return response;
			},
			token: async (realm, options) => this.#forAuth('token', realm, options),
		};
		this.#auth = new TokenAuth(config, transport, events.onWarning);
	}

	get config(): UpstreamConfig {
		return this.#config;
	}

	url(path: string): string {
		return `${this.#config.url}${path}`;
	}

	/** A buffered request (manifests, tags, HEADs). */
	async request(
		method: 'GET' | 'HEAD',
		path: string,
		options: {scope: string; accept?: string; kind: string; searchParams?: URLSearchParams},
	): Promise<UpstreamResponse> {
		const accept: Record<string, string> = options.accept ? {accept: options.accept} : {};
		const open: Open<Buffer> = async headers =>
			this.#buffered(this.url(path), {method, searchParams: options.searchParams, headers: {...accept, ...headers}});
		const {status, headers, body} = await this.#send(method, options, open);
		return {status, headers, body};
	}

	/**
	 * A streamed GET (blobs), retried like `request` until the response
	 * headers arrive; once bytes flow, a failure is the fill's to handle.
	 * The caller consumes or destroys `body`. With `from`, asks for the bytes
	 * from there on (`Range: bytes=from-`): the answer is a 206, or a 200 from
	 * byte 0 when the upstream ignores ranges.
	 */
	async stream(path: string, options: {scope: string; kind: string; from?: number}): Promise<UpstreamStream> {
		const range: Record<string, string> = options.from ? {range: `bytes=${options.from}-`} : {};
		const open: Open<GotRequest> = async headers => {
			const request = this.#got.stream(this.url(path), {headers: {...range, ...headers}});
			try {
				const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
					request.once('response', resolve);
					request.once('error', reject);
				});
				return {status: response.statusCode ?? 502, headers: response.headers, body: request, dispose: () => request.destroy()};
			} catch (error) {
				request.destroy();
				throw error;
			}
		};
		const {status, headers, body} = await this.#send('GET', options, open);
		return {status, headers, body: losslessBody(body)};
	}

	/**
	 * One client-level request: gated by the breaker, whose verdict it gets
	 * once, after the retries; a body other than a 200's is disposed of.
	 */
	async #send<B>(method: string, options: {scope: string; kind: string}, open: Open<B>): Promise<Attempt<B>> {
		if (!this.breaker.allow()) {
			throw new RegistryError('UNAVAILABLE', {
				message: `upstream ${this.name} is failing; not asking it again for ${Math.ceil(this.breaker.retryInMs() / 1000)}s`,
				detail: {upstream: this.name, circuit: 'open'},
			});
		}

		const response = await this.#attempts(method, options.kind, open, options.scope);
		this.#outcome(response.status < 500, `answered ${response.status}`);
		if (response.status !== 200 && response.status !== 206) {
			response.dispose();
		}

		this.#checkServerSide(response.status, response.headers);
		return response;
	}

	/**
	 * The attempt loop: one HTTP attempt after another until one is final.
	 * Failed connections (retryable codes) are retried; with a `scope` (a
	 * client-level request, authenticated) a 401 renews the auth once and
	 * 502/503/504 are retried too. Up to MAX_RETRIES retries; a connection
	 * that still fails counts against the breaker and throws.
	 */
	async #attempts<B>(method: string, kind: string, open: Open<B>, scope?: string): Promise<Attempt<B>> {
		let renewed = false;
		for (let attempt = 0; ; attempt++) {
			const authorization = scope === undefined ? undefined : await this.#auth.authorization(scope);
			let response: Attempt<B>;
			try {
				response = await open(authorization ? {authorization} : {});
			} catch (error) {
				this.#events.onRequest?.(this.name, method, kind, 0);
				const code = (error as {code?: unknown} | undefined)?.code;
				if (attempt < MAX_RETRIES && typeof code === 'string' && RETRYABLE_ERRORS.has(code)) {
					await backoff(attempt);
					continue;
				}

				const detail = {upstream: this.name, error: typeof code === 'string' ? code : String(error)};
				this.#outcome(false, detail.error);
				throw new UpstreamError('UNAVAILABLE', {message: `upstream ${this.name} unreachable`, detail, cause: error});
			}

			this.#events.onRequest?.(this.name, method, kind, response.status);
			if (scope !== undefined && response.status === 401 && !renewed) {
				renewed = true;
				response.dispose();
				this.#auth.renew(response.headers, scope);
				continue;
			}

			if (scope === undefined || !RETRYABLE_STATUS.has(response.status) || attempt >= MAX_RETRIES) {
				return response;
			}

			response.dispose();
			await backoff(attempt);
		}
	}

	/**
	 * A GET for the auth (ping, token realm) inside a request that passed the
	 * gate: its failures feed the breaker, its success is the request's to tell.
	 */
	async #forAuth(kind: 'ping' | 'token', url: string, options: GetOptions): Promise<AuthResponse> {
		const response = await this.#attempts('GET', kind, async () => this.#buffered(url, options));
		if (response.status >= 500) {
			this.#outcome(false, `${kind} answered ${response.status}`);
		}

		return response;
	}

	async #buffered(url: string, options: GetOptions): Promise<Attempt<Buffer>> {
		const response = await this.#got(url, {...options, responseType: 'buffer'});
		return {status: response.statusCode, headers: response.headers, body: response.body, dispose: () => undefined};
	}

	/** Whether the last request reached an upstream that answered (a 4xx counts), and if not why. */
	get health(): {reachable: boolean; lastFailure?: {at: number; reason: string}} {
		const failure = this.#lastFailure;
		return {reachable: failure === undefined || failure.at < this.#lastSuccessAt, ...(failure ? {lastFailure: failure} : {})};
	}

	#outcome(ok: boolean, reason = 'failed'): void {
		if (ok) {
			this.#lastSuccessAt = Date.now();
			this.breaker.success();
		} else {
			this.#lastFailure = {at: Date.now(), reason};
			this.breaker.failure();
			this.#events.onError?.(this.name);
		}
	}

	/** 5xx and 429 are the upstream's problem, never the client's: throw them as such. */
	#checkServerSide(status: number, headers: IncomingHttpHeaders): void {
		this.rateLimit.observe(status, headers);
		if (status === 429) {
			const retryAfter = headers['retry-after'];
			throw new RegistryError('TOOMANYREQUESTS', {
				message: `upstream ${this.name} is rate-limiting`,
				detail: {upstream: this.name, ratelimitRemaining: headers['ratelimit-remaining']},
				headers: retryAfter ? {'Retry-After': String(retryAfter)} : {},
			});
		}

		if (status >= 500) {
			throw new UpstreamError('UNAVAILABLE', {message: `upstream ${this.name} answered ${status}`, detail: {upstream: this.name, status}});
		}
	}
}

export function pullScope(name: string): string {
	return `repository:${name}:pull`;
}
