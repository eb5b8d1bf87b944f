/**
 * Store commands that run beside (or without) a serving process: they open
 * the stores read-write but never sweep temp files or uploads, which belong
 * to a running server.
 */
import {type Config} from '../config/load.js';
import {silentLogger} from '../util/log.js';
import {type Coordinator} from '../cluster/coordinator.js';
import {Maintenance} from '../store/maintenance.js';
import {type MetadataStore} from '../store/metadata.js';
import {openStores} from '../store/open.js';
import {openCoordinator} from '../compose/registry.js';
import {clientName} from '../service/namespaces.js';
import {formatBytes, formatDuration} from '../util/format.js';

type Stores = {metadata: MetadataStore; maintenance: Maintenance; coordinator?: Coordinator};

/** Opens the stores of `config`, runs `use`, and closes them again. */
export async function withStores<T>(config: Config, use: (stores: Stores) => T | Promise<T>): Promise<T> {
	const stores = await openStores(config, {offline: true});
	const coordinator = await openCoordinator(config, stores.postgres, silentLogger(), {offline: true});
	const maintenance = new Maintenance(stores.metadata, stores.blobs, undefined, silentLogger(), config.storage.maxSize);
	try {
		// With PostgreSQL, GC and verification wait for any replica's maintenance run to end, and hold off the next.
		return await use({metadata: stores.metadata, maintenance, coordinator});
	} finally {
		await coordinator?.close();
		await stores.close();
	}
}

export async function verify(config: Config, options: {delete: boolean}): Promise<number> {
	return withStores(config, async ({maintenance, coordinator}) => {
		const run = async () => maintenance.verify({remove: options.delete});
		const report = coordinator ? (await coordinator.exclusive(run, {wait: true}))! : await run();
		for (const entry of report.bad) {
			process.stdout.write(`bad      ${entry.digest} (content is ${entry.actual})${options.delete ? ': removed' : ''}\n`);
		}

		for (const digest of report.missing) {
			process.stdout.write(`missing  ${digest} (recorded, no file)${options.delete ? ': record removed' : ''}\n`);
		}

		for (const digest of report.orphans) {
			process.stdout.write(`orphan   ${digest} (file, no record)${options.delete ? ': removed' : ''}\n`);
		}

		const problems = report.bad.length + report.missing.length + report.orphans.length;
		process.stdout.write(`verified ${report.checked} blobs: ${report.bad.length} bad, ${report.missing.length} missing, ${report.orphans.length} orphaned\n`);
		if (problems > 0 && !options.delete) {
			process.stdout.write('run again with --delete to remove them (cached content is fetched again on the next pull)\n');
		}

		return problems > 0 && !options.delete ? 1 : 0;
	});
}

export async function gc(config: Config, options: {dryRun: boolean; graceMs?: number}): Promise<number> {
	return withStores(config, async ({maintenance, coordinator}) => {
		const run = async () => maintenance.gc({dryRun: options.dryRun, graceMs: options.graceMs});
		const report = coordinator ? (await coordinator.exclusive(run, {wait: true}))! : await run();
		const verb = options.dryRun ? 'would remove' : 'removed';
		for (const manifest of report.manifests) {
			const repository = manifest.name === null ? '' : `${clientName({registry: manifest.registry ?? '', name: manifest.name}, config.namespaces)}@`;
			process.stdout.write(`${verb} manifest ${repository}${manifest.digest} (${manifest.mediaType}, ${formatBytes(manifest.size)})\n`);
		}

		for (const blob of report.blobs) {
			process.stdout.write(`${verb} blob ${blob.digest} (${formatBytes(blob.size)})\n`);
		}

		process.stdout.write(`${verb} ${report.manifests.length} manifests and ${report.blobs.length} blobs, ${formatBytes(report.freedBytes)}\n`);
		const {kept} = report;
		if (kept.manifests + kept.blobs > 0) {
			process.stdout.write(
				`kept ${kept.manifests} manifests and ${kept.blobs} blobs used within the grace period (--grace ${formatDuration(report.graceMs)}); they go in a later run\n`,
			);
		}

		return 0;
	});
}

export async function ls(config: Config, options: {json: boolean}): Promise<number> {
	return withStores(config, async ({metadata}) => {
		const repos = (await metadata.describeRepositories()).map(repo => ({
			repository: clientName(repo, config.namespaces),
			kind: repo.registry === '' ? 'pushed' : `cached from ${repo.registry}`,
			tags: repo.tags.map(tag => tag.tag),
			bytes: repo.bytes,
			lastPull: repo.lastAccess ? new Date(repo.lastAccess).toISOString() : null,
		}));
		if (options.json) {
			process.stdout.write(`${JSON.stringify(repos, null, 2)}\n`);
			return 0;
		}

		const rows = [['REPOSITORY', 'KIND', 'TAGS', 'SIZE', 'LAST PULL'], ...repos.map(repo => [repo.repository, repo.kind, repo.tags.join(',') || '-', formatBytes(repo.bytes), repo.lastPull ?? '-'])];
		const widths = rows[0]!.map((_, column) => Math.max(...rows.map(row => row[column]!.length)));
		for (const row of rows) {
			process.stdout.write(`${row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()}\n`);
		}

		return 0;
	});
}

/** ` of 12.0 MiB quota`, and how far over it the cache is (a blob larger than the quota is kept). */
function quotaText(cachedBytes: number, maxSize: number | null): string {
	if (maxSize === null) {
		return ' (no quota)';
	}

	return ` of ${formatBytes(maxSize)} quota${cachedBytes > maxSize ? ` (over by ${formatBytes(cachedBytes - maxSize)})` : ''}`;
}

export async function stats(config: Config, options: {json: boolean}): Promise<number> {
	return withStores(config, async ({metadata}) => {
		const repos = await metadata.describeRepositories();
		const cachedBytes = await metadata.cachedBytes();
		const summary = {
			repositories: repos.length,
			cachedRepositories: repos.filter(repo => repo.registry !== '').length,
			pushedRepositories: repos.filter(repo => repo.registry === '').length,
			blobs: (await metadata.allBlobDigests()).length,
			cachedBytes,
			pushedBytes: await metadata.pushedBytes(),
			maxSize: config.storage.maxSize ?? null,
			overQuota: config.storage.maxSize !== undefined && cachedBytes > config.storage.maxSize,
		};
		if (options.json) {
			process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
			return 0;
		}

		process.stdout.write(
			[
				`repositories  ${summary.repositories} (${summary.cachedRepositories} cached, ${summary.pushedRepositories} pushed)`,
				`blobs         ${summary.blobs}`,
				`cached        ${formatBytes(summary.cachedBytes)}${quotaText(summary.cachedBytes, summary.maxSize)}`,
				`pushed        ${formatBytes(summary.pushedBytes)}`,
			].join('\n') + '\n',
		);
		return 0;
	});
}
