/**
 * `registry-mirror prefetch` as a person runs it: on a real terminal (a
 * pseudo-terminal made by util-linux `script`), where progress bars are drawn,
 * and against a mirror served over TLS by a private CA.
 */
import test from 'ava';
import {buildImage, pushImage} from '../helpers/images.js';
import {startMirrorChild} from '../helpers/mirror-child.js';
import {repoRoot} from '../helpers/mirror-process.js';
import {run} from '../helpers/process.js';
import {startReferenceRegistry} from '../helpers/reference-registry.js';
import {startStack} from '../helpers/stack.js';
import {makeTestCa} from '../helpers/tls.js';

/** A shell word. */
const quote = (word: string) => `'${word.replaceAll("'", "'\\''")}'`;

/** Runs the CLI on a pseudo-terminal of 120 columns; stdout is what the terminal showed (escape codes and all). */
async function onTerminal(args: string[], env: NodeJS.ProcessEnv = process.env) {
	const command = ['stty cols 120 rows 40;', 'exec', ...[process.execPath, '--import', 'tsx', 'src/main.ts', ...args].map(quote)].join(' ');
	return run('script', ['-qefc', `cd ${quote(repoRoot)} && ${command}`, '/dev/null'], {env, timeoutMs: 90_000});
}

/** The terminal's output without escape sequences and carriage returns, as lines. */
function screenLines(output: string): string[] {
	// eslint-disable-next-line no-control-regex
	return output.replaceAll(/\u001B\[[0-9;?]*[A-Za-z]/g, '').split(/\r?\n|\r/).map(line => line.trimEnd()).filter(Boolean);
}

test('prefetch on a terminal: bars show formatted sizes, the result and error lines stay on screen', async t => {
	const {upstream, mirror} = await startStack(t);
	const image = await buildImage({layers: 2, layerSize: 1024 * 1024 + 7, label: 'prefetch-tty'});
	await pushImage(upstream.url, 'library/tool', '3', image);

	const result = await onTerminal(['prefetch', '--url', mirror.url, 'tool:3', 'missing:1']);
	const lines = screenLines(result.stdout);
	t.is(result.code, 1, 'one image failed');
	t.true(lines.includes('tool:3: cached'), result.stdout);
	t.true(lines.some(line => /^missing:1: failed: manifest unknown/.test(line)), `the error line says what went wrong:\n${lines.join('\n')}`);
	t.true(lines.some(line => /^tool:3: 3 blobs, 2\.\d MiB$/.test(line)), lines.join('\n'));

	const bars = lines.filter(line => line.includes('| layer ') || line.includes('| config '));
	t.true(bars.length >= 3, lines.join('\n'));
	for (const bar of bars) {
		t.regex(bar, /\| [\d.]+ (B|KiB|MiB)\/[\d.]+ (B|KiB|MiB)$/, 'done/total are formatted sizes');
	}

	for (const layer of image.layers) {
		t.true(lines.some(line => line.includes(`layer`) && line.includes(layer.digest.slice(7, 19)) && line.endsWith('| 1.0 MiB/1.0 MiB')), `the last redraw of ${layer.digest} shows its full size`);
	}

	t.is(upstream.count({method: 'GET', pathIncludes: image.layers[0]!.digest}), 1, 'the layer went through the mirror');
});

test('prefetch against a TLS mirror with a private CA: works with NODE_EXTRA_CA_CERTS, one clear line without', async t => {
	const upstream = await startReferenceRegistry();
	t.teardown(async () => upstream.stop());
	const image = await buildImage({layers: 1, label: 'prefetch-tls'});
	await pushImage(upstream.url, 'library/app', '1', image);
	const ca = await makeTestCa();
	const mirror = await startMirrorChild({
		config: {
			upstreams: {'docker.io': {url: upstream.url}},
			namespaces: [{prefix: '', upstream: 'docker.io'}],
			tls: {cert: ca.certPath, key: ca.keyPath},
			workers: 1, // the client's trust is the subject here, not the workers
		},
		ca: ca.caCert,
		timeoutMs: 90_000,
	});
	t.teardown(async () => mirror.stop());
	upstream.resetCounts();

	const env: NodeJS.ProcessEnv = {...process.env};
	delete env['NODE_EXTRA_CA_CERTS'];
	const cli = (extra: NodeJS.ProcessEnv) =>
		run(process.execPath, ['--import', 'tsx', 'src/main.ts', 'prefetch', '--url', mirror.url, 'app:1'], {env: {...env, ...extra}, timeoutMs: 60_000});

	const refused = await cli({});
	t.is(refused.code, 1);
	const output = (refused.stdout + refused.stderr).trim();
	t.is(output.split('\n').length, 1, `one line: ${output}`);
	t.regex(output, /^app:1: failed: the mirror's TLS certificate is not trusted \(.+\): .*NODE_EXTRA_CA_CERTS/);
	t.is(upstream.count({kind: 'manifest'}), 0, 'nothing was fetched');

	const trusted = await cli({NODE_EXTRA_CA_CERTS: ca.caCertPath});
	t.is(trusted.code, 0, trusted.stdout + trusted.stderr);
	t.regex(trusted.stdout, /^app:1: cached$/m);
	t.is(upstream.count({method: 'GET', pathIncludes: image.layers[0]!.digest}), 1);
});
