#!/usr/bin/env node
/**
 * registry-mirror: the command line. `serve` (the default) runs the mirror;
 * the other commands look after its store.
 */
import {Command, Option} from 'commander';
import {ConfigError, loadConfig, type Config} from './config/load.js';
import {gc, ls, stats, verify} from './cli/offline.js';
import {healthcheck} from './cli/healthcheck.js';
import {prefetch} from './cli/prefetch.js';
import {purge} from './cli/purge.js';
import {history, pin, pins, unpin} from './cli/tags.js';
import {serve} from './cli/serve.js';
import {parseDuration} from './config/units.js';

// The AWS SDK warns on every start under Node 20 that its releases after January 2027 need Node 22;
// package-lock.json pins the release this mirror is tested with, so the warning tells operators nothing.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

function config(options: {config?: string}): Config {
	return loadConfig(options.config ?? process.env['MIRROR_CONFIG'] ?? 'mirror.config.yml');
}

const configOption = () => new Option('-c, --config <file>', 'config file (default: $MIRROR_CONFIG or ./mirror.config.yml)');

const program = new Command()
	.name('registry-mirror')
	.description('A pull-through caching registry mirror and private registry (Docker Registry HTTP API V2).')
	.showHelpAfterError();

program
	.command('serve', {isDefault: true})
	.description('serve the registry API (the default command)')
	.addOption(configOption())
	.action(async (options: {config?: string}) => serve(config(options)));

program
	.command('verify')
	.description('rehash every blob in the store; report blobs whose content does not match their digest, records without files and files without records')
	.addOption(configOption())
	.option('--delete', 'remove what does not match (cached content is fetched again on the next pull)', false)
	.option('--repair', 'same as --delete', false)
	.action(async (options: {config?: string; delete: boolean; repair: boolean}) => {
		process.exitCode = await verify(config(options), {delete: options.delete || options.repair});
	});

program
	.command('gc')
	.description('garbage-collect: remove manifests no repository links and blobs no manifest references')
	.addOption(configOption())
	.option('--dry-run', 'list what would be removed, remove nothing', false)
	.option('--grace <duration>', 'keep anything touched within this long (pushes in progress)', '1h')
	.action(async (options: {config?: string; dryRun: boolean; grace: string}) => {
		const graceMs = parseDuration(options.grace);
		if (graceMs === undefined) {
			throw new ConfigError(`gc: --grace: not a duration: ${options.grace}`);
		}

		process.exitCode = await gc(config(options), {dryRun: options.dryRun, graceMs});
	});

program
	.command('ls')
	.description('list repositories with their tags, size and last pull')
	.addOption(configOption())
	.option('--json', 'print JSON', false)
	.action(async (options: {config?: string; json: boolean}) => {
		process.exitCode = await ls(config(options), options);
	});

program
	.command('stats')
	.description('print store totals: repositories, blobs, cached bytes against the quota, pushed bytes')
	.addOption(configOption())
	.option('--json', 'print JSON', false)
	.action(async (options: {config?: string; json: boolean}) => {
		process.exitCode = await stats(config(options), options);
	});

program
	.command('purge')
	.description('forget a cached repository or tag so the next pull fetches it from the upstream again (pushed repositories are refused)')
	.argument('<name[:tag]>', 'as a client names it: nginx, library/nginx:1.27, ghcr.io/org/tool:1')
	.addOption(configOption())
	.option('--json', 'print JSON', false)
	.action(async (reference: string, options: {config?: string; json: boolean}) => {
		process.exitCode = await purge(config(options), reference, options);
	});

program
	.command('healthcheck')
	.description('exit 0 when the mirror at the configured listen address answers /healthz (for container health checks)')
	.addOption(configOption())
	.action(async (options: {config?: string}) => {
		process.exitCode = await healthcheck(config(options));
	});

program
	.command('history')
	.description('the digests an upstream tag pointed at, with when the mirror first and last saw each')
	.argument('<name:tag>', 'like alpine:3 or ghcr.io/org/tool:1')
	.addOption(configOption())
	.option('--json', 'print JSON', false)
	.action(async (reference: string, options: {config?: string; json: boolean}) => {
		process.exitCode = await history(config(options), reference, options);
	});

program
	.command('pin')
	.description('freeze a cached tag: served as DIGEST (default: the digest cached now) without asking the upstream, and never evicted, until unpinned')
	.argument('<name:tag>', 'like alpine:3 or ghcr.io/org/tool:1')
	.argument('[digest]', 'a digest cached for that repository (see `history`)')
	.addOption(configOption())
	.action(async (reference: string, digest: string | undefined, options: {config?: string}) => {
		process.exitCode = await pin(config(options), reference, digest);
	});

program
	.command('unpin')
	.description('return a pinned tag to normal: revalidated with the upstream after its TTL')
	.argument('<name:tag>')
	.addOption(configOption())
	.action(async (reference: string, options: {config?: string}) => {
		process.exitCode = await unpin(config(options), reference);
	});

program
	.command('pins')
	.description('list pinned tags')
	.addOption(configOption())
	.option('--json', 'print JSON', false)
	.action(async (options: {config?: string; json: boolean}) => {
		process.exitCode = await pins(config(options), options);
	});

program
	.command('prefetch')
	.description('pull images through a running mirror so they are cached ahead of time')
	.argument('<image...>', 'images like nginx:1.27, ghcr.io/org/tool:1 or alpine@sha256:...')
	.addOption(configOption())
	.option('--url <url>', 'the running mirror (default: from the config\'s listen address)')
	.option('--platform <os/arch>', 'only these platforms of a multi-platform image (repeatable; default: all)', (value: string, previous: string[]) => [...previous, value], [] as string[])
	.option('--user <user:password>', 'credentials, when the mirror requires a login')
	.action(async (images: string[], options: {config?: string; url?: string; platform: string[]; user?: string}) => {
		let url = options.url;
		if (!url) {
			const loaded = config(options);
			const host = ['0.0.0.0', '::', ''].includes(loaded.listen.host) ? '127.0.0.1' : loaded.listen.host;
			url = `${loaded.tls ? 'https' : 'http'}://${host}:${loaded.listen.port}${loaded.prefix}`;
		}

		process.exitCode = await prefetch(images, {url, platforms: options.platform, user: options.user, progress: Boolean(process.stdout.isTTY)});
	});

program.parseAsync(process.argv).catch((error: unknown) => {
	if (error instanceof ConfigError) {
		process.stderr.write(`${error.message}\n`);
	} else if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
		process.stderr.write(`listen: address already in use: ${(error as Error).message}\n`);
	} else {
		process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
	}

	process.exit(1);
});
