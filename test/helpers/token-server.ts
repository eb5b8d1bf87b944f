import {X509Certificate, createPrivateKey, randomUUID, sign, type KeyObject} from 'node:crypto';
import {readFile} from 'node:fs/promises';
import {createServer, type IncomingMessage, type ServerResponse} from 'node:http';
import {join} from 'node:path';
import {closeServer, listenLocal, run, tempDir} from './process.js';

export type TokenServer = {
	url: string;
	realm: string;
	service: string;
	issuer: string;
	rootCertPath: string;
	requests: Array<{scope: string | null; account: string | null}>;
	stop(): Promise<void>;
};

export type TokenServerOptions = {users?: Record<string, string>; expiresIn?: number};

type Access = {type: string; name: string; actions: string[]};

const service = 'registry.test';
const issuer = 'token-test';

function base64url(data: Buffer | string): string {
	return Buffer.from(data).toString('base64url');
}

/** Parses `repository:NAME:pull,push` (NAME may contain ':' only for a registry host with port, so split at the ends). */
function parseScope(scope: string): Access | null {
	const first = scope.indexOf(':');
	const last = scope.lastIndexOf(':');
	if (first <= 0 || last === first) {
		return null;
	}

	const actions = scope.slice(last + 1).split(',').filter((action) => action !== '');
	return {type: scope.slice(0, first), name: scope.slice(first + 1, last), actions};
}

type Identity = {ok: true; account: string | null} | {ok: false};

function authenticate(header: string | undefined, users: Record<string, string> | undefined): Identity {
	if (header === undefined || !header.toLowerCase().startsWith('basic ')) {
		return {ok: true, account: null};
	}

	const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
	const colon = decoded.indexOf(':');
	const username = colon < 0 ? decoded : decoded.slice(0, colon);
	const password = colon < 0 ? '' : decoded.slice(colon + 1);
	if (users === undefined) {
		return {ok: true, account: username};
	}

	return Object.hasOwn(users, username) && users[username] === password ? {ok: true, account: username} : {ok: false};
}

async function readBody(req: IncomingMessage): Promise<string> {
	const chunks: Buffer[] = [];
	for await (const chunk of req) {
		chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
	}

	return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
	const text = JSON.stringify(body);
	res.writeHead(status, {'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers});
	res.end(text);
}

/**
 * Makes an RSA key and a self-signed certificate. distribution 2.8.2 verifies the x5c leaf with
 * x509.Verify against the rootcertbundle pool: a self-signed leaf that is itself in the pool
 * is a complete chain, and without an ExtendedKeyUsage extension any usage is accepted.
 */
async function makeKeyAndCert(dir: string): Promise<{key: KeyObject; certPem: string; certPath: string}> {
	const keyPath = join(dir, 'token.key');
	const certPath = join(dir, 'token.crt');
	const result = await run('openssl', [
		'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=token-test',
		'-keyout', keyPath, '-out', certPath,
		'-addext', 'basicConstraints=critical,CA:TRUE',
		'-addext', 'keyUsage=critical,digitalSignature,keyCertSign',
	]);
	if (result.code !== 0) {
		throw new Error(`openssl req failed (${result.code}): ${result.stderr}`);
	}

	const [keyPem, certPem] = await Promise.all([readFile(keyPath, 'utf8'), readFile(certPath, 'utf8')]);
	return {key: createPrivateKey(keyPem), certPem, certPath};
}

/** A token server that answers like auth.docker.io, signed so the reference registry's `auth: token` accepts it. */
export async function startTokenServer(opts: TokenServerOptions = {}): Promise<TokenServer> {
	const dir = await tempDir('token-');
	const {key, certPem, certPath} = await makeKeyAndCert(dir);
	const x5c = new X509Certificate(certPem).raw.toString('base64');
	const expiresIn = opts.expiresIn ?? 300;
	const requests: TokenServer['requests'] = [];

	function issue(account: string | null, scopes: string[], authenticated: boolean): Record<string, unknown> {
		const now = Math.floor(Date.now() / 1000);
		const access: Access[] = [];
		for (const scope of scopes) {
			const parsed = parseScope(scope);
			if (parsed === null) {
				continue;
			}

			const actions = opts.users === undefined || authenticated ? parsed.actions : parsed.actions.filter((action) => action === 'pull');
			access.push({...parsed, actions});
		}

		const header = {typ: 'JWT', alg: 'RS256', x5c: [x5c]};
		const claims = {
			iss: issuer,
			sub: account ?? '',
			aud: service,
			exp: now + expiresIn,
			nbf: now - 10,
			iat: now,
			jti: randomUUID(),
			access,
		};
		const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
		const signature = sign('sha256', Buffer.from(signingInput), key);
		const token = `${signingInput}.${base64url(signature)}`;
		return {token, access_token: token, expires_in: expiresIn, issued_at: new Date(now * 1000).toISOString()};
	}

	async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
		const url = new URL(req.url ?? '/', 'http://localhost');
		if (url.pathname !== '/token' || (req.method !== 'GET' && req.method !== 'POST')) {
			sendJson(res, 404, {details: 'not found'});
			return;
		}

		// GET with query parameters (docker's flow) or POST with an OAuth2 form (grant_type=password).
		const params = req.method === 'POST' ? new URLSearchParams(await readBody(req)) : url.searchParams;
		const scopes = params.getAll('scope').flatMap((scope) => scope.split(' ')).filter((scope) => scope !== '');
		let identity = authenticate(req.headers.authorization, opts.users);
		const formUser = params.get('username');
		if (req.method === 'POST' && params.get('grant_type') === 'password' && formUser !== null) {
			const basic = `Basic ${Buffer.from(`${formUser}:${params.get('password') ?? ''}`).toString('base64')}`;
			identity = authenticate(basic, opts.users);
		}

		requests.push({
			scope: scopes.length > 0 ? scopes.join(' ') : null,
			account: identity.ok ? identity.account ?? params.get('account') : params.get('account'),
		});
		if (!identity.ok) {
			sendJson(res, 401, {details: 'incorrect username or password'}, {'www-authenticate': 'Basic realm="token-test"'});
			return;
		}

		sendJson(res, 200, issue(identity.account, scopes, identity.account !== null));
	}

	const server = createServer((req, res) => {
		handle(req, res).catch((error: unknown) => {
			if (!res.headersSent) {
				sendJson(res, 500, {details: error instanceof Error ? error.message : String(error)});
			}
		});
	});
	const port = await listenLocal(server);
	const url = `http://127.0.0.1:${port}`;

	return {
		url,
		realm: `${url}/token`,
		service,
		issuer,
		rootCertPath: certPath,
		requests,
		async stop() {
			await closeServer(server);
		},
	};
}
