/**
 * Bearer tokens for the registry's own clients. The Docker engine only sends
 * credentials when challenged and only asks a token realm for anonymous
 * access, so a Bearer challenge is what lets one endpoint serve anonymous
 * pulls (also through `registry-mirrors`) and still check `docker login`.
 *
 * A token is opaque to clients: base64url(JSON claims) "." HMAC-SHA256, keyed
 * with a secret that lives as long as the process (a restart makes clients
 * fetch a new token on their next 401).
 */
import {createHmac, randomBytes, timingSafeEqual} from 'node:crypto';

export type Grant = {user: string | null; push: boolean};

type Claims = {sub: string | null; push: boolean; exp: number};

export const TOKEN_TTL_S = 300;

export class TokenIssuer {
	readonly #secret: Buffer;

	constructor(secret: Buffer = randomBytes(32)) {
		this.#secret = secret;
	}

	issue(grant: Grant, now = Date.now()): {token: string; expiresIn: number} {
		const claims: Claims = {sub: grant.user, push: grant.push, exp: Math.floor(now / 1000) + TOKEN_TTL_S};
		const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
		return {token: `${payload}.${this.#sign(payload)}`, expiresIn: TOKEN_TTL_S};
	}

	verify(token: string, now = Date.now()): Grant | undefined {
		const [payload, signature, extra] = token.split('.');
		if (!payload || !signature || extra !== undefined) {
			return undefined;
		}

		const expected = Buffer.from(this.#sign(payload));
		const given = Buffer.from(signature);
		if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
			return undefined;
		}

		try {
			const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Claims;
			if (typeof claims.exp !== 'number' || claims.exp * 1000 < now) {
				return undefined;
			}

			return {user: typeof claims.sub === 'string' ? claims.sub : null, push: claims.push === true};
		} catch {
			return undefined;
		}
	}

	#sign(payload: string): string {
		return createHmac('sha256', this.#secret).update(payload).digest('base64url');
	}
}
