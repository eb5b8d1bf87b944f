/** Headless Chromium (Debian `chromium`): the DOM of a page after it loaded, as a person's browser would have it. */
import {spawn} from 'node:child_process';
import {writeFile} from 'node:fs/promises';
import {type Readable, type Writable} from 'node:stream';
import {findExecutable, run, stopChild, tempDir, trackChild} from './process.js';

export async function renderedDom(url: string): Promise<string> {
	const binary = findExecutable('chromium') ?? findExecutable('chromium-browser');
	if (binary === null) {
		throw new Error('chromium is not installed: run `apt-get install -y chromium` (test/setup.sh does)');
	}

	const profile = await tempDir('chromium-');
	const result = await run(
		binary,
		[
			'--headless',
			'--no-sandbox',
			'--disable-gpu',
			'--disable-quic',
			'--no-first-run',
			'--disable-background-networking',
			'--disable-component-update',
			'--disable-sync',
			`--user-data-dir=${profile}`,
			'--virtual-time-budget=2000',
			'--dump-dom',
			url,
		],
		{timeoutMs: 60_000},
	);
	if (result.code !== 0 || !result.stdout.includes('<html')) {
		throw new Error(`chromium --dump-dom ${url} failed (exit ${result.code}):\n${result.stderr.slice(-2000)}`);
	}

	return result.stdout;
}

/** The text a person reads: tags dropped, whitespace collapsed. */
export function visibleText(html: string): string {
	return html
		.replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/gi, ' ')
		.replace(/<[^>]+>/g, ' ')
		.replace(/&amp;/g, '&')
		.replace(/&lt;/g, '<')
		.replace(/&gt;/g, '>')
		.replace(/\s+/g, ' ')
		.trim();
}

/** A page in headless Chromium driven over the DevTools protocol (on a pipe: no port, no dependency). */
export type BrowserPage = {
	/** Loads `url` and waits for its load event; resolves with the HTTP status of the document. */
	goto(url: string): Promise<number>;
	/** Clicks the element matching `selector` (a person's click: forms submit) and waits for the next page. */
	clickAndWait(selector: string): Promise<number>;
	/** Fills an input matching `selector`. */
	fill(selector: string, value: string): Promise<void>;
	/** The current DOM as HTML. */
	html(): Promise<string>;
	/** A PNG of the whole page. */
	screenshot(file: string): Promise<void>;
	close(): Promise<void>;
};

export async function openBrowser(options: {headers?: Record<string, string>; width?: number} = {}): Promise<BrowserPage> {
	const binary = findExecutable('chromium') ?? findExecutable('chromium-browser');
	if (binary === null) {
		throw new Error('chromium is not installed: run `apt-get install -y chromium` (test/setup.sh does)');
	}

	const profile = await tempDir('chromium-');
	const child = spawn(
		binary,
		['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--hide-scrollbars', `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank'],
		{stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe']},
	);
	trackChild(child);
	let stderr = '';
	child.stderr!.on('data', (chunk: Buffer) => {
		stderr = (stderr + chunk.toString()).slice(-4000);
	});
	const input = child.stdio[3] as Writable;
	const output = child.stdio[4] as Readable;
	let nextId = 0;
	const pending = new Map<number, {resolve: (value: Record<string, unknown>) => void; reject: (error: Error) => void}>();
	const listeners = new Set<(message: {method?: string; params?: Record<string, unknown>; sessionId?: string}) => void>();
	let buffered = Buffer.alloc(0);
	output.on('data', (chunk: Buffer) => {
		buffered = Buffer.concat([buffered, chunk]);
		let end: number;
		while ((end = buffered.indexOf(0)) >= 0) {
			const message = JSON.parse(buffered.subarray(0, end).toString('utf8')) as {id?: number; result?: Record<string, unknown>; error?: {message: string}; method?: string; params?: Record<string, unknown>; sessionId?: string};
			buffered = buffered.subarray(end + 1);
			if (message.id !== undefined) {
				const waiter = pending.get(message.id);
				pending.delete(message.id);
				if (message.error) {
					waiter?.reject(new Error(`chromium: ${message.error.message}`));
				} else {
					waiter?.resolve(message.result ?? {});
				}
			} else {
				for (const listener of listeners) {
					listener(message);
				}
			}
		}
	});
	child.once('exit', () => {
		for (const waiter of pending.values()) {
			waiter.reject(new Error(`chromium exited:\n${stderr}`));
		}
	});

	const send = async (method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> =>
		new Promise((resolve, reject) => {
			const id = ++nextId;
			pending.set(id, {resolve, reject});
			input.write(`${JSON.stringify({id, method, params, ...(sessionId ? {sessionId} : {})})}\0`);
		});

	const {targetId} = (await send('Target.createTarget', {url: 'about:blank'})) as {targetId: string};
	const {sessionId} = (await send('Target.attachToTarget', {targetId, flatten: true})) as {sessionId: string};
	const call = async (method: string, params: Record<string, unknown> = {}) => send(method, params, sessionId);
	await call('Page.enable');
	await call('Network.enable');
	await call('Emulation.setDeviceMetricsOverride', {width: options.width ?? 1280, height: 900, deviceScaleFactor: 1, mobile: false});
	if (options.headers) {
		await call('Network.setExtraHTTPHeaders', {headers: options.headers});
	}

	let lastStatus = 0;
	listeners.add(message => {
		if (message.sessionId === sessionId && message.method === 'Network.responseReceived' && message.params?.['type'] === 'Document') {
			lastStatus = (message.params['response'] as {status: number}).status;
		}
	});
	const loaded = async (): Promise<number> =>
		new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				listeners.delete(listener);
				reject(new Error('chromium: the page did not load within 30 s'));
			}, 30_000);
			const listener = (message: {method?: string; sessionId?: string}) => {
				if (message.sessionId === sessionId && message.method === 'Page.loadEventFired') {
					clearTimeout(timer);
					listeners.delete(listener);
					resolve(lastStatus);
				}
			};

			listeners.add(listener);
		});
	const evaluate = async (expression: string): Promise<unknown> => {
		const result = (await call('Runtime.evaluate', {expression, returnByValue: true})) as {result: {value?: unknown}; exceptionDetails?: unknown};
		if (result.exceptionDetails) {
			throw new Error(`chromium: ${expression}: ${JSON.stringify(result.exceptionDetails)}`);
		}

		return result.result.value;
	};

	return {
		async goto(url) {
			const done = loaded();
			await call('Page.navigate', {url});
			return done;
		},
		async clickAndWait(selector) {
			const done = loaded();
			await evaluate(`document.querySelector(${JSON.stringify(selector)}).click()`);
			return done;
		},
		async fill(selector, value) {
			await evaluate(`document.querySelector(${JSON.stringify(selector)}).value = ${JSON.stringify(value)}`);
		},
		async html() {
			return String(await evaluate('document.documentElement.outerHTML'));
		},
		async screenshot(file) {
			const {data} = (await call('Page.captureScreenshot', {format: 'png', captureBeyondViewport: true})) as {data: string};
			await writeFile(file, Buffer.from(data, 'base64'));
		},
		async close() {
			await send('Browser.close').catch(() => undefined);
			await stopChild(child, 5000);
		},
	};
}
