/**
 * Debian's nginx (package nginx-light) as a reverse proxy in front of the
 * mirror, run as a child in the foreground with its own config, pid file and
 * logs in a temp dir: `nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'`.
 */
import {mkdir, readFile, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {findExecutable, freePort, spawnDaemon, stopChild, tail, tempDir, waitFor} from './process.js';

export type Nginx = {
	url: string;
	port: number;
	pid: number;
	configText: string;
	accessLog(): Promise<string>;
	stop(): Promise<void>;
};

export type NginxOptions = {
	/** Where the mirror listens, like http://127.0.0.1:5000 (no path). */
	backend?: string;
	/** The path nginx serves the mirror under; the mirror must be configured with the same `prefix`. */
	location: string;
	/** Listen on this port (default: a free one); the mirror's `public_url` needs it before nginx starts. */
	port?: number;
	/** Several replicas (host:port each), balanced round-robin; `backend` is then ignored. */
	replicas?: string[];
};

/**
 * The server block the README quotes. `proxy_pass` without a URI passes the
 * request path unchanged (`/registry/v2/...`), and the mirror, configured with
 * `prefix: /registry`, serves it there. Registry pushes are large and
 * streamed: no body size limit, no request or response buffering.
 */
export function registryLocation(location: string, backend: string): string {
	return [
		`location ${location}/ {`,
		`    proxy_pass ${backend};`,
		'    proxy_http_version 1.1;',
		'    proxy_set_header Connection "";',
		'    proxy_set_header Host $http_host;',
		'    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
		'    proxy_set_header X-Forwarded-Proto $scheme;',
		'    client_max_body_size 0;',
		'    proxy_request_buffering off;',
		'    proxy_buffering off;',
		'    proxy_read_timeout 900s;',
		'    proxy_send_timeout 900s;',
		'}',
	].join('\n');
}

export async function startNginx(options: NginxOptions): Promise<Nginx> {
	const binary = findExecutable('nginx');
	if (binary === null) {
		throw new Error('nginx is not installed: run `apt-get install -y nginx-light`');
	}

	const dir = await tempDir('nginx-');
	await mkdir(join(dir, 'tmp'));
	const backend = options.replicas ? 'http://mirrors' : options.backend;
	if (backend === undefined) {
		throw new Error('startNginx: give backend or replicas');
	}

	const port = options.port ?? (await freePort());
	const location = options.location.replace(/\/+$/, '');
	const configText = [
		'worker_processes 1;',
		`pid ${join(dir, 'nginx.pid')};`,
		`error_log ${join(dir, 'error.log')} warn;`,
		'events { worker_connections 256; }',
		'http {',
		`    access_log ${join(dir, 'access.log')};`,
		// Every temp path inside DIR, so nothing under /var/lib/nginx is needed or touched.
		`    client_body_temp_path ${join(dir, 'tmp', 'body')};`,
		`    proxy_temp_path ${join(dir, 'tmp', 'proxy')};`,
		`    fastcgi_temp_path ${join(dir, 'tmp', 'fastcgi')};`,
		`    uwsgi_temp_path ${join(dir, 'tmp', 'uwsgi')};`,
		`    scgi_temp_path ${join(dir, 'tmp', 'scgi')};`,
		// Round-robin over the replicas, one request to each in turn: a push's requests spread over all of them.
		...(options.replicas ? ['    upstream mirrors {', ...options.replicas.map((host) => `        server ${host};`), '        keepalive 16;', '    }'] : []),
		'    server {',
		`        listen 127.0.0.1:${port};`,
		...registryLocation(location, backend)
			.split('\n')
			.map((line) => `        ${line}`),
		'    }',
		'}',
		'',
	].join('\n');
	const configPath = join(dir, 'nginx.conf');
	await writeFile(configPath, configText);

	// Run as root, nginx switches its workers to the `user` directive's default (nobody); that is fine here.
	const daemon = spawnDaemon(binary, ['-p', dir, '-c', configPath, '-g', 'daemon off;']);
	const {child, gone} = daemon;
	const url = `http://127.0.0.1:${port}`;
	const stop = async (): Promise<void> => {
		// SIGTERM to the master (our child) is nginx's fast shutdown; it takes its workers along.
		await stopChild(child, 5000);
	};

	try {
		await waitFor(async () => {
			if (gone()) {
				return true;
			}

			// Any HTTP answer from nginx itself (404 outside the location) means it listens.
			const response = await fetch(`${url}/nginx-ready`, {signal: AbortSignal.timeout(2000)});
			await response.arrayBuffer();
			return true;
		}, `nginx on ${url}`);
		if (gone()) {
			throw new Error(`nginx exited early (${daemon.exitReason()})`);
		}
	} catch (error) {
		await stop();
		const errorLog = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
		throw new Error(`${error instanceof Error ? error.message : String(error)}\n${tail(daemon.logs())}\n${tail(errorLog)}`);
	}

	return {
		url,
		port,
		pid: child.pid ?? 0,
		configText,
		accessLog: async () => readFile(join(dir, 'access.log'), 'utf8').catch(() => ''),
		stop,
	};
}
