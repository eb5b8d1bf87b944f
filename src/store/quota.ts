/**
 * The storage quota as the fill layer sees it: room is made (LRU eviction of
 * cached content) before a fill writes its first byte, and the store is
 * trimmed again after it landed. With several replicas, eviction runs on one
 * at a time (`exclusive`).
 */
import {type Logger} from '../util/log.js';
import {type Maintenance} from './maintenance.js';

/** Runs a task alone across every process sharing the store, or skips it (undefined) when another runs one. */
export type Exclusive = <T>(task: () => Promise<T>) => Promise<T | undefined>;

/** One process: nothing to coordinate with. */
export const alone: Exclusive = async task => task();

export class Quota {
	constructor(
		private readonly maintenance: Pick<Maintenance, 'enforceQuota'>,
		private readonly exclusive: Exclusive,
		private readonly log: Logger,
	) {}

	async reserve(size: number): Promise<void> {
		await this.exclusive(async () => this.maintenance.enforceQuota(size));
	}

	settle(): void {
		void this.exclusive(async () => this.maintenance.enforceQuota(0)).catch(error => this.log.warn({err: error}, 'quota enforcement failed'));
	}
}
