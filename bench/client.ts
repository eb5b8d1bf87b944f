/**
 * The benchmark's HTTP client, run as its own process (pinned to the client
 * core) so that its CPU (hashing above all) never competes with the bench
 * process, which hosts the upstream's counting proxy and the WAN throttle.
 *
 * Reads one JSON job from stdin, writes one JSON result to stdout.
 *
 *   {"mode":"get","url":U,"clients":N,"hash":true,"headers":{},"prime":{"url":P,"headers":{}}}
 *     N concurrent GETs of U, each on its own connection; per client: status,
 *     bytes, sha256 (when hash), time to headers, to first body byte, to end.
 *     `prime` is requested first (untimed) on the same keep-alive agent, so the
 *     timed GET reuses a warm connection like a client that fetched the manifest first.
 *
 *   {"mode":"many","urls":[...],"parallel":8,"headers":{}}
 *     Every URL once, `parallel` at a time over keep-alive connections; req/s.
 */
import {createHash} from 'node:crypto';
import {Agent, request} from 'node:http';
import {performance} from 'node:perf_hooks';

type Headers = Record<string, string>;
type GetJob = {mode: 'get'; url: string; clients: number; hash?: boolean; headers?: Headers; prime?: {url: string; headers?: Headers; method?: string}};
type ManyJob = {mode: 'many'; urls: string[]; parallel: number; headers?: Headers};
type Job = GetJob | ManyJob;

export type GetSample = {status: number; bytes: number; sha256?: string; headersMs: number; firstByteMs: number; totalMs: number; error?: string};
export type GetResult = {wallMs: number; clients: GetSample[]};
export type ManyResult = {wallMs: number; requests: number; ok: number; bytes: number; errors: string[]};

async function readStdin(): Promise<string> {
	const chunks: Buffer[] = [];
	for await (const chunk of process.stdin) {
		chunks.push(chunk as Buffer);
	}

	return Buffer.concat(chunks).toString('utf8');
}

function once(agent: Agent, url: string, headers: Headers, start: number, hash: boolean, method = 'GET'): Promise<GetSample> {
	return new Promise(resolve => {
		const sample: GetSample = {status: 0, bytes: 0, headersMs: Number.NaN, firstByteMs: Number.NaN, totalMs: Number.NaN};
		const hasher = hash ? createHash('sha256') : undefined;
		const req = request(url, {agent, headers, method}, res => {
			sample.status = res.statusCode ?? 0;
			sample.headersMs = performance.now() - start;
			res.on('data', (chunk: Buffer) => {
				if (sample.bytes === 0) {
					sample.firstByteMs = performance.now() - start;
				}

				sample.bytes += chunk.length;
				hasher?.update(chunk);
			});
			res.once('end', () => {
				sample.totalMs = performance.now() - start;
				if (hasher) {
					sample.sha256 = `sha256:${hasher.digest('hex')}`;
				}

				resolve(sample);
			});
			res.once('error', error => {
				sample.error = error.message;
				sample.totalMs = performance.now() - start;
				resolve(sample);
			});
		});
		req.once('error', error => {
			sample.error = error.message;
			sample.totalMs = performance.now() - start;
			resolve(sample);
		});
		req.end();
	});
}

async function runGet(job: GetJob): Promise<GetResult> {
	const agents = Array.from({length: job.clients}, () => new Agent({keepAlive: true, maxSockets: 1}));
	if (job.prime) {
		const prime = job.prime;
		await Promise.all(agents.map(async agent => once(agent, prime.url, prime.headers ?? {}, performance.now(), false, prime.method)));
	}

	const start = performance.now();
	const clients = await Promise.all(agents.map(async agent => once(agent, job.url, job.headers ?? {}, start, job.hash === true)));
	const wallMs = performance.now() - start;
	for (const agent of agents) {
		agent.destroy();
	}

	return {wallMs, clients};
}

async function runMany(job: ManyJob): Promise<ManyResult> {
	const agent = new Agent({keepAlive: true, maxSockets: job.parallel});
	let next = 0;
	let ok = 0;
	let bytes = 0;
	const errors: string[] = [];
	const start = performance.now();
	await Promise.all(
		Array.from({length: job.parallel}, async () => {
			while (next < job.urls.length) {
				const url = job.urls[next++]!;
				const sample = await once(agent, url, job.headers ?? {}, start, false);
				if (sample.status === 200 && !sample.error) {
					ok++;
					bytes += sample.bytes;
				} else if (errors.length < 5) {
					errors.push(`${url}: ${sample.error ?? `HTTP ${sample.status}`}`);
				}
			}
		}),
	);
	const wallMs = performance.now() - start;
	agent.destroy();
	return {wallMs, requests: job.urls.length, ok, bytes, errors};
}

const job = JSON.parse(await readStdin()) as Job;
const result = job.mode === 'get' ? await runGet(job) : await runMany(job);
process.stdout.write(`${JSON.stringify(result)}\n`);
