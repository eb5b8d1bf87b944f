/**
 * What the cluster layer needs from whoever coordinates the processes that
 * share one store: one fill per blob among them, where a fill runs, and one
 * maintenance run at a time. PostgreSQL replicas coordinate through the
 * database (coordinator.ts); the workers of one machine through their
 * primary process (workers.ts).
 */
import {type Digest} from '../v2/grammar.js';

export interface FillCoordinator {
	/** How the others reach this process's internal fill endpoint. */
	self: string;
	/** The secret the others show to read fills in progress here. */
	readonly clusterKey: string;
	/** The processes share this machine and its data directory: a fill's temp file may be read directly. */
	readonly sharesFiles: boolean;
	/** Takes the fill lock for `digest` if nobody holds it. Not asked again for a digest held here. */
	tryAcquireFill(digest: Digest): Promise<boolean>;
	releaseFill(digest: Digest): Promise<void>;
	/** Who is filling `digest` right now, if anyone says so. */
	fillOwner(digest: Digest): Promise<string | undefined>;
	/** Resolves when a fill of `digest` ends somewhere, or after `ms`. */
	waitForFill(digest: Digest, ms: number): Promise<void>;
	/** Runs `task` alone among the processes; without `wait`, undefined at once when another runs one. */
	exclusive<T>(task: () => Promise<T>, options?: {wait?: boolean}): Promise<T | undefined>;
	ping(): Promise<void>;
	close(): Promise<void>;
}
