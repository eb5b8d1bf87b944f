/** `registry-mirror serve`: load the config, open the stores, listen, and drain on SIGTERM. */
import {openRegistry} from '../compose/registry.js';
import {createApp} from '../http/app.js';
import {createServer} from '../http/server.js';
import {type Config} from '../config/load.js';
import {createLogger} from '../util/log.js';
import {advertiseUrl} from '../cluster/coordinator.js';

export async function serve(config: Config): Promise<void> {
	const log = createLogger(process.env['LOG_LEVEL'] ?? config.logLevel);
	const registry = await openRegistry(config, log);
	const app = createApp(registry);
	const server = createServer(app, config);

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
