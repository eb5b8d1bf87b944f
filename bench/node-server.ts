/**
 * The plain-Node yardstick: a node:http server with no framework, run as its
 * own process, serving what the mirror serves:
 *   - any .../manifests/... path: the app manifest bytes from memory, with the registry's headers
 *     (the yardstick for "manifest by tag within its TTL");
 *   - /big and /blobs/HEX: files under ROOT, stat + fs.createReadStream().pipe(res) with
 *     default options (what "a plain createReadStream().pipe()" means in issue 8).
 *
 * With WORKERS > 1 a primary forks that many such processes sharing the port
 * (node:cluster), the plain equivalent of the mirror's `workers`.
 *
 *   node --import tsx bench/node-server.ts PORT ROOT MEDIA_TYPE [WORKERS]
 */
import cluster from 'node:cluster';
import {createHash} from 'node:crypto';
import {createReadStream, readFileSync} from 'node:fs';
import {stat} from 'node:fs/promises';
import {createServer, type ServerResponse} from 'node:http';
import {join} from 'node:path';

const [port, root, mediaType, workersArg] = process.argv.slice(2);
const workers = Math.max(1, Number(workersArg ?? 1));
if (workers > 1 && cluster.isPrimary) {
	for (let n = 0; n < workers; n++) {
		cluster.fork();
	}

	process.on('SIGTERM', () => {
		for (const worker of Object.values(cluster.workers ?? {})) {
			worker?.process.kill('SIGTERM');
		}

		process.exit(0);
	});
} else {
	serve();
}

function serve(): void {
	const manifest = readFileSync(join(root!, 'manifest'));
	const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
	const manifestHeaders = {
		'content-type': mediaType!,
		'content-length': String(manifest.length),
		'docker-content-digest': digest,
		etag: `"${digest}"`,
		'docker-distribution-api-version': 'registry/2.0',
	};

	function notFound(res: ServerResponse): void {
		res.writeHead(404, {'content-type': 'text/plain'});
		res.end('not found');
	}

	async function sendFile(file: string, res: ServerResponse): Promise<void> {
		let size: number;
		try {
			size = (await stat(file)).size;
		} catch {
			notFound(res);
			return;
		}

		res.writeHead(200, {'content-type': 'application/octet-stream', 'content-length': String(size)});
		createReadStream(file).pipe(res);
	}

	const server = createServer((req, res) => {
		const url = req.url ?? '/';
		if (url === '/v2/') {
			res.writeHead(200, {'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0'});
			res.end('{}');
		} else if (url.includes('/manifests/') || url === '/manifest') {
			res.writeHead(200, manifestHeaders);
			res.end(req.method === 'HEAD' ? undefined : manifest);
		} else if (url === '/big') {
			void sendFile(join(root!, 'big'), res);
		} else if (/^\/blobs\/[0-9a-f]{64}$/.test(url)) {
			void sendFile(join(root!, url), res);
		} else {
			notFound(res);
		}
	});
	server.keepAliveTimeout = 65_000;
	server.listen(Number(port), '127.0.0.1');
	process.on('SIGTERM', () => {
		server.close();
		server.closeAllConnections();
		process.exit(0);
	});
}
