/**
 * How one upstream wants to be authenticated, and the credentials it gets:
 * GET /v2/ once and keep its WWW-Authenticate challenge; for Bearer, a token
 * per scope from the realm (cached until shortly before it expires, one
 * fetch per scope at a time); for Basic, the configured credentials.
 * Credentials go only to the realm the upstream named for itself: the origin
 * (scheme, host and port) of the Bearer realm in its /v2/ challenge, or the
 * configured `token_realm`. A later 401 naming a realm elsewhere gets an
 * anonymous token request at most.
 *
 * The HTTP calls go through the `AuthTransport` the client hands in, so the
 * client's accounting (events, breaker, retries) covers them too.
 */
import {type IncomingHttpHeaders} from 'node:http';
import {LRUCache} from 'lru-cache';
import {type UpstreamConfig} from '../config/load.js';
import {UpstreamError} from '../v2/errors.js';
import {SingleFlight} from '../util/single-flight.js';
import {parseWwwAuthenticate, type Challenge} from './www-authenticate.js';

export type AuthResponse = {status: number; headers: IncomingHttpHeaders; body: Buffer};

export type AuthTransport = {
	/** GET /v2/ of the upstream; throws for a 429 or 5xx (the upstream's problem) and when unreachable. */
	ping(): Promise<AuthResponse>;
	/** GET of a token realm; throws only when unreachable. */
	token(realm: string, options: {searchParams: URLSearchParams; headers: Record<string, string>}): Promise<AuthResponse>;
};

export type AuthWarning = (message: string, fields: Record<string, unknown>) => void;

type TokenResponse = {token?: string; access_token?: string; expires_in?: number};

const DEFAULT_TOKEN_TTL_S = 60;
const TOKEN_MARGIN_MS = 10_000;

export class TokenAuth {
	readonly #config: UpstreamConfig;
	readonly #transport: AuthTransport;
	readonly #warn: AuthWarning | undefined;
	/** undefined: not pinged yet; null: the upstream asks for no auth. */
	#challenge: Challenge | null | undefined;
	/** The origin credentials may go to (see the top of this file). */
	#trustedRealm: string | undefined;
	readonly #ping = new SingleFlight<'ping', Challenge | null>();
	readonly #tokens = new LRUCache<string, string>({max: 2000});
	readonly #tokenFetches = new SingleFlight<string, string>();

	constructor(config: UpstreamConfig, transport: AuthTransport, warn?: AuthWarning) {
		this.#config = config;
		this.#transport = transport;
		this.#warn = warn;
		this.#trustedRealm = config.tokenRealm === undefined ? undefined : originOf(config.tokenRealm);
	}

	/** The Authorization header value for a request in `scope`, or undefined when the upstream wants none (or none can be had). */
	async authorization(scope: string): Promise<string | undefined> {
		const challenge = this.#challenge === undefined ? await this.#ping.run('ping', async () => this.#pingOnce()) : this.#challenge;
		if (challenge?.scheme === 'basic') {
			return this.#basic();
		}

		if (challenge?.scheme !== 'bearer' || !challenge.params['realm']) {
			return undefined;
		}

		const cached = this.#tokens.get(scope);
		return `Bearer ${cached ?? (await this.#tokenFetches.run(scope, async () => this.#fetchToken(challenge, scope)))}`;
	}

	/** After a 401: take the new challenge, if it sent one, and forget the token for `scope`. */
	renew(headers: IncomingHttpHeaders, scope: string): void {
		const challenge = pickChallenge(headers);
		if (challenge) {
			this.#challenge = challenge;
		}

		this.#tokens.delete(scope);
	}

	async #pingOnce(): Promise<Challenge | null> {
		const response = await this.#transport.ping();
		this.#challenge = response.status === 401 ? pickChallenge(response.headers) : null;
		const realm = this.#challenge?.scheme === 'bearer' ? this.#challenge.params['realm'] : undefined;
		if (this.#config.tokenRealm === undefined && realm !== undefined) {
			this.#trustedRealm = originOf(realm);
		}

		return this.#challenge;
	}

	#basic(): string | undefined {
		const credentials = this.#config.credentials;
		return credentials ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}` : undefined;
	}

	async #fetchToken(challenge: Challenge, scope: string): Promise<string> {
		const realm = challenge.params['realm']!;
		const name = this.#config.name;
		const searchParams = new URLSearchParams();
		if (challenge.params['service']) {
			searchParams.set('service', challenge.params['service']);
		}

		searchParams.set('scope', scope);
		const headers: Record<string, string> = {};
		const credentials = this.#config.credentials;
		if (credentials) {
			if (this.#trustedRealm !== undefined && originOf(realm) === this.#trustedRealm) {
				headers['authorization'] = this.#basic()!;
				searchParams.set('account', credentials.username);
			} else {
				this.#warn?.('token realm is not the one the upstream named for itself; requesting an anonymous token', {upstream: name, realm, trusted: this.#trustedRealm});
			}
		}

		const response = await this.#transport.token(realm, {searchParams, headers});
		if (response.status !== 200) {
			throw new UpstreamError('UNAVAILABLE', {
				message: `token server of upstream ${name} answered ${response.status}`,
				detail: {upstream: name, status: response.status},
			});
		}

		let body: TokenResponse;
		try {
			body = JSON.parse(response.body.toString('utf8')) as TokenResponse;
		} catch {
			throw new UpstreamError('UNAVAILABLE', {message: `token server of upstream ${name} sent invalid JSON`});
		}

		const token = body.token ?? body.access_token;
		if (typeof token !== 'string' || token.length === 0) {
			throw new UpstreamError('UNAVAILABLE', {message: `token server of upstream ${name} sent no token`});
		}

		const lifetimeMs = (typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_TTL_S) * 1000;
		this.#tokens.set(scope, token, {ttl: Math.max(1000, lifetimeMs - Math.min(TOKEN_MARGIN_MS, lifetimeMs / 4))});
		return token;
	}
}

/** scheme://host:port of a URL (undefined-safe for a malformed realm: it matches nothing). */
function originOf(url: string): string {
	try {
		return new URL(url).origin;
	} catch {
		return `invalid:${url}`;
	}
}

/** Bearer if offered, else Basic. */
function pickChallenge(headers: IncomingHttpHeaders): Challenge | null {
	const challenges = parseWwwAuthenticate(headers['www-authenticate']);
	return challenges.find(c => c.scheme === 'bearer') ?? challenges.find(c => c.scheme === 'basic') ?? null;
}
