#!/usr/bin/env node
/**
 * Start: load the config, open the stores, listen, and drain on SIGTERM.
 *   registry-mirror [serve] [--config FILE]   (or MIRROR_CONFIG=FILE)
 */
import {createServer as createHttpServer, type Server} from 'node:http';
import {createServer as createHttpsServer} from 'node:https';
import {readFileSync} from 'node:fs';
import {parseArgs} from 'node:util';
import {createApp, openRegistry} from './app.js';
import {ConfigError, loadConfig} from './config/load.js';
import {createLogger} from './log.js';

const HELP = `Usage: registry-mirror [serve] [--config FILE]

Serves the Docker Registry HTTP API V2: a pull-through cache for the
configured upstreams plus a private registry for local namespaces.

Options:
  -c, --config FILE   config file (default: $MIRROR_CONFIG or ./mirror.config.yml)
  -h, --help          show this help
`;

async function main(): Promise<void> {
	const {values, positionals} = parseArgs({
		options: {config: {type: 'string', short: 'c'}, help: {type: 'boolean', short: 'h'}},
		allowPositionals: true,
	});
	if (values.help) {
		process.stdout.write(HELP);
		return;
	}

	const command = positionals[0] ?? 'serve';
	if (command !== 'serve') {
		throw new ConfigError(`unknown command: ${command} (try --help)`);
	}

	const file = values.config ?? process.env['MIRROR_CONFIG'] ?? 'mirror.config.yml';
	const config = loadConfig(file);
	const log = createLogger(process.env['LOG_LEVEL'] ?? config.logLevel);
	const registry = await openRegistry(config, log);
	const app = createApp(registry);
	const handler = app.callback();
	const server: Server = config.tls
		? createHttpsServer({cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key)}, handler)
		: createHttpServer(handler);
	server.keepAliveTimeout = 65_000;
	server.requestTimeout = 0; // blob uploads and downloads can take as long as they take
	server.headersTimeout = 60_000;

	await new Promise<void>((resolve, reject) => {
		server.once('error', reject);
		server.listen(config.listen.port, config.listen.host, resolve);
	});
	const address = server.address();
	const port = typeof address === 'object' && address ? address.port : config.listen.port;
	log.info({listen: `${config.listen.host}:${port}`, storage: config.storage.dir, upstreams: [...config.upstreams.keys()]}, 'registry mirror ready');
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
		const force = setTimeout(() => {
			server.closeAllConnections();
		}, 10_000);
		force.unref();
		void registry.close().finally(() => {
			log.flush();
			process.exit(0);
		});
	};

	process.on('SIGTERM', () => stop('SIGTERM'));
	process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((error: unknown) => {
	if (error instanceof ConfigError) {
		process.stderr.write(`${error.message}\n`);
	} else if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
		process.stderr.write(`listen: address already in use: ${(error as Error).message}\n`);
	} else {
		process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
	}

	process.exit(1);
});
