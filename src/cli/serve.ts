/** `registry-mirror serve`: load the config, open the stores, listen, and drain on SIGTERM. */
import {createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http';
import {createServer as createHttpsServer} from 'node:https';
import {readFileSync} from 'node:fs';
import {openRegistry} from '../compose/registry.js';
import {createApp} from '../http/app.js';
import {type Config} from '../config/load.js';
import {createLogger} from '../util/log.js';
import {advertiseUrl} from '../cluster/coordinator.js';

export async function serve(config: Config): Promise<void> {
	const log = createLogger(process.env['LOG_LEVEL'] ?? config.logLevel);
	const registry = await openRegistry(config, log);
	const app = createApp(registry);
	const callback = app.callback();
	const handler = (request: IncomingMessage, response: ServerResponse): void => void callback(request, response);
	const server: Server = config.tls
		? createHttpsServer({cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key)}, handler)
		: createHttpServer(handler);
	server.keepAliveTimeout = 65_000;
	server.requestTimeout = 0; // blob uploads and downloads take as long as they take
	server.headersTimeout = 60_000;

	await new Promise<void>((resolve, reject) => {
		server.once('error', reject);
		server.listen(config.listen.port, config.listen.host, resolve);
	});
	const address = server.address();
	const port = typeof address === 'object' && address ? address.port : config.listen.port;
	if (registry.coordinator && !config.advertiseUrl) {
		registry.coordinator.self = advertiseUrl(config, port);
	}

	log.info(
		{listen: `${config.listen.host}:${port}`, tls: Boolean(config.tls), storage: config.storage.dir, upstreams: [...config.upstreams.keys()]},
		'registry mirror ready',
	);
	if (!config.auth) {
		log.warn('no auth configured: anyone who can reach this port may pull, and push to local namespaces');
	}

	let stopping = false;
	const stop = (signal: string) => {
		if (stopping) {
			return;
		}

		stopping = true;
		log.info({signal}, 'shutting down: draining requests and fills');
		server.close();
		server.closeIdleConnections();
		setTimeout(() => server.closeAllConnections(), 10_000).unref();
		void registry.close().finally(() => {
			log.flush();
			process.exit(0);
		});
	};

	process.on('SIGTERM', () => {
		stop('SIGTERM');
	});
	process.on('SIGINT', () => {
		stop('SIGINT');
	});
}
