/**
 * Keeping the store healthy: the quota with LRU eviction of cached content,
 * mark-and-sweep garbage collection, and verification of every blob against
 * its digest. Pushed content is never evicted; GC and eviction only touch
 * what nothing references, and never what was touched within the grace
 * period (a push whose manifest is not up yet, a fill that just landed).
 */
import {type Logger} from '../util/log.js';
import {type Digest, parseDigest} from '../v2/grammar.js';
import {type AccessRecorder} from './access.js';
import {type BlobContent} from './blob-store.js';
import {hashOf} from './hashing.js';
import {type GarbageReport, type Housekeeping, type ReadIndex} from './metadata.js';

export const GC_GRACE_MS = 60 * 60 * 1000;

export type GcReport = GarbageReport & {freedBytes: number; dryRun: boolean; graceMs: number};
export type VerifyReport = {checked: number; bad: Array<{digest: string; actual: string}>; missing: string[]; orphans: string[]; removed: boolean};

export class Maintenance {
	#evicting: Promise<unknown> = Promise.resolve();

	constructor(
		private readonly metadata: Housekeeping & Pick<ReadIndex, 'getBlob'>,
		private readonly blobs: BlobContent,
		private readonly access: AccessRecorder | undefined,
		private readonly log: Logger,
		readonly maxSize: number | undefined,
		private readonly now: () => number = Date.now,
	) {}

	/**
	 * Evicts least-recently-used cached images until `incoming` more bytes fit
	 * under the quota. Runs one at a time.
	 */
	async enforceQuota(incoming = 0): Promise<{manifests: number; freedBytes: number}> {
		const run = this.#evicting.then(async () => this.#evict(incoming));
		this.#evicting = run.catch(() => undefined);
		return run;
	}

	async #evict(incoming: number): Promise<{manifests: number; freedBytes: number}> {
		const result = {manifests: 0, freedBytes: 0};
		if (this.maxSize === undefined) {
			return result;
		}

		let cached = await this.metadata.cachedBytes();
		const over = () => cached + incoming > this.maxSize!;
		if (!over()) {
			return result;
		}

		await this.access?.flush(); // the LRU order needs the latest access times
		// Blobs no manifest references go first (a blob fetched alone, or left over).
		for (const blob of await this.metadata.unreferencedCachedBlobs(this.now() - 60_000)) {
			if (!over()) {
				break;
			}

			await this.#removeBlobs([blob]);
			result.freedBytes += blob.size;
			cached -= blob.size;
		}

		while (over()) {
			const victim = await this.metadata.leastRecentlyUsedCachedManifest();
			if (!victim) {
				break; // only pushed content (and the incoming fill) left
			}

			const removed = await this.metadata.evictManifest(victim.digest);
			await this.#removeFiles(removed.map(blob => blob.digest));
			result.manifests++;
			result.freedBytes += removed.reduce((sum, blob) => sum + blob.size, 0);
			cached = await this.metadata.cachedBytes(); // the manifest's own bytes went too
		}

		if (result.manifests > 0 || result.freedBytes > 0) {
			this.log.info({...result, maxSize: this.maxSize, cachedBytes: cached}, 'evicted cached content to stay under the quota');
		}

		return result;
	}

	async gc(options: {dryRun: boolean; graceMs?: number}): Promise<GcReport> {
		await this.access?.flush();
		const graceMs = options.graceMs ?? GC_GRACE_MS;
		const garbage = await this.metadata.collectGarbage(this.now() - graceMs, !options.dryRun);
		if (!options.dryRun) {
			await this.#removeFiles(garbage.blobs.map(blob => blob.digest));
		}

		const freedBytes = garbage.blobs.reduce((sum, blob) => sum + blob.size, 0);
		return {...garbage, freedBytes, dryRun: options.dryRun, graceMs};
	}

	/** Rehashes every blob; reports (and with `remove`, deletes) what does not match. */
	async verify(options: {remove: boolean; onProgress?: (digest: string) => void}): Promise<VerifyReport> {
		const report: VerifyReport = {checked: 0, bad: [], missing: [], orphans: [], removed: options.remove};
		const onDisk = new Set<string>();
		for (const name of await this.blobs.list()) {
			let digest: Digest;
			try {
				digest = parseDigest(name);
			} catch {
				report.bad.push({digest: name, actual: 'not a digest name'});
				continue;
			}

			onDisk.add(digest.value);
			options.onProgress?.(digest.value);
			const actual = await hashOf(this.blobs.createReadStream(digest), digest.algorithm);
			report.checked++;
			if (actual !== digest.value) {
				report.bad.push({digest: digest.value, actual});
			} else if (!(await this.metadata.getBlob(digest.value))) {
				report.orphans.push(digest.value);
			}
		}

		for (const digest of await this.metadata.allBlobDigests()) {
			if (!onDisk.has(digest)) {
				report.missing.push(digest);
			}
		}

		if (options.remove) {
			const rows = [...report.bad.map(entry => entry.digest), ...report.missing].filter(digest => /^sha(256|512):/.test(digest));
			await this.metadata.deleteBlobRecords(rows);
			await this.#removeFiles([...report.bad.map(entry => entry.digest), ...report.orphans]);
		}

		return report;
	}

	async #removeBlobs(blobs: Array<{digest: string}>): Promise<void> {
		await this.metadata.deleteBlobRecords(blobs.map(blob => blob.digest));
		await this.#removeFiles(blobs.map(blob => blob.digest));
	}

	async #removeFiles(digests: readonly string[]): Promise<void> {
		for (const digest of digests) {
			try {
				await this.blobs.remove(parseDigest(digest));
			} catch (error) {
				this.log.warn({digest, err: error}, 'could not remove blob file');
			}
		}
	}
}
