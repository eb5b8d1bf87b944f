/**
 * One client per configured upstream registry: the V2 token flow (ping,
 * WWW-Authenticate, token per scope cached until it expires, one retry on a
 * 401), Basic auth, and redirects followed without the Authorization header
 * when they leave the upstream's host (got strips it across origins).
 */
import http from 'node:http';
import https from 'node:https';
import {type IncomingHttpHeaders} from 'node:http';
import got, {type Got, type Request as GotRequest, type Response as GotResponse, RequestError} from 'got';
import {LRUCache} from 'lru-cache';
import {setTimeout as delay} from 'node:timers/promises';
import {type UpstreamConfig} from '../config/load.js';
import {RegistryError, UpstreamError} from '../v2/errors.js';
import {parseWwwAuthenticate, type Challenge} from './www-authenticate.js';
import {sameSite} from './site.js';
import {CircuitBreaker} from './breaker.js';

export type UpstreamResponse = {status: number; headers: IncomingHttpHeaders; body: Buffer};
export type UpstreamStream = {status: number; headers: IncomingHttpHeaders; body: GotRequest};

export type UpstreamEvents = {
	onRequest?: (upstream: string, method: string, kind: string, status: number) => void;
	onWarning?: (message: string, fields: Record<string, unknown>) => void;
	onError?: (upstream: string) => void;
};

type TokenResponse = {token?: string; access_token?: string; expires_in?: number};

const RETRYABLE_STATUS: ReadonlySet<number> = new Set([502, 503, 504]);
const MAX_RETRIES = 2;
const RETRY_DELAY_MS = 200;
/** Connection failures worth another try; a timeout is not (the upstream is slow, waiting again only doubles it). */
const RETRYABLE_ERRORS: ReadonlySet<string> = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH']);

function isRetryableConnectionError(error: unknown): boolean {
	const code = (error as {code?: unknown} | undefined)?.code;
	return typeof code === 'string' && RETRYABLE_ERRORS.has(code);
}

const USER_AGENT = 'registry-mirror/0.1 (+pull-through cache)';
const DEFAULT_TOKEN_TTL_S = 60;
const TOKEN_MARGIN_MS = 10_000;

export class UpstreamClient {
	readonly name: string;
	readonly #config: UpstreamConfig;
	readonly #got: Got;
	readonly #events: UpstreamEvents;
	#challenge: Challenge | null | undefined;
	#pinging: Promise<Challenge | null> | undefined;
	readonly #tokens = new LRUCache<string, string>({max: 2000});
	readonly #tokenFetches = new Map<string, Promise<string>>();
	readonly breaker = new CircuitBreaker();
	/** The last `ratelimit-remaining` the upstream sent (Docker Hub: pulls left in its window). */
	rateLimitRemaining: string | undefined;

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
			retry: {
				limit: MAX_RETRIES,
				methods: ['GET', 'HEAD'],
				statusCodes: [],
				errorCodes: [...RETRYABLE_ERRORS],
				calculateDelay: ({attemptCount, computedValue}) => (computedValue === 0 ? 0 : 150 * 2 ** (attemptCount - 1)),
			},
		});
	}

	get config(): UpstreamConfig {
		return this.#config;
	}

	url(path: string): string {
		return `${this.#config.url}${path}`;
	}

	/**
	 * A buffered request (manifests, tags, HEADs) with auth, one retry on a
	 * 401, and retries with backoff on 502/503/504 and on connections that
	 * fail (got retries those itself).
	 */
	async request(
		method: 'GET' | 'HEAD',
		path: string,
		options: {scope: string; accept?: string; kind: string; searchParams?: URLSearchParams},
	): Promise<UpstreamResponse> {
		this.#gate();
		let renewed = false;
		for (let attempt = 0; ; attempt++) {
			const authorization = await this.#authorization(options.scope);
			let response: GotResponse<Buffer>;
			try {
				response = await this.#got(this.url(path), {
					method,
					searchParams: options.searchParams,
					headers: {...(options.accept ? {accept: options.accept} : {}), ...(authorization ? {authorization} : {})},
					responseType: 'buffer',
				});
			} catch (error) {
				this.#events.onRequest?.(this.name, method, options.kind, 0);
				this.#outcome(false);
				throw this.#unreachable(error);
			}

			this.#events.onRequest?.(this.name, method, options.kind, response.statusCode);
			if (response.statusCode === 401 && !renewed) {
				renewed = true;
				this.#renewChallenge(response.headers, options.scope);
				continue;
			}

			if (RETRYABLE_STATUS.has(response.statusCode) && attempt < MAX_RETRIES) {
				await delay(RETRY_DELAY_MS * 2 ** attempt);
				continue;
			}

			this.#outcome(response.statusCode < 500);
			this.#checkServerSide(response.statusCode, response.headers);
			return {status: response.statusCode, headers: response.headers, body: response.body};
		}
	}

	/** Refuses at once while the circuit is open: the upstream is known to be down. */
	#gate(): void {
		if (!this.breaker.allow()) {
			throw new RegistryError('UNAVAILABLE', {
								message: `upstream ${this.name} is failing; not asking it again for ${Math.ceil(this.breaker.retryInMs() / 1000)}s`,
				detail: {upstream: this.name, circuit: 'open'},
			});
		}
	}

	/** The outcome of one client-level request (after its retries) feeds the breaker once. */
	#outcome(ok: boolean): void {
		if (ok) {
			this.breaker.success();
		} else {
			this.breaker.failure();
			this.#events.onError?.(this.name);
		}
	}

	/**
	 * A streamed GET (blobs), retried like `request` until the response
	 * headers arrive; once bytes flow, a failure is the fill's to handle.
	 * The caller consumes or destroys `body`.
	 */
	async stream(path: string, options: {scope: string; kind: string}): Promise<UpstreamStream> {
		this.#gate();
		let renewed = false;
		for (let attempt = 0; ; attempt++) {
			const authorization = await this.#authorization(options.scope);
			const request = this.#got.stream(this.url(path), {
				headers: authorization ? {authorization} : {},
				retry: {limit: 0},
			});
			let response: http.IncomingMessage;
			try {
				response = await new Promise<http.IncomingMessage>((resolve, reject) => {
					request.once('response', resolve);
					request.once('error', reject);
				});
			} catch (error) {
				request.destroy();
				this.#events.onRequest?.(this.name, 'GET', options.kind, 0);
				if (attempt < MAX_RETRIES && isRetryableConnectionError(error)) {
					await delay(RETRY_DELAY_MS * 2 ** attempt);
					continue;
				}

				this.#outcome(false);
				throw this.#unreachable(error);
			}

			const status = response.statusCode ?? 502;
			this.#events.onRequest?.(this.name, 'GET', options.kind, status);
			if (status === 401 && !renewed) {
				renewed = true;
				request.destroy();
				this.#renewChallenge(response.headers, options.scope);
				continue;
			}

			if (RETRYABLE_STATUS.has(status) && attempt < MAX_RETRIES) {
				request.destroy();
				await delay(RETRY_DELAY_MS * 2 ** attempt);
				continue;
			}

			this.#outcome(status < 500);
			if (status !== 200) {
				request.destroy();
				this.#checkServerSide(status, response.headers);
			}

			return {status, headers: response.headers, body: request};
		}
	}

	/** GET for the ping and the token realm, inside a request that passed the gate: failures feed the breaker. */
	async #plain(url: string, options: {searchParams?: URLSearchParams; headers?: Record<string, string>}): Promise<GotResponse<Buffer>> {
		try {
			const response = await this.#got(url, {...options, responseType: 'buffer'});
			if (response.statusCode >= 500) {
				this.#outcome(false);
			}

			return response;
		} catch (error) {
			this.#outcome(false);
			throw this.#unreachable(error);
		}
	}

	/** 5xx and 429 are the upstream's problem, never the client's: throw them as such. */
	#checkServerSide(status: number, headers: IncomingHttpHeaders): void {
		const remaining = headers['ratelimit-remaining'];
		if (typeof remaining === 'string') {
			this.rateLimitRemaining = remaining;
		}

		if (status === 429) {
			const retryAfter = headers['retry-after'];
			throw new RegistryError('TOOMANYREQUESTS', {
				message: `upstream ${this.name} is rate-limiting`,
				detail: {upstream: this.name, ratelimitRemaining: headers['ratelimit-remaining']},
				headers: retryAfter ? {'Retry-After': String(retryAfter)} : {},
			});
		}

		if (status >= 500) {
			throw new UpstreamError('UNAVAILABLE', {
				message: `upstream ${this.name} answered ${status}`,
				detail: {upstream: this.name, status},
			});
		}
	}

	#unreachable(error: unknown): RegistryError {
		if (error instanceof RegistryError) {
			return error;
		}

		const code = error instanceof RequestError ? error.code : (error as NodeJS.ErrnoException | undefined)?.code;
		return new UpstreamError('UNAVAILABLE', {
			message: `upstream ${this.name} unreachable`,
			detail: {upstream: this.name, error: code ?? String(error)},
			cause: error,
		});
	}

	async #authorization(scope: string): Promise<string | undefined> {
		const challenge = await this.#ping();
		if (!challenge) {
			return undefined;
		}

		if (challenge.scheme === 'basic') {
			const credentials = this.#config.credentials;
			return credentials ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}` : undefined;
		}

		if (challenge.scheme !== 'bearer' || !challenge.params['realm']) {
			return undefined;
		}

		const token = await this.#token(challenge, scope);
		return `Bearer ${token}`;
	}

	/** GET /v2/ once; remember how the upstream wants to be authenticated. */
	async #ping(): Promise<Challenge | null> {
		if (this.#challenge !== undefined) {
			return this.#challenge;
		}

		this.#pinging ??= (async () => {
			let response: GotResponse<Buffer>;
			try {
				response = await this.#plain(this.url('/v2/'), {});
			} finally {
				this.#pinging = undefined;
			}

			this.#events.onRequest?.(this.name, 'GET', 'ping', response.statusCode);
			this.#checkServerSide(response.statusCode, response.headers);
			this.#challenge = response.statusCode === 401 ? this.#pickChallenge(response.headers) : null;
			return this.#challenge;
		})();
		return this.#pinging;
	}

	#pickChallenge(headers: IncomingHttpHeaders): Challenge | null {
		const challenges = parseWwwAuthenticate(headers['www-authenticate']);
		return challenges.find(c => c.scheme === 'bearer') ?? challenges.find(c => c.scheme === 'basic') ?? null;
	}

	#renewChallenge(headers: IncomingHttpHeaders, scope: string): void {
		const challenge = this.#pickChallenge(headers);
		if (challenge) {
			this.#challenge = challenge;
		}

		this.#tokens.delete(scope);
	}

	async #token(challenge: Challenge, scope: string): Promise<string> {
		const cached = this.#tokens.get(scope);
		if (cached) {
			return cached;
		}

		let pending = this.#tokenFetches.get(scope);
		if (!pending) {
			pending = this.#fetchToken(challenge, scope).finally(() => this.#tokenFetches.delete(scope));
			this.#tokenFetches.set(scope, pending);
		}

		return pending;
	}

	async #fetchToken(challenge: Challenge, scope: string): Promise<string> {
		const realm = challenge.params['realm']!;
		const searchParams = new URLSearchParams();
		if (challenge.params['service']) {
			searchParams.set('service', challenge.params['service']);
		}

		searchParams.set('scope', scope);
		const headers: Record<string, string> = {};
		const credentials = this.#config.credentials;
		if (credentials) {
			if (sameSite(realm, this.#config.url)) {
				headers['authorization'] = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
				searchParams.set('account', credentials.username);
			} else {
				this.#events.onWarning?.('token realm is on another site; requesting an anonymous token', {upstream: this.name, realm});
			}
		}

		const response = await this.#plain(realm, {searchParams, headers});

		this.#events.onRequest?.(this.name, 'GET', 'token', response.statusCode);
		if (response.statusCode !== 200) {
			throw new UpstreamError('UNAVAILABLE', {
				message: `token server of upstream ${this.name} answered ${response.statusCode}`,
				detail: {upstream: this.name, status: response.statusCode},
			});
		}

		let body: TokenResponse;
		try {
			body = JSON.parse(response.body.toString('utf8')) as TokenResponse;
		} catch {
			throw new UpstreamError('UNAVAILABLE', {message: `token server of upstream ${this.name} sent invalid JSON`});
		}

		const token = body.token ?? body.access_token;
		if (typeof token !== 'string' || token.length === 0) {
			throw new UpstreamError('UNAVAILABLE', {message: `token server of upstream ${this.name} sent no token`});
		}

		const lifetimeMs = (typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_TTL_S) * 1000;
		this.#tokens.set(scope, token, {ttl: Math.max(1000, lifetimeMs - Math.min(TOKEN_MARGIN_MS, lifetimeMs / 4))});
		return token;
	}
}

export function pullScope(name: string): string {
	return `repository:${name}:pull`;
}
