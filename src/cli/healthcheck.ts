/**
 * `registry-mirror healthcheck`: GET /healthz at the configured listen address,
 * exit 0 on a 200. For container HEALTHCHECKs: slim Node images have no curl.
 */
import {request as httpRequest} from 'node:http';
import {request as httpsRequest} from 'node:https';
import {type Config} from '../config/load.js';

/** The URL the mirror answers on from this machine: a wildcard listen address is asked on loopback. */
export function localUrl(config: Config): string {
	const {host, port} = config.listen;
	const reachable = ['0.0.0.0', '::', ''].includes(host) ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
	return `${config.tls ? 'https' : 'http'}://${reachable}:${port}${config.prefix}`;
}

export async function healthcheck(config: Config, timeoutMs = 4000): Promise<number> {
	const url = `${localUrl(config)}/healthz`;
	const request = url.startsWith('https:') ? httpsRequest : httpRequest;
	return new Promise(resolve => {
		// The certificate is for the public name, not for loopback: liveness, not identity, is asked here.
		const req = request(url, {timeout: timeoutMs, rejectUnauthorized: false}, response => {
			response.resume();
			process.stdout.write(`${url}: ${response.statusCode ?? 0}\n`);
			resolve(response.statusCode === 200 ? 0 : 1);
		});
		req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
		req.on('error', error => {
			process.stdout.write(`${url}: ${error.message}\n`);
			resolve(1);
		});
		req.end();
	});
}
