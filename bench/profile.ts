/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): the functions with
 * the most self time, and self time per source file.
 *   node --import tsx bench/profile.ts FILE.cpuprofile [TOP]
 */
import {readFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';

type CallFrame = {functionName: string; url: string; lineNumber: number; columnNumber: number};
type ProfileNode = {id: number; callFrame: CallFrame; children?: number[]};
type CpuProfile = {nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[]};

export type ProfileLine = {name: string; where: string; selfMs: number; percent: number};
export type ProfileSummary = {totalMs: number; idleMs: number; functions: ProfileLine[]; files: ProfileLine[]};

function shortUrl(url: string): string {
	if (url === '') {
		return '(native)';
	}

	return url
		.replace(/^file:\/\//, '')
		.replace(/^.*\/node_modules\//, 'node_modules/')
		.replace(/^.*\/bench\/\.dist-[^/]+\//, 'dist/')
		.replace(/^\/work\/main\//, '');
}

export function summarise(file: string, top = 25): ProfileSummary {
	const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
	const byId = new Map(profile.nodes.map(node => [node.id, node]));
	const self = new Map<number, number>();
	for (let i = 0; i < profile.samples.length; i++) {
		// timeDeltas[i] is the time before sample i; attribute the following delta to sample i.
		const delta = profile.timeDeltas[i + 1] ?? 0;
		const id = profile.samples[i]!;
		self.set(id, (self.get(id) ?? 0) + Math.max(0, delta));
	}

	const functions = new Map<string, ProfileLine>();
	const files = new Map<string, ProfileLine>();
	let totalUs = 0;
	let idleUs = 0;
	for (const [id, us] of self) {
		const frame = byId.get(id)?.callFrame;
		if (!frame) {
			continue;
		}

		totalUs += us;
		const name = frame.functionName || '(anonymous)';
		if (name === '(idle)') {
			idleUs += us;
			continue;
		}

		const where = frame.url === '' ? '' : `${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
		const key = `${name} ${where}`;
		const entry = functions.get(key) ?? {name, where, selfMs: 0, percent: 0};
		entry.selfMs += us / 1000;
		functions.set(key, entry);
		const fileKey = frame.url === '' ? `(${name.startsWith('(') ? name.slice(1, -1) : 'native'})` : shortUrl(frame.url);
		const fileEntry = files.get(fileKey) ?? {name: fileKey, where: '', selfMs: 0, percent: 0};
		fileEntry.selfMs += us / 1000;
		files.set(fileKey, fileEntry);
	}

	const busyMs = (totalUs - idleUs) / 1000;
	const rank = (entries: Iterable<ProfileLine>): ProfileLine[] =>
		[...entries]
			.map(entry => ({...entry, percent: busyMs > 0 ? (entry.selfMs / busyMs) * 100 : 0}))
			.sort((a, b) => b.selfMs - a.selfMs)
			.slice(0, top);
	return {totalMs: totalUs / 1000, idleMs: idleUs / 1000, functions: rank(functions.values()), files: rank(files.values())};
}

export function formatSummary(summary: ProfileSummary, title: string): string {
	const lines = [
		`### ${title}`,
		`sampled ${summary.totalMs.toFixed(0)} ms, idle ${summary.idleMs.toFixed(0)} ms, busy ${(summary.totalMs - summary.idleMs).toFixed(0)} ms (percentages are of busy time)`,
		'',
		'| self ms | % busy | function | where |',
		'| ---: | ---: | --- | --- |',
		...summary.functions.map(line => `| ${line.selfMs.toFixed(1)} | ${line.percent.toFixed(1)} | ${line.name} | ${line.where} |`),
		'',
		'| self ms | % busy | file |',
		'| ---: | ---: | --- |',
		...summary.files.slice(0, 12).map(line => `| ${line.selfMs.toFixed(1)} | ${line.percent.toFixed(1)} | ${line.name} |`),
	];
	return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
	const [file, top] = process.argv.slice(2);
	if (!file) {
		process.stderr.write('usage: node --import tsx bench/profile.ts FILE.cpuprofile [TOP]\n');
		process.exit(2);
	}

	process.stdout.write(`${formatSummary(summarise(file, Number(top ?? 25)), file)}\n`);
}
