/**
 * The storage quota as the fill layer sees it: room is made (LRU eviction of
 * cached content) before a fill writes its first byte, and the store is
 * trimmed again after it landed. With several replicas, eviction runs on one
 * at a time (`exclusive`).
 */
import {type Logger} from '../util/log.js';
import {type Maintenance} from './maintenance.js';
import {formatBytes} from '../util/format.js';

/** Runs a task alone across every process sharing the store, or skips it (undefined) when another runs one. */
export type Exclusive = <T>(task: () => Promise<T>) => Promise<T | undefined>;

/** One process: nothing to coordinate with. */
export const alone: Exclusive = async task => task();

export class Quota {
	constructor(
		private readonly maintenance: Pick<Maintenance, 'enforceQuota' | 'maxSize'>,
		private readonly exclusive: Exclusive,
		private readonly log: Logger,
	) {}

	/**
	 * A blob larger than the whole quota is still served and kept (a pull must
	 * not fail for it): the cache then stays over the quota until the next fill
	 * evicts it. That is logged, once per fill.
	 */
	async reserve(size: number, digest?: string): Promise<void> {
		const {maxSize} = this.maintenance;
		if (maxSize !== undefined && size > maxSize) {
			this.log.warn(
				{digest, size, maxSize, sizeText: formatBytes(size), maxSizeText: formatBytes(maxSize)},
				'blob larger than storage.max_size: served and kept, the cache is over its quota until the next fill evicts it',
			);
		}

		await this.exclusive(async () => this.maintenance.enforceQuota(size));
	}

	settle(): void {
		void this.exclusive(async () => this.maintenance.enforceQuota(0)).catch(error => this.log.warn({err: error}, 'quota enforcement failed'));
	}
}
