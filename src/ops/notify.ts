/**
 * Webhook notifications in the reference registry's envelope format
 * (application/vnd.docker.distribution.events.v1+json). Events queue per
 * endpoint and are sent in the background in batches, retried with
 * exponential backoff; a slow or dead endpoint never delays a request.
 */
import {randomUUID} from 'node:crypto';
import {hostname} from 'node:os';
import got from 'got';
import {type EndpointConfig, type EventAction} from '../config/load.js';
import {type Logger} from '../util/log.js';

export {type EventAction} from '../config/load.js';

export const ENVELOPE_TYPE = 'application/vnd.docker.distribution.events.v1+json';

export type EventTarget = {mediaType?: string; size?: number; digest?: string; repository: string; url?: string; tag?: string};
export type EventRequest = {id: string; addr: string; host: string; method: string; useragent: string};

type RegistryEvent = {
	id: string;
	timestamp: string;
	action: EventAction;
	target: EventTarget & {length?: number};
	request: EventRequest;
	actor: {name?: string};
	source: {addr: string; instanceID: string};
};

const MAX_QUEUE = 10_000;
const BATCH = 50;

class Endpoint {
	readonly #queue: RegistryEvent[] = [];
	#running = false;
	#dropped = 0;
	sent = 0;
	failures = 0;

	constructor(
		readonly config: EndpointConfig,
		private readonly log: Logger,
	) {}

	get pending(): number {
		return this.#queue.length;
	}

	push(event: RegistryEvent): void {
		if (this.#queue.length >= MAX_QUEUE) {
			this.#queue.shift();
			this.#dropped++;
			if (this.#dropped % 1000 === 1) {
				this.log.warn({endpoint: this.config.name, dropped: this.#dropped}, 'notification queue full: dropping the oldest events');
			}
		}

		this.#queue.push(event);
		if (!this.#running) {
			this.#running = true;
			void this.#drain().finally(() => {
				this.#running = false;
			});
		}
	}

	async #drain(): Promise<void> {
		while (this.#queue.length > 0) {
			const batch = this.#queue.slice(0, BATCH);
			let attempt = 0;
			for (;;) {
				try {
					const response = await got.post(this.config.url, {
						headers: {...this.config.headers, 'content-type': ENVELOPE_TYPE},
						body: JSON.stringify({events: batch}),
						timeout: {request: this.config.timeoutMs},
						retry: {limit: 0},
						throwHttpErrors: false,
					});
					if (response.statusCode >= 200 && response.statusCode < 300) {
						this.sent += batch.length;
						break;
					}

					throw new Error(`answered ${response.statusCode}`);
				} catch (error) {
					attempt++;
					this.failures++;
					const {name, maxAttempts} = this.config;
					const fields = {endpoint: name, attempt, attempts: maxAttempts, events: batch.length, err: (error as Error).message};
					if (attempt >= maxAttempts) {
						this.log.warn(fields, `notification delivery failed (attempt ${attempt} of ${maxAttempts}): giving up on these events`);
						break;
					}

					const delayMs = this.config.backoffMs * 2 ** (attempt - 1);
					this.log.warn({...fields, retryInMs: delayMs}, `notification delivery failed (attempt ${attempt} of ${maxAttempts}): retrying`);
					await new Promise(resolve => setTimeout(resolve, delayMs).unref());
				}
			}

			this.#queue.splice(0, batch.length);
		}
	}
}

export class Notifier {
	readonly #endpoints: Endpoint[];
	readonly #instanceID: string;

	constructor(endpoints: EndpointConfig[], log: Logger, instanceID: string = randomUUID()) {
		this.#endpoints = endpoints.map(config => new Endpoint(config, log));
		this.#instanceID = instanceID;
	}

	get enabled(): boolean {
		return this.#endpoints.length > 0;
	}

	get endpoints(): ReadonlyArray<{name: string; pending: number; sent: number; failures: number}> {
		return this.#endpoints.map(endpoint => ({name: endpoint.config.name, pending: endpoint.pending, sent: endpoint.sent, failures: endpoint.failures}));
	}

	/** `port`: the one the request came in on; the source is `hostname:port`, as the reference registry has it. */
	emit(action: EventAction, target: EventTarget, request: EventRequest, actor: string | null, port?: number): void {
		if (this.#endpoints.length === 0) {
			return;
		}

		const event: RegistryEvent = {
			id: randomUUID(),
			timestamp: new Date().toISOString(),
			action,
			target: {...target, ...(target.size === undefined ? {} : {length: target.size})},
			request,
			actor: actor ? {name: actor} : {},
			source: {addr: port === undefined ? hostname() : `${hostname()}:${port}`, instanceID: this.#instanceID},
		};
		for (const endpoint of this.#endpoints) {
			if (endpoint.config.events.includes(action)) {
				endpoint.push(event);
			}
		}
	}
}
