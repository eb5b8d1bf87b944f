/** One client per configured upstream, reporting to the metrics and the log. */
import {type Config} from '../config/load.js';
import {type Metrics} from '../ops/metrics.js';
import {UpstreamClient} from '../upstream/client.js';
import {type Logger} from '../util/log.js';
import {RegistryError} from '../v2/errors.js';

/** Fills `clients` from the config; returns the lookup by name the services use. */
export function upstreamClients(config: Config, clients: Map<string, UpstreamClient>, metrics: Metrics, log: Logger): (name: string) => UpstreamClient {
	for (const upstream of config.upstreams.values()) {
		clients.set(
			upstream.name,
			new UpstreamClient(upstream, {
				onWarning: (message, fields) => log.warn({...fields}, message),
				onRequest: (name, _method, kind, status) => {
					metrics.upstreamRequests.inc({upstream: name, kind, status: String(status)});
					if (status === 429) {
						metrics.upstreamRateLimited.inc({upstream: name});
					}
				},
				onError: name => metrics.upstreamErrors.inc({upstream: name}),
			}),
		);
	}

	return (name: string): UpstreamClient => {
		const client = clients.get(name);
		if (!client) {
			throw new RegistryError('NAME_UNKNOWN', {message: `no upstream named ${name}`});
		}

		return client;
	};
}
