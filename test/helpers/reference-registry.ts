import {type ChildProcess, spawn} from 'node:child_process';
import {randomBytes} from 'node:crypto';
import {writeFile} from 'node:fs/promises';
import {Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse} from 'node:http';
import {join} from 'node:path';
import {Transform} from 'node:stream';
import {setTimeout as sleep} from 'node:timers/promises';
import {appendCapped, closeServer, findExecutable, freePort, listenLocal, stopChild, tail, tempDir, trackChild, waitFor} from './process.js';
import {type TokenServer} from './token-server.js';

/** `bytes`: the body bytes the proxy has passed on to the client so far. */
export type UpstreamRequest = {method: string; path: string; status: number; authorized: boolean; range?: string; bytes: number};

export type RequestKind = 'blob' | 'manifest' | 'tags' | 'ping';

export type ReferenceRegistry = {
	/** The counting proxy: what clients and the mirror should use. */
	url: string;
	/** The registry itself, bypassing the counting proxy. */
	directUrl: string;
	requests: UpstreamRequest[];
	count(filter: RequestFilter): number;
	/** Body bytes passed on for the requests matching `filter`. */
	bytes(filter: RequestFilter): number;
	resetCounts(): void;
	/** Stops the registry and the proxy: the proxy port then refuses connections. */
	stop(): Promise<void>;
	/** Restarts both on the same ports with the same data. */
	start(): Promise<void>;
	dataDir: string;
};

export type ReferenceRegistryOptions = {
	tokenServer?: TokenServer;
	dataDir?: string;
	/** Paces blob GET bodies through the counting proxy (a slow WAN link), so fills last long enough to overlap. */
	blobBytesPerSecond?: number;
	/** A webhook endpoint the registry sends its notification events to (to compare the mirror's events with). */
	notificationUrl?: string;
};

/** A body paced to `bytesPerSecond`, in 64 KiB steps. */
function paced(bytesPerSecond: number): Transform {
	const started = Date.now();
	let sent = 0;
	return new Transform({
		transform(chunk: Buffer, _encoding, callback) {
			const pace = async () => {
				for (let offset = 0; offset < chunk.length; offset += 64 * 1024) {
					const piece = chunk.subarray(offset, offset + 64 * 1024);
					sent += piece.length;
					const due = started + (sent / bytesPerSecond) * 1000 - Date.now();
					if (due > 0) {
						await sleep(due);
					}

					this.push(piece);
				}
			};

			pace().then(() => callback(), callback);
		},
	});
}

const registryBinary = '/usr/bin/docker-registry';

/** Connection-level headers that must not be forwarded by a proxy. */
const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection']);

function forwardableHeaders(rawHeaders: string[]): string[] {
	const out: string[] = [];
	for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
		const name = rawHeaders[i] ?? '';
		if (!hopByHop.has(name.toLowerCase())) {
			out.push(name, rawHeaders[i + 1] ?? '');
		}
	}

	return out;
}

type RequestFilter = {method?: string; pathIncludes?: string; kind?: RequestKind};

function matches(r: UpstreamRequest, filter: RequestFilter): boolean {
	return (
		(filter.method === undefined || r.method === filter.method.toUpperCase()) &&
		(filter.pathIncludes === undefined || r.path.includes(filter.pathIncludes)) &&
		(filter.kind === undefined || kindOf(r.path) === filter.kind)
	);
}

function kindOf(path: string): RequestKind | null {
	const pathname = path.split('?')[0] ?? '';
	if (pathname === '/v2/') {
		return 'ping';
	}

	if (pathname.includes('/manifests/')) {
		return 'manifest';
	}

	if (pathname.endsWith('/tags/list')) {
		return 'tags';
	}

	if (pathname.includes('/blobs/') && !pathname.includes('/blobs/uploads')) {
		return 'blob';
	}

	return null;
}

function yamlString(value: string): string {
	return JSON.stringify(value);
}

function registryConfig(port: number, dataDir: string, tokenServer: TokenServer | undefined, notificationUrl?: string): string {
	const lines = [
		'version: 0.1',
		'log:',
		'  level: warn',
		'  accesslog:',
		'    disabled: true',
		'storage:',
		'  filesystem:',
		`    rootdirectory: ${yamlString(dataDir)}`,
		'  delete:',
		'    enabled: true',
		'  maintenance:',
		'    uploadpurging:',
		'      enabled: false',
		'http:',
		`  addr: 127.0.0.1:${port}`,
		`  secret: ${yamlString(randomBytes(16).toString('hex'))}`,
	];
	if (tokenServer !== undefined) {
		lines.push(
			'auth:',
			'  token:',
			`    realm: ${yamlString(tokenServer.realm)}`,
			`    service: ${yamlString(tokenServer.service)}`,
			`    issuer: ${yamlString(tokenServer.issuer)}`,
			`    rootcertbundle: ${yamlString(tokenServer.rootCertPath)}`,
		);
	}

	if (notificationUrl !== undefined) {
		lines.push('notifications:', '  endpoints:', '    - name: test', `      url: ${yamlString(notificationUrl)}`, '      timeout: 2s', '      threshold: 3', '      backoff: 100ms');
	}

	return `${lines.join('\n')}\n`;
}

/** Starts /usr/bin/docker-registry behind a counting pass-through proxy. */
export async function startReferenceRegistry(opts: ReferenceRegistryOptions = {}): Promise<ReferenceRegistry> {
	if (findExecutable('docker-registry') === null) {
		throw new Error('docker-registry is not installed: run `apt-get install -y docker-registry`');
	}

	const configDir = await tempDir('registry-');
	const dataDir = opts.dataDir ?? (await tempDir('registry-data-'));
	const registryPort = await freePort();
	const configPath = join(configDir, 'config.yml');
	await writeFile(configPath, registryConfig(registryPort, dataDir, opts.tokenServer, opts.notificationUrl));

	const directUrl = `http://127.0.0.1:${registryPort}`;
	const requests: UpstreamRequest[] = [];
	let proxyPort = 0;
	let child: ChildProcess | null = null;
	let proxy: Server | null = null;
	let agent: Agent | null = null;
	let logs = '';

	function forward(req: IncomingMessage, res: ServerResponse, upstreamAgent: Agent): void {
		const method = req.method ?? 'GET';
		const path = req.url ?? '/';
		const upstream = request(
			{host: '127.0.0.1', port: registryPort, method, path, headers: forwardableHeaders(req.rawHeaders), agent: upstreamAgent},
			(response) => {
				const status = response.statusCode ?? 502;
				const entry: UpstreamRequest = {method, path, status, authorized: req.headers.authorization !== undefined, bytes: 0};
				if (req.headers.range !== undefined) {
					entry.range = req.headers.range;
				}

				requests.push(entry);
				res.writeHead(status, response.statusMessage, forwardableHeaders(response.rawHeaders));
				const counted = new Transform({
					transform(chunk: Buffer, _encoding, callback) {
						entry.bytes += chunk.length;
						callback(null, chunk);
					},
				});
				counted.pipe(res);
				if (opts.blobBytesPerSecond && method === 'GET' && (status === 200 || status === 206) && kindOf(path) === 'blob') {
					response.pipe(paced(opts.blobBytesPerSecond)).pipe(counted);
				} else {
					response.pipe(counted);
				}

				response.once('error', () => res.destroy());
			},
		);
		upstream.once('error', (error) => {
			if (res.headersSent) {
				res.destroy();
				return;
			}

			res.writeHead(502, {'content-type': 'text/plain'});
			res.end(`counting proxy: upstream error: ${error.message}`);
		});
		res.once('close', () => {
			if (!res.writableFinished) {
				upstream.destroy();
			}
		});
		req.pipe(upstream);
	}

	async function startRegistry(): Promise<void> {
		logs = '';
		const proc = spawn(registryBinary, ['serve', configPath], {stdio: ['ignore', 'pipe', 'pipe']});
		child = proc;
		trackChild(proc);
		const collect = (chunk: Buffer): void => {
			logs = appendCapped(logs, chunk.toString('utf8'), 200_000);
		};

		proc.stdout?.on('data', collect);
		proc.stderr?.on('data', collect);
		let spawnError = '';
		proc.once('error', (error) => {
			spawnError = error.message;
		});
		const gone = (): boolean => proc.exitCode !== null || proc.signalCode !== null || spawnError !== '';
		try {
			await waitFor(async () => {
				if (gone()) {
					return true;
				}

				const response = await fetch(`${directUrl}/v2/`, {signal: AbortSignal.timeout(2000)});
				await response.arrayBuffer();
				return response.status === 200 || response.status === 401;
			}, `docker-registry on ${directUrl}`);
		} catch (error) {
			await stopChild(proc);
			throw new Error(`${error instanceof Error ? error.message : String(error)}\n${tail(logs)}`);
		}

		if (gone()) {
			throw new Error(`docker-registry exited early (${spawnError || `code ${proc.exitCode ?? proc.signalCode}`}):\n${tail(logs)}`);
		}
	}

	async function start(): Promise<void> {
		if (child !== null) {
			return;
		}

		await startRegistry();
		const upstreamAgent = new Agent({keepAlive: true});
		const server = createServer((req, res) => {
			forward(req, res, upstreamAgent);
		});
		try {
			proxyPort = await listenLocal(server, proxyPort);
		} catch (error) {
			upstreamAgent.destroy();
			await stop();
			throw error;
		}

		agent = upstreamAgent;
		proxy = server;
	}

	async function stop(): Promise<void> {
		if (proxy !== null) {
			await closeServer(proxy);
			proxy = null;
		}

		agent?.destroy();
		agent = null;
		if (child !== null) {
			await stopChild(child, 5000);
			child = null;
		}
	}

	await start();

	return {
		url: `http://127.0.0.1:${proxyPort}`,
		directUrl,
		requests,
		count(filter) {
			return requests.filter(r => matches(r, filter)).length;
		},
		bytes(filter) {
			return requests.filter(r => matches(r, filter)).reduce((sum, r) => sum + r.bytes, 0);
		},
		resetCounts() {
			requests.length = 0;
		},
		stop,
		start,
		dataDir,
	};
}
