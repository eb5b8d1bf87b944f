/**
 * `history`, `pin`, `unpin` and `pins`: tag history and pins, on the store
 * directly (like `ls`), so they work with or without a running mirror. A
 * running mirror reads pins from the store on every tag lookup, so it honours
 * a pin made here at once.
 */
import {userInfo} from 'node:os';
import {type Config} from '../config/load.js';
import {TagControl, parseTagReference} from '../proxy/tag-control.js';
import {NamespaceRouter, clientName} from '../service/namespaces.js';
import {type MetadataStore} from '../store/metadata.js';
import {isRegistryError} from '../v2/errors.js';
import {withStores} from './offline.js';

const iso = (ms: number): string => new Date(ms).toISOString();

/** Who pins from the command line: `cli:USER`, or `cli` when the OS has no name for the user. */
function cliUser(): string {
	try {
		return `cli:${userInfo().username}`;
	} catch {
		return 'cli';
	}
}

/** Runs `use` with a TagControl over the store; a refusal (RegistryError) is one line on stderr and exit code 1. */
async function withTags(config: Config, use: (tags: TagControl) => Promise<number>): Promise<number> {
	return withStores(config, async ({metadata}: {metadata: MetadataStore}) => {
		const tags = new TagControl(new NamespaceRouter(config), metadata, repo => clientName(repo, config.namespaces));
		try {
			return await use(tags);
		} catch (error) {
			if (isRegistryError(error)) {
				process.stderr.write(`${error.message}\n`);
				return 1;
			}

			throw error;
		}
	});
}

function table(rows: string[][]): string {
	const widths = rows[0]!.map((_, column) => Math.max(...rows.map(row => row[column]!.length)));
	return rows.map(row => `${row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()}\n`).join('');
}

export async function history(config: Config, reference: string, options: {json: boolean}): Promise<number> {
	return withTags(config, async tags => {
		const {name, tag} = parseTagReference(reference);
		const report = await tags.history(name, tag);
		if (options.json) {
			process.stdout.write(`${JSON.stringify(
				{
					...report,
					history: report.history.map(entry => ({digest: entry.digest, firstSeen: iso(entry.firstSeen), lastSeen: iso(entry.lastSeen)})),
					...(report.pin ? {pin: {digest: report.pin.digest, pinnedAt: iso(report.pin.pinnedAt), pinnedBy: report.pin.pinnedBy}} : {}),
				},
				null,
				2,
			)}\n`);
			return 0;
		}

		const served = report.current?.digest;
		process.stdout.write(`${name}:${tag} from ${report.upstream} (${report.remoteName})\n`);
		if (report.pin) {
			process.stdout.write(`pinned at ${report.pin.digest} since ${iso(report.pin.pinnedAt)}${report.pin.pinnedBy ? ` by ${report.pin.pinnedBy}` : ''}\n`);
		}

		process.stdout.write(
			table([
				['DIGEST', 'FIRST SEEN', 'LAST SEEN', ''],
				...report.history.map(entry => [entry.digest, iso(entry.firstSeen), iso(entry.lastSeen), entry.digest === served ? (report.pin ? 'pinned' : 'served') : '']),
			]),
		);
		return 0;
	});
}

export async function pin(config: Config, reference: string, digest: string | undefined): Promise<number> {
	return withTags(config, async tags => {
		const {name, tag} = parseTagReference(reference);
		const pinned = await tags.pin(name, tag, digest, cliUser());
		process.stdout.write(`pinned ${name}:${tag} at ${pinned.digest}\n`);
		return 0;
	});
}

export async function unpin(config: Config, reference: string): Promise<number> {
	return withTags(config, async tags => {
		const {name, tag} = parseTagReference(reference);
		const removed = await tags.unpin(name, tag);
		process.stdout.write(`unpinned ${name}:${tag} (was ${removed.digest}); it is revalidated with the upstream again\n`);
		return 0;
	});
}

export async function pins(config: Config, options: {json: boolean}): Promise<number> {
	return withTags(config, async tags => {
		const list = await tags.pins();
		if (options.json) {
			process.stdout.write(`${JSON.stringify(list.map(entry => ({...entry, pinnedAt: iso(entry.pinnedAt)})), null, 2)}\n`);
			return 0;
		}

		process.stdout.write(table([['TAG', 'DIGEST', 'PINNED AT', 'BY'], ...list.map(entry => [`${entry.repository}:${entry.tag}`, entry.digest, iso(entry.pinnedAt), entry.pinnedBy ?? '-'])]));
		return 0;
	});
}
