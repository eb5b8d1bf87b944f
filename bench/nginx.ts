/**
 * nginx (Debian nginx-light) serving the benchmark's files statically: the
 * ceiling. Own config in a temp dir, `workers` worker processes (1 unless given), `daemon off`, logs and temp
 * paths under the prefix; stopped by its master's pid.
 */
import {mkdir, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {findExecutable, freePort, tempDir} from '../test/helpers/process.js';
import {childrenOf, type Cores, type ServerProcess, spawnServer, waitHttp} from './lib.js';

export type Nginx = {url: string; server: ServerProcess; workerPids(): number[]; stop(): Promise<void>};

/** `root` must already hold the files; nginx serves it as is at `/`. */
export async function startNginx(root: string, opts: {core?: Cores; workers?: number; types?: Record<string, string>} = {}): Promise<Nginx> {
	const binary = findExecutable('nginx');
	if (binary === null) {
		throw new Error('nginx is not installed: run `apt-get install -y nginx-light` (bench/setup.sh does)');
	}

	const prefix = await tempDir('bench-nginx-');
	await mkdir(join(prefix, 'tmp'), {recursive: true});
	const port = await freePort();
	const types = Object.entries(opts.types ?? {})
		.map(([location, type]) => `    location = ${location} { default_type ${type}; add_header Docker-Distribution-API-Version registry/2.0; }`)
		.join('\n');
	const conf = `
user root;
worker_processes ${opts.workers ?? 1};
daemon off;
master_process on;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush off;
  tcp_nodelay on;
  keepalive_requests 10000000;
  keepalive_timeout 65s;
  default_type application/octet-stream;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${root};
${types}
  }
}
`;
	const confPath = join(prefix, 'nginx.conf');
	await writeFile(confPath, conf);
	const server = spawnServer('nginx', binary, ['-c', confPath, '-p', prefix], {core: opts.core});
	const url = `http://127.0.0.1:${port}`;
	await waitHttp(server, `${url}/`, [200, 403, 404]);
	return {
		url,
		server,
		workerPids: () => childrenOf(server.pid),
		async stop() {
			await server.stop();
		},
	};
}
