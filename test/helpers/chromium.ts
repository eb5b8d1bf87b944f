/** Headless Chromium (Debian `chromium`): the DOM of a page after it loaded, as a person's browser would have it. */
import {findExecutable, run, tempDir} from './process.js';

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
