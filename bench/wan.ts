/**
 * A WAN-like link in front of the upstream, and the byte counter for what the
 * mirrors fetch: a small HTTP proxy. Each request waits one RTT before it is
 * forwarded (plus one more on a new connection, for the handshake), and each
 * response body is paced to `mbps` MB/s (per response: a fast link that one
 * TCP stream cannot fill, not a shared pipe). `mbps: 0` and `rttMs: 0`
 * forward at full speed and only count.
 */
import {Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse} from 'node:http';
import {type Socket} from 'node:net';
import {Transform, type TransformCallback, pipeline} from 'node:stream';
import {closeServer, listenLocal} from '../test/helpers/process.js';

export type WanOptions = {target: string; mbps: number; rttMs: number};

export type WanCounts = {requests: number; blobGets: number; blobBytes: number; manifestRequests: number; bytes: number};

export type Wan = {url: string; counts: WanCounts; reset(): void; stop(): Promise<void>; describe: string};

const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

function headersOf(raw: string[]): string[] {
	const out: string[] = [];
	for (let i = 0; i + 1 < raw.length; i += 2) {
		if (!hopByHop.has((raw[i] ?? '').toLowerCase())) {
			out.push(raw[i] ?? '', raw[i + 1] ?? '');
		}
	}

	return out;
}

/** Paces bytes to `bytesPerSecond` with a token bucket (at most ~5 ms of burst). */
class Pacer extends Transform {
	#due = 0;

	constructor(
		private readonly bytesPerSecond: number,
		private readonly onBytes: (n: number) => void,
	) {
		super({highWaterMark: 256 * 1024});
	}

	override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
		this.onBytes(chunk.length);
		if (this.bytesPerSecond <= 0) {
			callback(null, chunk);
			return;
		}

		const now = performance.now();
		this.#due = Math.max(this.#due, now) + (chunk.length / this.bytesPerSecond) * 1000;
		const wait = this.#due - now;
		if (wait <= 5) {
			callback(null, chunk);
			return;
		}

		setTimeout(() => callback(null, chunk), wait);
	}
}

function kind(path: string): 'blob' | 'manifest' | 'other' {
	const pathname = path.split('?')[0] ?? '';
	if (pathname.includes('/manifests/')) {
		return 'manifest';
	}

	if (pathname.includes('/blobs/') && !pathname.includes('/blobs/uploads')) {
		return 'blob';
	}

	return 'other';
}

export async function startWan(opts: WanOptions): Promise<Wan> {
	const target = new URL(opts.target);
	const agent = new Agent({keepAlive: true, maxSockets: 256});
	const counts: WanCounts = {requests: 0, blobGets: 0, blobBytes: 0, manifestRequests: 0, bytes: 0};
	const bytesPerSecond = opts.mbps * 1e6;
	const fresh = new WeakSet<Socket>();
	const debug = process.env['BENCH_WAN_DEBUG'] === '1';

	function forward(req: IncomingMessage, res: ServerResponse): void {
		const method = req.method ?? 'GET';
		const path = req.url ?? '/';
		const what = kind(path);
		counts.requests++;
		if (what === 'manifest') {
			counts.manifestRequests++;
		}

		const isBlobGet = what === 'blob' && method === 'GET';
		if (debug) {
			process.stderr.write(`[wan ${performance.now().toFixed(1)}]   forwarding ${method} ${path.slice(0, 60)}\n`);
		}

		const upstream = request(
			{host: target.hostname, port: Number(target.port), method, path, headers: headersOf(req.rawHeaders), agent},
			response => {
				if (debug) {
					process.stderr.write(`[wan ${performance.now().toFixed(1)}]   ${response.statusCode} from upstream for ${method} ${path.slice(0, 60)}\n`);
				}

				if (isBlobGet && response.statusCode === 200) {
					counts.blobGets++;
				}

				res.writeHead(response.statusCode ?? 502, response.statusMessage, headersOf(response.rawHeaders));
				const pacer = new Pacer(bytesPerSecond, n => {
					counts.bytes += n;
					if (isBlobGet) {
						counts.blobBytes += n;
					}
				});
				pipeline(response, pacer, res, () => undefined);
			},
		);
		upstream.once('error', error => {
			if (res.headersSent) {
				res.destroy();
				return;
			}

			res.writeHead(502, {'content-type': 'text/plain'});
			res.end(`wan: upstream error: ${error.message}`);
		});
		res.once('close', () => {
			if (!res.writableFinished) {
				upstream.destroy();
			}
		});
		req.pipe(upstream);
	}

	const server: Server = createServer((req, res) => {
		let delay = opts.rttMs;
		const isNew = fresh.has(req.socket);
		if (isNew) {
			fresh.delete(req.socket);
			delay += opts.rttMs;
		}

		if (debug) {
			process.stderr.write(`[wan ${performance.now().toFixed(1)}] ${req.method} ${req.url}${isNew ? ' (new connection)' : ''}\n`);
		}

		if (delay > 0) {
			req.pause();
			setTimeout(() => {
				forward(req, res); // pipe() resumes the request
			}, delay);
		} else {
			forward(req, res);
		}
	});
	server.on('connection', socket => {
		fresh.add(socket);
	});
	server.keepAliveTimeout = 65_000;
	server.requestTimeout = 0;
	const port = await listenLocal(server);
	return {
		url: `http://127.0.0.1:${port}`,
		counts,
		describe: opts.mbps > 0 || opts.rttMs > 0 ? `${opts.mbps > 0 ? `${opts.mbps} MB/s per response` : 'unpaced'}, ${opts.rttMs} ms RTT` : 'no throttle (counting only)',
		reset() {
			Object.assign(counts, {requests: 0, blobGets: 0, blobBytes: 0, manifestRequests: 0, bytes: 0});
		},
		async stop() {
			await closeServer(server);
			agent.destroy();
		},
	};
}
