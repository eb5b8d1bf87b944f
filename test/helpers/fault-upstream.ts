/**
 * A scripted V2 upstream for fault injection: manifests and blobs served from
 * memory, Bearer auth through its own token endpoint, every request counted,
 * and per-path faults that can be set and cleared at any time (resets
 * mid-blob, wrong bytes, short or slow or stalled bodies, 5xx, 429, redirects
 * to a second "CDN" server, hangs, refused connections).
 *
 * Also exports `rawRequest`, a client that reports exactly what came back
 * (status, headers, bytes, and whether the body was complete) and never
 * normalizes the path, for the tests that talk to the mirror.
 */
import {createHash, randomBytes} from 'node:crypto';
import {type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse, createServer, request} from 'node:http';
import {setTimeout as sleep} from 'node:timers/promises';
import {closeServer, listenLocal} from './process.js';

export type Fault =
	/**
	 * Body faults take `chunked: true` to send no Content-Length (chunked
	 * encoding): then the client cannot know the size in advance.
	 */
	/** Headers with the full Content-Length, `afterBytes` of the body (default half), then a TCP reset. */
	| {kind: 'reset'; afterBytes?: number; delayMs?: number; chunked?: boolean}
	/** The announced length, different content: a digest mismatch. */
	| {kind: 'wrong-bytes'; chunked?: boolean}
	/**
	 * Content-Length says more than is sent: `bytes` (default half), then the
	 * socket ends cleanly (FIN). With `chunked`, the response even ends properly
	 * (terminating chunk): a truncation HTTP framing cannot reveal.
	 */
	| {kind: 'short'; bytes?: number; chunked?: boolean}
	/** The right bytes in `chunkSize` pieces (default 4 KiB) with `delayMs` (default 50) between them. */
	| {kind: 'slow'; chunkSize?: number; delayMs?: number; chunked?: boolean}
	/** Headers and `afterBytes` (default half), then silence until the client gives up. */
	| {kind: 'stall'; afterBytes?: number; chunked?: boolean}
	/** The right bytes without a Content-Length. */
	| {kind: 'chunked'}
	/** An error status (5xx usually) with a V2 JSON body. */
	| {kind: 'status'; status: number}
	/** 429 with Retry-After and Docker Hub's ratelimit-* headers. */
	| {kind: 'rate-limit'; retryAfter?: number; limit?: number; remaining?: number}
	/** Blob GETs answer 307 to the CDN server (another port) which serves the bytes. */
	| {kind: 'redirect'}
	/** Never answers (the connection stays open until the client or stop() closes it). */
	| {kind: 'hang'}
	/** Resets the connection before any response byte. */
	| {kind: 'drop'}
	/** 401 with a Bearer challenge naming `realm` (a per-repository challenge that points elsewhere). */
	| {kind: 'challenge'; realm: string};

export type FaultMatch = string | RegExp | ((request: {method: string; path: string}) => boolean);

export type FaultOptions = {
	/** Only these methods (upper case); default all. */
	methods?: string[];
	/** The fault clears itself after this many matching requests. */
	times?: number;
};

export type RecordedRequest = {
	method: string;
	path: string;
	authorization?: string;
	/** The Range header, when there was one. */
	range?: string;
	/** When it arrived, and when its response was complete (unset while hanging or when cut). */
	at: number;
	finishedAt?: number;
	/** The status sent (unset when no response was started). */
	status?: number;
};

export type RequestKind = 'ping' | 'manifest' | 'blob' | 'tags' | 'token' | 'cdn';

export type CountFilter = {method?: string; path?: string; pathIncludes?: string; kind?: RequestKind};

export type FaultUpstreamOptions = {
	/**
	 * Bearer token auth through the token endpoint (true or 'bearer', the default),
	 * Basic auth on every request ('basic', needs `credentials`), or none (false).
	 */
	auth?: boolean | 'bearer' | 'basic';
	/** When set, the token endpoint (or, with auth 'basic', the registry) requires these Basic credentials. */
	credentials?: {username: string; password: string};
	/** expires_in announced by the token endpoint, seconds (default 300). */
	tokenExpiresIn?: number;
	/** How long a token really stays valid, ms (default: as announced). Shorter than announced makes tokens "expire early". */
	tokenValidMs?: number;
	/**
	 * Where the token realm lives: on the registry's own server (default), or on a
	 * separate server, addressed as `realmHost` (default 127.0.0.1; `localhost`
	 * makes it another host as far as the mirror can tell).
	 */
	realm?: 'same' | 'separate';
	realmHost?: string;
	/** Host name in the CDN redirect Location (default 127.0.0.1). */
	cdnHost?: string;
	/** Host name in `url` (default 127.0.0.1). */
	host?: string;
	/** Answer Range requests with a 200 of the whole blob, as some upstreams do (default: 206 with the range). */
	ignoreRange?: boolean;
};

export type FaultUpstream = {
	url: string;
	port: number;
	/** The token realm the challenge names. */
	realm: string;
	cdnUrl: string;
	/** Registry requests (ping, manifests, blobs, tags), in arrival order. */
	requests: RecordedRequest[];
	/** Requests to the token endpoint (whichever server it is on). */
	tokenRequests: RecordedRequest[];
	/** Requests the CDN server received. */
	cdnRequests: RecordedRequest[];
	count(filter?: CountFilter): number;
	/** Body bytes the registry wrote (to the socket) for `path`, or for every path. */
	bytesSent(path?: string): number;
	resetCounts(): void;
	/** Registers blob bytes under a repository; returns the digest. */
	addBlob(repo: string, bytes: Buffer): string;
	/** Registers a manifest (by digest, and under `tag` unless null); returns the digest. */
	addManifest(repo: string, tag: string | null, bytes: Buffer, mediaType: string): string;
	removeTag(repo: string, tag: string): void;
	/** Sets a fault for a path (exact pathname, RegExp or predicate); returns a function that clears it. */
	setFault(match: FaultMatch, fault: Fault, options?: FaultOptions): () => void;
	clearFault(match: FaultMatch): void;
	clearFaults(): void;
	/**
	 * A Docker Hub-like pull budget, null to drop it: every manifest answer
	 * carries `ratelimit-limit`, `ratelimit-remaining` (`N;w=21600`) and
	 * `docker-ratelimit-source`; each manifest GET (not HEAD: Docker Hub does
	 * not count those) spends one pull, and with none left a manifest GET is
	 * answered 429 with `Retry-After`. `remaining` can be set again at any time.
	 */
	setRateLimit(budget: RateLimitBudget | null): void;
	/** What is left of the budget (undefined without one). */
	rateLimitRemaining(): number | undefined;
	/**
	 * Makes the token endpoint fail: answer `status` (500 ...), send a 200 that is
	 * not JSON ('invalid-json') or JSON without a token ('no-token'); null restores it.
	 */
	setTokenFault(fault: TokenFault | null): void;
	/** Stops listening (connections are refused) and drops every open connection. */
	refuse(): Promise<void>;
	/** Listens again on the same port. */
	accept(): Promise<void>;
	stop(): Promise<void>;
};

export type TokenFault = number | 'invalid-json' | 'no-token';

export type RateLimitBudget = {limit: number; remaining: number; source?: string; retryAfter?: number};

type Rule = {match: FaultMatch; fault: Fault; methods?: string[]; remaining?: number};

type StoredManifest = {bytes: Buffer; mediaType: string; digest: string};

const SERVICE = 'fault-upstream';

export function sha256(bytes: Buffer): string {
	return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export function kindOf(path: string): RequestKind | undefined {
	const pathname = path.split('?')[0] ?? '';
	if (pathname === '/v2/' || pathname === '/v2') {
		return 'ping';
	}

	if (pathname.startsWith('/token')) {
		return 'token';
	}

	if (pathname.startsWith('/cdn/')) {
		return 'cdn';
	}

	if (pathname.includes('/manifests/')) {
		return 'manifest';
	}

	if (pathname.endsWith('/tags/list')) {
		return 'tags';
	}

	if (pathname.includes('/blobs/')) {
		return 'blob';
	}

	return undefined;
}

function matches(rule: Rule, method: string, path: string): boolean {
	if (rule.methods && !rule.methods.includes(method)) {
		return false;
	}

	const pathname = path.split('?')[0] ?? '';
	if (typeof rule.match === 'string') {
		return rule.match === pathname;
	}

	if (rule.match instanceof RegExp) {
		return rule.match.test(pathname);
	}

	return rule.match({method, path});
}

function sameMatch(a: FaultMatch, b: FaultMatch): boolean {
	if (a instanceof RegExp && b instanceof RegExp) {
		return a.source === b.source && a.flags === b.flags;
	}

	return a === b;
}

function v2Error(res: ServerResponse, status: number, code: string, headers: Record<string, string> = {}, head = false): void {
	const body = Buffer.from(JSON.stringify({errors: [{code, message: code.toLowerCase().replaceAll('_', ' ')}]}));
	res.writeHead(status, {'content-type': 'application/json', 'content-length': String(body.length), ...headers});
	res.end(head ? undefined : body);
}

async function write(res: ServerResponse, chunk: Buffer): Promise<void> {
	if (res.destroyed) {
		return;
	}

	await new Promise<void>((resolve) => {
		res.write(chunk, () => {
			resolve();
		});
	});
}

export async function startFaultUpstream(options: FaultUpstreamOptions = {}): Promise<FaultUpstream> {
	const auth = options.auth === undefined || options.auth === true ? 'bearer' : options.auth;
	if (auth === 'basic' && !options.credentials) {
		throw new Error('startFaultUpstream: auth "basic" needs credentials');
	}

	const basicExpected = options.credentials
		? `Basic ${Buffer.from(`${options.credentials.username}:${options.credentials.password}`).toString('base64')}`
		: '';
	const expiresIn = options.tokenExpiresIn ?? 300;
	const validMs = options.tokenValidMs ?? expiresIn * 1000;
	const host = options.host ?? '127.0.0.1';
	const blobs = new Map<string, Map<string, Buffer>>(); // repo -> digest -> bytes
	const allBlobs = new Map<string, Buffer>();
	const manifests = new Map<string, Map<string, StoredManifest>>(); // repo -> digest -> manifest
	const tags = new Map<string, Map<string, string>>(); // repo -> tag -> digest
	const tokens = new Map<string, {scopes: string[]; until: number}>();
	const requests: RecordedRequest[] = [];
	const tokenRequests: RecordedRequest[] = [];
	const cdnRequests: RecordedRequest[] = [];
	let rules: Rule[] = [];
	let tokenFault: TokenFault | null = null;
	let budget: RateLimitBudget | null = null;
	const hung = new Set<ServerResponse>();
	/** Body bytes written per path (see bytesSent). */
	const sent = new Map<string, number>();

	let port = 0;
	let tokenPort = 0;
	let cdnPort = 0;
	const separateRealm = options.realm === 'separate' || options.realmHost !== undefined;
	const realmUrl = (): string =>
		separateRealm ? `http://${options.realmHost ?? '127.0.0.1'}:${tokenPort}/token` : `http://${host}:${port}/token`;

	function record(list: RecordedRequest[], req: IncomingMessage, res: ServerResponse): RecordedRequest {
		const entry: RecordedRequest = {method: req.method ?? 'GET', path: req.url ?? '/', at: Date.now()};
		if (req.headers.authorization !== undefined) {
			entry.authorization = req.headers.authorization;
		}

		if (req.headers.range !== undefined) {
			entry.range = req.headers.range;
		}

		res.once('finish', () => {
			entry.finishedAt = Date.now();
		});
		res.once('close', () => {
			if (res.headersSent) {
				entry.status = res.statusCode;
			}
		});
		list.push(entry);
		return entry;
	}

	/** The first fault rule that applies, consuming one use of it. */
	function faultFor(method: string, path: string): Fault | undefined {
		const rule = rules.find((candidate) => matches(candidate, method, path));
		if (!rule) {
			return undefined;
		}

		if (rule.remaining !== undefined) {
			rule.remaining--;
			if (rule.remaining <= 0) {
				rules = rules.filter((candidate) => candidate !== rule);
			}
		}

		return rule.fault;
	}

	/** Faults that replace the whole answer, before auth and lookup: a broken server fails regardless. */
	function answerFault(fault: Fault, req: IncomingMessage, res: ServerResponse): boolean {
		const head = req.method === 'HEAD';
		switch (fault.kind) {
			case 'hang': {
				hung.add(res);
				res.once('close', () => hung.delete(res));
				return true;
			}

			case 'challenge': {
				v2Error(res, 401, 'UNAUTHORIZED', {'www-authenticate': `Bearer realm="${fault.realm}",service="${SERVICE}"`}, head);
				return true;
			}

			case 'drop': {
				(req.socket).resetAndDestroy();
				return true;
			}

			case 'status': {
				v2Error(res, fault.status, fault.status === 503 ? 'UNAVAILABLE' : 'UNKNOWN', {}, head);
				return true;
			}

			case 'rate-limit': {
				v2Error(
					res,
					429,
					'TOOMANYREQUESTS',
					{
						'retry-after': String(fault.retryAfter ?? 30),
						'ratelimit-limit': `${fault.limit ?? 100};w=21600`,
						'ratelimit-remaining': `${fault.remaining ?? 0};w=21600`,
					},
					head,
				);
				return true;
			}

			default: {
				return false;
			}
		}
	}

	function challenge(res: ServerResponse, scope: string | undefined, head: boolean): void {
		if (auth === 'basic') {
			v2Error(res, 401, 'UNAUTHORIZED', {'www-authenticate': `Basic realm="${SERVICE}"`}, head);
			return;
		}

		const params = [`realm="${realmUrl()}"`, `service="${SERVICE}"`];
		if (scope !== undefined) {
			params.push(`scope="${scope}"`);
		}

		v2Error(res, 401, 'UNAUTHORIZED', {'www-authenticate': `Bearer ${params.join(',')}`}, head);
	}

	function authorized(req: IncomingMessage, repo: string | undefined): boolean {
		if (auth === false) {
			return true;
		}

		const header = req.headers.authorization ?? '';
		if (auth === 'basic') {
			return header === basicExpected;
		}

		if (!/^bearer /i.test(header)) {
			return false;
		}

		const grant = tokens.get(header.slice(7).trim());
		if (!grant || grant.until < Date.now()) {
			return false;
		}

		return repo === undefined || grant.scopes.some((scope) => scope.startsWith(`repository:${repo}:`) && /[:,]pull(,|$)/.test(scope));
	}

	/** A `Range: bytes=N-` or `bytes=N-M` this upstream honours: the first byte and the last. */
	function rangeOf(req: IncomingMessage, length: number): {start: number; end: number} | undefined {
		const match = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
		if (!match || options.ignoreRange) {
			return undefined;
		}

		const start = Number(match[1]);
		const end = match[2] === '' ? length - 1 : Math.min(Number(match[2]), length - 1);
		return start < length && start <= end ? {start, end} : undefined;
	}

	async function sendBody(req: IncomingMessage, res: ServerResponse, bytes: Buffer, headers: Record<string, string>, fault: Fault | undefined): Promise<void> {
		const head = req.method === 'HEAD';
		const chunked = fault !== undefined && (fault.kind === 'chunked' || ('chunked' in fault && fault.chunked === true));
		const range = chunked ? undefined : rangeOf(req, bytes.length);
		const whole = fault?.kind === 'wrong-bytes' ? Buffer.from(bytes.map((byte) => byte ^ 0xff)) : bytes;
		const body = range ? whole.subarray(range.start, range.end + 1) : whole;
		const path = (req.url ?? '/').split('?')[0] ?? '/';
		const counted = res.write.bind(res);
		res.write = ((chunk: Buffer, ...rest: unknown[]) => {
			sent.set(path, (sent.get(path) ?? 0) + chunk.length);
			return (counted as (...args: unknown[]) => boolean)(chunk, ...rest);
		}) as typeof res.write;
		if (range) {
			res.writeHead(206, {...headers, 'content-length': String(body.length), 'content-range': `bytes ${range.start}-${range.end}/${bytes.length}`});
		} else {
			res.writeHead(200, chunked ? headers : {...headers, 'content-length': String(bytes.length)});
		}

		if (head) {
			res.end();
			return;
		}

		const half = Math.floor(body.length / 2);
		switch (fault?.kind) {
			case 'reset': {
				await write(res, body.subarray(0, fault.afterBytes ?? half));
				await sleep(fault.delayMs ?? 100);
				(res.socket)?.resetAndDestroy();
				return;
			}

			case 'short': {
				await write(res, body.subarray(0, fault.bytes ?? half));
				await sleep(20);
				if (chunked) {
					res.end(); // a well-formed, complete-looking chunked response
				} else {
					(res.socket)?.end();
				}

				return;
			}

			case 'stall': {
				await write(res, body.subarray(0, fault.afterBytes ?? half));
				hung.add(res);
				res.once('close', () => hung.delete(res));
				return;
			}

			case 'slow': {
				const size = fault.chunkSize ?? 4096;
				for (let offset = 0; offset < body.length && !res.destroyed; offset += size) {
					await write(res, body.subarray(offset, offset + size));
					if (offset + size < body.length) {
						await sleep(fault.delayMs ?? 50);
					}
				}

				res.end();
				return;
			}

			default: {
				res.write(body);
				res.end();
			}
		}
	}

	/** /v2/NAME/(manifests|blobs)/REF and /v2/NAME/tags/list. */
	function parsePath(pathname: string): {repo: string; resource: 'manifests' | 'blobs' | 'tags'; reference: string} | undefined {
		const match = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(pathname);
		if (match) {
			return {repo: match[1]!, resource: match[2] as 'manifests' | 'blobs', reference: decodeURIComponent(match[3]!)};
		}

		const list = /^\/v2\/(.+)\/tags\/list$/.exec(pathname);
		return list ? {repo: list[1]!, resource: 'tags', reference: ''} : undefined;
	}

	function handleToken(req: IncomingMessage, res: ServerResponse): void {
		record(tokenRequests, req, res);
		const fault = faultFor(req.method ?? 'GET', req.url ?? '/');
		if (fault && answerFault(fault, req, res)) {
			return;
		}

		if (typeof tokenFault === 'number') {
			res.writeHead(tokenFault, {'content-type': 'text/plain'});
			res.end('token endpoint failure (scripted)');
			return;
		}

		if (tokenFault !== null) {
			res.writeHead(200, {'content-type': 'application/json'});
			res.end(tokenFault === 'invalid-json' ? '<html>maintenance</html>' : JSON.stringify({expires_in: 300}));
			return;
		}

		if (options.credentials) {
			if ((req.headers.authorization ?? '') !== basicExpected) {
				res.writeHead(401, {'content-type': 'application/json', 'www-authenticate': `Basic realm="${SERVICE}"`});
				res.end(JSON.stringify({details: 'incorrect username or password'}));
				return;
			}
		}

		const url = new URL(req.url ?? '/', 'http://x');
		const token = randomBytes(16).toString('hex');
		tokens.set(token, {scopes: url.searchParams.getAll('scope'), until: Date.now() + validMs});
		const body = JSON.stringify({token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString()});
		res.writeHead(200, {'content-type': 'application/json'});
		res.end(body);
	}

	async function handleRegistry(req: IncomingMessage, res: ServerResponse): Promise<void> {
		const method = req.method ?? 'GET';
		const path = req.url ?? '/';
		const pathname = path.split('?')[0] ?? '';
		if (pathname === '/token' && !separateRealm) {
			handleToken(req, res);
			return;
		}

		record(requests, req, res);
		const fault = faultFor(method, path);
		if (fault && answerFault(fault, req, res)) {
			return;
		}

		const head = method === 'HEAD';
		if (pathname === '/v2/' || pathname === '/v2') {
			if (!authorized(req, undefined)) {
				challenge(res, undefined, head);
				return;
			}

			res.writeHead(200, {'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0'});
			res.end(head ? undefined : '{}');
			return;
		}

		const parsed = parsePath(pathname);
		if (!parsed || (method !== 'GET' && method !== 'HEAD')) {
			v2Error(res, 404, 'NOT_FOUND', {}, head);
			return;
		}

		const {repo, resource, reference} = parsed;
		if (!authorized(req, repo)) {
			challenge(res, `repository:${repo}:pull`, head);
			return;
		}

		const common = {'docker-distribution-api-version': 'registry/2.0'};
		if (resource === 'tags') {
			const list = [...(tags.get(repo)?.keys() ?? [])].sort();
			if (list.length === 0 && !manifests.has(repo)) {
				v2Error(res, 404, 'NAME_UNKNOWN', common, head);
				return;
			}

			await sendBody(req, res, Buffer.from(JSON.stringify({name: repo, tags: list})), {...common, 'content-type': 'application/json'}, fault);
			return;
		}

		if (resource === 'manifests' && budget) {
			const spent = method === 'GET' && budget.remaining > 0;
			const refused = method === 'GET' && budget.remaining === 0;
			if (spent) {
				budget.remaining--;
			}

			const counts = {
				'ratelimit-limit': `${budget.limit};w=21600`,
				'ratelimit-remaining': `${budget.remaining};w=21600`,
				'docker-ratelimit-source': budget.source ?? '127.0.0.1',
			};
			if (refused) {
				v2Error(res, 429, 'TOOMANYREQUESTS', {...common, ...counts, 'retry-after': String(budget.retryAfter ?? 3600)});
				return;
			}

			Object.assign(common, counts);
		}

		if (resource === 'manifests') {
			const digest = reference.includes(':') ? reference : tags.get(repo)?.get(reference);
			const manifest = digest === undefined ? undefined : manifests.get(repo)?.get(digest);
			if (!manifest) {
				v2Error(res, 404, 'MANIFEST_UNKNOWN', common, head);
				return;
			}

			await sendBody(
				req,
				res,
				manifest.bytes,
				{...common, 'content-type': manifest.mediaType, 'docker-content-digest': manifest.digest, etag: `"${manifest.digest}"`},
				fault,
			);
			return;
		}

		const bytes = blobs.get(repo)?.get(reference);
		if (!bytes) {
			v2Error(res, 404, 'BLOB_UNKNOWN', common, head);
			return;
		}

		if (fault?.kind === 'redirect' && !head) {
			res.writeHead(307, {...common, location: `http://${options.cdnHost ?? '127.0.0.1'}:${cdnPort}/cdn/${reference}?expires=${Date.now() + 60_000}`});
			res.end();
			return;
		}

		await sendBody(req, res, bytes, {...common, 'content-type': 'application/octet-stream', 'docker-content-digest': reference}, fault);
	}

	function handleCdn(req: IncomingMessage, res: ServerResponse): void {
		record(cdnRequests, req, res);
		const pathname = (req.url ?? '/').split('?')[0] ?? '';
		const digest = pathname.startsWith('/cdn/') ? decodeURIComponent(pathname.slice(5)) : '';
		const bytes = allBlobs.get(digest);
		if (!bytes) {
			res.writeHead(404, {'content-type': 'text/plain'});
			res.end('not found');
			return;
		}

		res.writeHead(200, {'content-type': 'application/octet-stream', 'content-length': String(bytes.length)});
		res.end(req.method === 'HEAD' ? undefined : bytes);
	}

	const onError = (res: ServerResponse) => (error: unknown) => {
		if (!res.headersSent) {
			res.writeHead(500, {'content-type': 'text/plain'});
			res.end(`fault upstream bug: ${String(error)}`);
		} else {
			res.destroy();
		}
	};

	const server: Server = createServer((req, res) => {
		handleRegistry(req, res).catch(onError(res));
	});
	const tokenServer: Server | undefined = separateRealm
		? createServer((req, res) => {
				try {
					handleToken(req, res);
				} catch (error) {
					onError(res)(error);
				}
			})
		: undefined;
	const cdnServer: Server = createServer(handleCdn);
	// Keep-alive connections of refused/stopped servers must not linger.
	server.keepAliveTimeout = 5000;

	port = await listenLocal(server, 0);
	cdnPort = await listenLocal(cdnServer, 0);
	if (tokenServer) {
		tokenPort = await listenLocal(tokenServer, 0);
	}

	const releaseHung = (): void => {
		for (const res of hung) {
			res.destroy();
		}

		hung.clear();
	};

	const upstream: FaultUpstream = {
		url: `http://${host}:${port}`,
		port,
		realm: realmUrl(),
		cdnUrl: `http://${options.cdnHost ?? '127.0.0.1'}:${cdnPort}`,
		requests,
		tokenRequests,
		cdnRequests,
		count(filter: CountFilter = {}) {
			const pool = filter.kind === 'token' ? tokenRequests : filter.kind === 'cdn' ? cdnRequests : requests;
			return pool.filter(
				(entry) =>
					(filter.method === undefined || entry.method === filter.method.toUpperCase()) &&
					(filter.path === undefined || entry.path.split('?')[0] === filter.path) &&
					(filter.pathIncludes === undefined || entry.path.includes(filter.pathIncludes)) &&
					(filter.kind === undefined || filter.kind === 'token' || filter.kind === 'cdn' || kindOf(entry.path) === filter.kind),
			).length;
		},
		bytesSent(path?: string) {
			return path === undefined ? [...sent.values()].reduce((sum, value) => sum + value, 0) : (sent.get(path) ?? 0);
		},
		setRateLimit(next) {
			budget = next === null ? null : {...next};
		},
		rateLimitRemaining() {
			return budget?.remaining;
		},
		resetCounts() {
			sent.clear();
			requests.length = 0;
			tokenRequests.length = 0;
			cdnRequests.length = 0;
		},
		addBlob(repo, bytes) {
			const digest = sha256(bytes);
			let map = blobs.get(repo);
			if (!map) {
				map = new Map();
				blobs.set(repo, map);
			}

			map.set(digest, bytes);
			allBlobs.set(digest, bytes);
			return digest;
		},
		addManifest(repo, tag, bytes, mediaType) {
			const digest = sha256(bytes);
			let map = manifests.get(repo);
			if (!map) {
				map = new Map();
				manifests.set(repo, map);
			}

			map.set(digest, {bytes, mediaType, digest});
			if (tag !== null) {
				let tagMap = tags.get(repo);
				if (!tagMap) {
					tagMap = new Map();
					tags.set(repo, tagMap);
				}

				tagMap.set(tag, digest);
			}

			return digest;
		},
		removeTag(repo, tag) {
			tags.get(repo)?.delete(tag);
		},
		setFault(match, fault, faultOptions = {}) {
			const rule: Rule = {match, fault, methods: faultOptions.methods?.map((method) => method.toUpperCase()), remaining: faultOptions.times};
			rules = [rule, ...rules.filter((candidate) => !sameMatch(candidate.match, match))];
			return () => {
				rules = rules.filter((candidate) => candidate !== rule);
				if (fault.kind === 'hang' || fault.kind === 'stall') {
					releaseHung();
				}
			};
		},
		clearFault(match) {
			rules = rules.filter((candidate) => !sameMatch(candidate.match, match));
			releaseHung();
		},
		clearFaults() {
			rules = [];
			releaseHung();
		},
		setTokenFault(fault) {
			tokenFault = fault;
		},
		async refuse() {
			releaseHung();
			await closeServer(server);
		},
		async accept() {
			if (!server.listening) {
				await listenLocal(server, port);
			}
		},
		async stop() {
			rules = [];
			releaseHung();
			await Promise.all([closeServer(server), closeServer(cdnServer), ...(tokenServer ? [closeServer(tokenServer)] : [])]);
		},
	};
	return upstream;
}

// --- a client that shows exactly what came back --------------------------------------------

export type RawResponse = {
	/** 0 when no response arrived at all. */
	status: number;
	headers: IncomingHttpHeaders;
	body: Buffer;
	/** True only when the body ended as the server framed it (Content-Length or chunked end). */
	complete: boolean;
	/** Set when the connection failed (before or during the response). */
	error?: string;
};

export type RawRequestOptions = {
	method?: string;
	headers?: Record<string, string | string[]>;
	body?: Buffer | string;
	timeoutMs?: number;
	/** Called with every body chunk as it arrives. */
	onData?: (chunk: Buffer) => void;
	/** Hang up (destroy the connection) once this many body bytes arrived: a client that goes away. */
	abortAfterBytes?: number;
};

/**
 * One request on a fresh connection. `target` is a base URL plus a path that is
 * sent exactly as written (`..`, `%2e`, `//` untouched). Never rejects: a reset
 * or timeout shows up as `error` (with `status` 0 when it came before the headers).
 */
export async function rawRequest(base: string, path: string, options: RawRequestOptions = {}): Promise<RawResponse> {
	const url = new URL(base);
	return new Promise((resolve) => {
		let settled = false;
		const result: RawResponse = {status: 0, headers: {}, body: Buffer.alloc(0), complete: false};
		const chunks: Buffer[] = [];
		const finish = (error?: string): void => {
			if (settled) {
				return;
			}

			settled = true;
			clearTimeout(timer);
			result.body = Buffer.concat(chunks);
			if (error !== undefined) {
				result.error = error;
			}

			resolve(result);
		};

		const timer = setTimeout(() => {
			req.destroy(new Error(`rawRequest: no complete answer within ${options.timeoutMs ?? 30_000} ms`));
		}, options.timeoutMs ?? 30_000);
		const req = request(
			{host: url.hostname, port: url.port, method: options.method ?? 'GET', path, headers: options.headers, agent: false},
			(res) => {
				result.status = res.statusCode ?? 0;
				result.headers = res.headers;
				let received = 0;
				res.on('data', (chunk: Buffer) => {
					chunks.push(chunk);
					received += chunk.length;
					options.onData?.(chunk);
					if (options.abortAfterBytes !== undefined && received >= options.abortAfterBytes) {
						req.destroy();
						finish('the client hung up');
					}
				});
				res.once('end', () => {
					result.complete = res.complete;
					finish(res.complete ? undefined : 'response ended early');
				});
				res.once('aborted', () => {
					finish('response aborted');
				});
				res.once('error', (error) => {
					finish(`response error: ${error.message}`);
				});
				res.once('close', () => {
					finish(res.complete ? undefined : 'connection closed before the response completed');
				});
			},
		);
		req.once('error', (error: NodeJS.ErrnoException) => {
			finish(`${error.code ?? 'error'}: ${error.message}`);
		});
		req.end(options.body);
	});
}

/** The V2 error code of a JSON error body, or undefined. */
export function errorCode(response: RawResponse): string | undefined {
	try {
		const parsed = JSON.parse(response.body.toString('utf8')) as {errors?: Array<{code?: unknown}>};
		const code = parsed.errors?.[0]?.code;
		return typeof code === 'string' ? code : undefined;
	} catch {
		return undefined;
	}
}
