/**
 * Client auth for the V2 API. Without `auth` in the config everything is
 * open. With it: pushes and deletes always need a valid user; pulls need one
 * unless `anonymous_pull` is on; wrong credentials are refused even where
 * none are needed.
 *
 * Clients may send Basic credentials on every request (curl -u), or follow
 * the Bearer challenge to the token endpoint (`PREFIX/auth/token`), which is
 * what Docker, containerd, podman and skopeo do: anonymously for pulls, with
 * their login for pushes and for `docker login`, which checks credentials there.
 */
import {type Next} from 'koa';
import {type MirrorContext} from './state.js';
import {type Htpasswd, parseBasic} from '../auth/htpasswd.js';
import {type Grant, type TokenIssuer} from '../auth/tokens.js';
import {RegistryError} from '../v2/errors.js';

export const SERVICE = 'registry-mirror';

export type AuthOptions = {
	htpasswd: Htpasswd;
	tokens: TokenIssuer;
	anonymousPull: boolean;
	prefix: string;
	publicUrl: string;
};

function realm(ctx: MirrorContext, options: AuthOptions): string {
	const base = options.publicUrl || `${ctx.protocol}://${ctx.host}`;
	return `${base}${options.prefix}/auth/token`;
}

function challenge(ctx: MirrorContext, options: AuthOptions, scope?: string): string {
	return `Bearer realm="${realm(ctx, options)}",service="${SERVICE}"${scope ? `,scope="${scope}"` : ''}`;
}

/** The repository a /v2/NAME/... path is about, for the challenge's scope. */
function scopeOf(path: string, apiRoot: string, write: boolean): string | undefined {
	const match = new RegExp(`^${apiRoot}/(.+)/(?:manifests|blobs|tags|referrers)/`).exec(path);
	return match ? `repository:${match[1]}:${write ? 'pull,push' : 'pull'}` : undefined;
}

async function identify(ctx: MirrorContext, options: AuthOptions): Promise<Grant | 'anonymous' | 'invalid'> {
	const header = ctx.get('authorization');
	if (!header) {
		return 'anonymous';
	}

	if (/^bearer\s/i.test(header)) {
		return options.tokens.verify(header.replace(/^bearer\s+/i, '').trim()) ?? 'invalid';
	}

	const credentials = parseBasic(header);
	if (credentials && (await options.htpasswd.verify(credentials.user, credentials.password))) {
		return {user: credentials.user, push: true};
	}

	return 'invalid';
}

/** GET PREFIX/auth/token?service=&scope=: a token for what the caller may do. */
export function tokenEndpoint(options: AuthOptions) {
	return async (ctx: MirrorContext): Promise<void> => {
		const who = await identify(ctx, options);
		if (who === 'invalid') {
			throw new RegistryError('UNAUTHORIZED', {
				message: 'invalid username or password',
				headers: {'WWW-Authenticate': `Basic realm="${SERVICE}", charset="UTF-8"`},
			});
		}

		let grant: Grant;
		if (who === 'anonymous') {
			if (!options.anonymousPull) {
				throw new RegistryError('UNAUTHORIZED', {
					message: 'authentication required',
					headers: {'WWW-Authenticate': `Basic realm="${SERVICE}", charset="UTF-8"`},
				});
			}

			grant = {user: null, push: false};
		} else {
			grant = who;
		}

		const {token, expiresIn} = options.tokens.issue(grant);
		ctx.set('Cache-Control', 'no-store');
		ctx.body = {token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString()};
	};
}

export function authMiddleware(options: AuthOptions) {
	const apiRoot = `${options.prefix}/v2`;
	const escapedRoot = apiRoot.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
	return async (ctx: MirrorContext, next: Next): Promise<void> => {
		const isRead = ctx.method === 'GET' || ctx.method === 'HEAD';
		const isBase = ctx.path === apiRoot || ctx.path === `${apiRoot}/`;
		const who = await identify(ctx, options);
		const refuse = (message: string) =>
			new RegistryError('UNAUTHORIZED', {
				message,
				headers: {'WWW-Authenticate': challenge(ctx, options, isBase ? undefined : scopeOf(ctx.path, escapedRoot, !isRead))},
			});
		if (who === 'invalid') {
			throw refuse('invalid credentials');
		}

		if (who === 'anonymous') {
			// The base endpoint always challenges, so clients learn where to get a token.
			if (isBase || !isRead || !options.anonymousPull) {
				throw refuse('authentication required');
			}
		} else if (!isRead && !who.push) {
			throw refuse('pushes need a login');
		} else if (who.user === null && !options.anonymousPull) {
			throw refuse('authentication required');
		}

		ctx.state.user = who === 'anonymous' ? null : who.user;
		await next();
	};
}

/** Pages for people (the dashboard): a Basic challenge a browser can answer, unless pulls are anonymous. */
export function browserAuth(options: Pick<AuthOptions, 'htpasswd' | 'anonymousPull'>) {
	return async (ctx: MirrorContext, next: () => Promise<void>): Promise<void> => {
		const credentials = parseBasic(ctx.get('authorization'));
		const valid = credentials !== undefined && (await options.htpasswd.verify(credentials.user, credentials.password));
		if (valid || (options.anonymousPull && !ctx.get('authorization'))) {
			ctx.state.user = valid ? credentials.user : null;
			await next();
			return;
		}

		throw new RegistryError('UNAUTHORIZED', {
			message: 'log in to see the dashboard',
			headers: {'WWW-Authenticate': `Basic realm="${SERVICE}", charset="UTF-8"`},
		});
	};
}

/**
 * The purge API: admins only (`auth.admins`). Basic credentials or one of the
 * mirror's Bearer tokens; none or wrong ones get 401 with a challenge, a
 * valid user who is not an admin 403.
 */
export function adminOnly(options: AuthOptions & {admins: readonly string[]}) {
	return async (ctx: MirrorContext, next: Next): Promise<void> => {
		ctx.state.user = await admin(ctx, options, {action: 'purge', loginMessage: 'authentication required'});
		await next();
	};
}

/**
 * The user making this request if it is one of `auth.admins`: 401 with a
 * Basic challenge for no or wrong credentials (and, with `needsPush`, for a
 * token that grants no push), 403 DENIED for a user who is not an admin.
 */
async function admin(
	ctx: MirrorContext,
	options: AuthOptions & {admins: readonly string[]},
	what: {action: string; loginMessage: string; needsPush?: boolean},
): Promise<string> {
	const who = await identify(ctx, options);
	if (who === 'invalid' || who === 'anonymous' || who.user === null || (what.needsPush === true && !who.push)) {
		throw new RegistryError('UNAUTHORIZED', {
			message: who === 'invalid' ? 'invalid credentials' : what.loginMessage,
			headers: {'WWW-Authenticate': `Basic realm="${SERVICE}", charset="UTF-8"`},
		});
	}

	if (!options.admins.includes(who.user)) {
		throw new RegistryError('DENIED', {message: `only administrators (auth.admins) may ${what.action}`, detail: {user: who.user}});
	}

	return who.user;
}

/**
 * Tag history and pins (`PREFIX/api/v1/`): reads as the dashboard (a login
 * unless pulls are anonymous); pins and unpins only for administrators
 * (`auth.admins`), with Basic credentials or a token of their login.
 */
export function apiAuth(options: AuthOptions & {admins: readonly string[]}) {
	const read = browserAuth(options);
	return async (ctx: MirrorContext, next: Next): Promise<void> => {
		if (ctx.method === 'GET' || ctx.method === 'HEAD') {
			await read(ctx, next);
			return;
		}

		ctx.state.user = await admin(ctx, options, {action: 'pin or unpin', loginMessage: 'changing pins needs a login', needsPush: true});
		await next();
	};
}
