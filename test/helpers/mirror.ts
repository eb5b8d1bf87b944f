/**
 * Starts this mirror in the test process on 127.0.0.1:0 with a config built
 * from an object (as it would be written in mirror.config.yml).
 */
import {type Server} from 'node:http';
import {createApp, openRegistry, type Registry} from '../../src/app.js';
import {parseConfig} from '../../src/config/load.js';
import {silentLogger, createLogger} from '../../src/log.js';
import {closeServer, listenLocal, tempDir} from './process.js';

export type Mirror = {
	url: string;
	/** host:port, for image references like `${host}/library/app:1`. */
	host: string;
	registry: Registry;
	dataDir: string;
	stop(): Promise<void>;
};

export type MirrorOptions = {
	upstreams?: Record<string, Record<string, unknown>>;
	namespaces?: Array<Record<string, unknown>>;
	dataDir?: string;
	extra?: Record<string, unknown>;
	port?: number;
};

export async function startMirror(options: MirrorOptions): Promise<Mirror> {
	const dataDir = options.dataDir ?? (await tempDir('mirror-data-'));
	const upstreams = options.upstreams ?? {};
	const config = parseConfig(
		{
			listen: '127.0.0.1:0',
			storage: {dir: dataDir},
			upstreams,
			namespaces: options.namespaces ?? [
				{prefix: 'private/', local: true},
				...(Object.keys(upstreams)[0] ? [{prefix: '', upstream: Object.keys(upstreams)[0]}] : []),
			],
			...options.extra,
		},
		process.cwd(),
	);
	const log = process.env['MIRROR_TEST_LOG'] ? createLogger(process.env['MIRROR_TEST_LOG']) : silentLogger();
	const registry = await openRegistry(config, log);
	const app = createApp(registry);
	const {createServer} = await import('node:http');
	const server: Server = createServer(app.callback());
	const port = await listenLocal(server, options.port ?? 0);
	let stopped = false;
	return {
		url: `http://127.0.0.1:${port}`,
		host: `127.0.0.1:${port}`,
		registry,
		dataDir,
		async stop() {
			if (stopped) {
				return;
			}

			stopped = true;
			server.closeAllConnections();
			await closeServer(server);
			await registry.close();
		},
	};
}
