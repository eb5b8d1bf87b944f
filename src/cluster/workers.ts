/**
 * Coordination of the worker processes of one machine (`workers: N`),
 * which share the listening socket and one SQLite store. The primary process
 * keeps the table of fill locks and the maintenance lock; each worker asks it
 * over the IPC channel node's cluster module gives them. A worker that dies
 * loses its locks at once (the primary sees it exit), so another takes its
 * fills over, as with PostgreSQL replicas.
 *
 * Workers read each other's fills in progress over the internal endpoint,
 * each on its own loopback port (the shared port would land anywhere).
 */
import {type Digest} from '../v2/grammar.js';
import {type FillCoordinator} from './coordination.js';

/** The IPC channel of a worker (its `process`) or of the primary's view of one worker. */
export type Channel = {
	send(message: unknown): unknown;
	on(event: 'message', listener: (message: unknown) => void): unknown;
};

type Operation =
	| {op: 'acquire'; digest: string; owner: string}
	| {op: 'release'; digest: string}
	| {op: 'owner'; digest: string}
	| {op: 'exclusive'; wait: boolean}
	| {op: 'exclusive-end'}
	| {op: 'ask'; question: string}
	| {op: 'changed'};

type Request = {mirror: 'request'; id: number} & Operation;
type Reply = {mirror: 'reply'; id: number; value: unknown; error?: string};
type Ended = {mirror: 'fill-ended'; digest: string};
/** The primary tells a worker another changed the store; the worker answers once it has taken note. */
type Notice = {mirror: 'store-changed'; id: number};
type Noticed = {mirror: 'store-changed-noted'; id: number};

function isMessage<T extends {mirror: string}>(message: unknown, kind: T['mirror']): message is T {
	return typeof message === 'object' && message !== null && (message as {mirror?: unknown}).mirror === kind;
}

/**
 * The primary's side: who holds which fill, and who runs maintenance.
 * `questions` answers what workers ask of the whole machine (metrics summed over workers).
 */
export class LockTable {
	readonly #fills = new Map<string, {worker: number; owner: string}>();
	readonly #workers = new Map<number, Channel>();
	#maintenance: number | undefined;
	readonly #queue: Array<{worker: number; grant: () => void}> = [];
	#nextNotice = 0;
	readonly #notices = new Map<number, () => void>();

	constructor(private readonly questions: Record<string, () => Promise<unknown>> = {}) {}

	/** Serves a worker's requests until `exited(worker)`. */
	attach(worker: number, channel: Channel): void {
		this.#workers.set(worker, channel);
		channel.on('message', message => {
			if (isMessage<Noticed>(message, 'store-changed-noted')) {
				this.#notices.get(message.id)?.();
				return;
			}

			if (isMessage<Request>(message, 'request')) {
				void this.#handle(worker, message).then(
					value => channel.send({mirror: 'reply', id: message.id, value} satisfies Reply),
					(error: unknown) => channel.send({mirror: 'reply', id: message.id, value: undefined, error: String(error)} satisfies Reply),
				);
			}
		});
	}

	/** A worker is gone: its locks are free, and the others stop waiting for its fills. */
	exited(worker: number): void {
		this.#workers.delete(worker);
		for (const [digest, holder] of this.#fills) {
			if (holder.worker === worker) {
				this.#release(digest);
			}
		}

		const waiting = this.#queue.filter(waiter => waiter.worker !== worker);
		this.#queue.splice(0, this.#queue.length, ...waiting);
		if (this.#maintenance === worker) {
			this.#endMaintenance();
		}
	}

	async #handle(worker: number, request: Request): Promise<unknown> {
		switch (request.op) {
			case 'acquire': {
				if (this.#fills.has(request.digest)) {
					return false;
				}

				this.#fills.set(request.digest, {worker, owner: request.owner});
				return true;
			}

			case 'release': {
				if (this.#fills.get(request.digest)?.worker === worker) {
					this.#release(request.digest);
				}

				return undefined;
			}

			case 'owner': {
				return this.#fills.get(request.digest)?.owner;
			}

			case 'exclusive': {
				if (this.#maintenance === undefined) {
					this.#maintenance = worker;
					return true;
				}

				if (!request.wait) {
					return false;
				}

				return new Promise<boolean>(resolve => {
					this.#queue.push({worker, grant: () => resolve(true)});
				});
			}

			case 'exclusive-end': {
				if (this.#maintenance === worker) {
					this.#endMaintenance();
				}

				return undefined;
			}

			case 'changed': {
				await this.#tellOthers(worker);
				return undefined;
			}

			case 'ask': {
				const answer = this.questions[request.question];
				if (!answer) {
					throw new Error(`no answer to ${request.question}`);
				}

				return answer();
			}
		}
	}

	/** Tells every other worker the store changed, and resolves once each has taken note (or is gone). */
	async #tellOthers(from: number): Promise<void> {
		await Promise.all(
			[...this.#workers].filter(([worker]) => worker !== from).map(async ([worker, channel]) => {
				const id = ++this.#nextNotice;
				await new Promise<void>(resolve => {
					const done = () => {
						this.#notices.delete(id);
						clearInterval(check);
						resolve();
					};

					this.#notices.set(id, done);
					// A worker that exits meanwhile never answers.
					const check = setInterval(() => {
						if (!this.#workers.has(worker)) {
							done();
						}
					}, 100);
					channel.send({mirror: 'store-changed', id} satisfies Notice);
				});
			}),
		);
	}

	#release(digest: string): void {
		this.#fills.delete(digest);
		for (const channel of this.#workers.values()) {
			channel.send({mirror: 'fill-ended', digest} satisfies Ended);
		}
	}

	#endMaintenance(): void {
		const next = this.#queue.shift();
		this.#maintenance = next?.worker;
		next?.grant();
	}
}

/** A worker's channel to the primary: requests answered in turn, and word of fills that ended. */
export class PrimaryLink {
	#nextId = 0;
	readonly #pending = new Map<number, {resolve: (value: unknown) => void; reject: (error: Error) => void}>();
	readonly #ended = new Set<(digest: string) => void>();
	readonly #changed = new Set<() => void>();

	constructor(private readonly channel: Channel) {
		channel.on('message', message => {
			if (isMessage<Notice>(message, 'store-changed')) {
				for (const listener of this.#changed) {
					listener();
				}

				channel.send({mirror: 'store-changed-noted', id: message.id} satisfies Noticed);
				return;
			}

			if (isMessage<Reply>(message, 'reply')) {
				const pending = this.#pending.get(message.id);
				this.#pending.delete(message.id);
				if (message.error === undefined) {
					pending?.resolve(message.value);
				} else {
					pending?.reject(new Error(`primary: ${message.error}`));
				}
			} else if (isMessage<Ended>(message, 'fill-ended')) {
				for (const listener of this.#ended) {
					listener(message.digest);
				}
			}
		});
	}

	async request(operation: Operation): Promise<unknown> {
		const id = ++this.#nextId;
		return new Promise((resolve, reject) => {
			this.#pending.set(id, {resolve, reject});
			this.channel.send({mirror: 'request', id, ...operation} satisfies Request);
		});
	}

	/** Something only the primary knows: what all workers together have (see LockTable's questions). */
	async ask(question: string): Promise<unknown> {
		return this.request({op: 'ask', question});
	}

	onFillEnded(listener: (digest: string) => void): void {
		this.#ended.add(listener);
	}

	/** Tells the other workers this one changed the store; resolves once every one of them has taken note. */
	async storeChanged(): Promise<void> {
		await this.request({op: 'changed'});
	}

	onStoreChanged(listener: () => void): void {
		this.#changed.add(listener);
	}
}

/** A worker's side: the FillCoordinator the cluster layer uses, over the link to the primary. */
export class WorkerCoordinator implements FillCoordinator {
	/** The workers of one machine share its data directory. */
	readonly sharesFiles = true;
	readonly #held = new Set<string>();
	readonly #waiters = new Map<string, Set<() => void>>();

	constructor(
		private readonly primary: PrimaryLink,
		public self: string,
		readonly clusterKey: string,
	) {
		primary.onFillEnded(digest => {
			for (const wake of [...(this.#waiters.get(digest) ?? [])]) {
				wake();
			}
		});
	}

	async tryAcquireFill(digest: Digest): Promise<boolean> {
		if (this.#held.has(digest.value)) {
			return false;
		}

		const locked = (await this.primary.request({op: 'acquire', digest: digest.value, owner: this.self})) === true;
		if (locked) {
			this.#held.add(digest.value);
		}

		return locked;
	}

	async releaseFill(digest: Digest): Promise<void> {
		if (this.#held.delete(digest.value)) {
			await this.primary.request({op: 'release', digest: digest.value});
		}
	}

	async fillOwner(digest: Digest): Promise<string | undefined> {
		return (await this.primary.request({op: 'owner', digest: digest.value})) as string | undefined;
	}

	async waitForFill(digest: Digest, ms: number): Promise<void> {
		await new Promise<void>(resolve => {
			const waiters = this.#waiters.get(digest.value) ?? new Set();
			this.#waiters.set(digest.value, waiters);
			const done = () => {
				clearTimeout(timer);
				waiters.delete(done);
				if (waiters.size === 0) {
					this.#waiters.delete(digest.value);
				}

				resolve();
			};

			const timer = setTimeout(done, ms);
			waiters.add(done);
		});
	}

	async exclusive<T>(task: () => Promise<T>, options: {wait?: boolean} = {}): Promise<T | undefined> {
		if ((await this.primary.request({op: 'exclusive', wait: options.wait ?? false})) !== true) {
			return undefined;
		}

		try {
			return await task();
		} finally {
			await this.primary.request({op: 'exclusive-end'});
		}
	}

	async ping(): Promise<void> {
		// The link is this process's own IPC channel: while the process runs, it is up.
	}

	async close(): Promise<void> {
		this.#held.clear();
	}
}
