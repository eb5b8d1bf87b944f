/**
 * `registry-mirror purge NAME[:TAG]`: forgets a cached repository or tag in
 * the store (beside a running server or without one), so the next pull
 * fetches it from the upstream again; the same as the dashboard's purge and
 * `DELETE /api/cache/NAME[:TAG]`. Pushed repositories are refused.
 */
import {type Config} from '../config/load.js';
import {NamespaceRouter} from '../service/namespaces.js';
import {Purger} from '../service/purge.js';
import {RegistryError} from '../v2/errors.js';
import {withStores} from './offline.js';

export async function purge(config: Config, reference: string, options: {json: boolean}): Promise<number> {
	return withStores(config, async ({metadata}) => {
		try {
			const result = await new Purger(metadata, new NamespaceRouter(config)).purge(reference);
			process.stdout.write(
				options.json
					? `${JSON.stringify(result)}\n`
					: `purged ${result.repository}${result.tag ? `:${result.tag}` : ''} (cached from ${result.upstream}): ${result.tags.length} tags${result.tags.length > 0 ? ` (${result.tags.join(', ')})` : ''}, ${result.manifests} manifest links; the next pull fetches from the upstream, run gc to free the space\n`,
			);
			return 0;
		} catch (error) {
			if (error instanceof RegistryError) {
				process.stderr.write(`purge: ${reference}: ${error.message} (${error.code})\n`);
				return 1;
			}

			throw error;
		}
	});
}
