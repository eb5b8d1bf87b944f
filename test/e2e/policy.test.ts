import test from 'ava';
import {mkdtemp, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {generateCosignKey, pushSignature} from '../helpers/cosign.js';
import {startDockerd} from '../helpers/dockerd.js';
import {buildImage, pushImage} from '../helpers/images.js';
import {stopSharedStoreServers} from '../helpers/mirror.js';
import {startStack} from '../helpers/stack.js';

test.after.always(stopSharedStoreServers);

const ACCEPT = 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json';

function decisions(metrics: string, decision: string): number {
	const match = new RegExp(`^registry_mirror_policy_decisions_total\\{upstream="docker.io",decision="${decision}"\\} (\\d+)$`, 'm').exec(metrics);
	return match ? Number(match[1]) : 0;
}

test('policy.require_signature: unsigned, wrong-key and misnamed images are DENIED (GET and HEAD) and leave nothing cached; the signed one pulls, also with the upstream stopped', async t => {
	const trusted = generateCosignKey();
	const other = generateCosignKey();
	const dir = await mkdtemp(join(tmpdir(), 'policy-keys-'));
	await writeFile(join(dir, 'cosign.pub'), trusted.publicPem);
	const {upstream, mirror} = await startStack(t, {upstream: {policy: {require_signature: {keys: [join(dir, 'cosign.pub')]}}}});

	const signed = await buildImage({label: 'signed'});
	const unsigned = await buildImage({label: 'unsigned'});
	const wrongKey = await buildImage({label: 'wrong-key'});
	const misnamed = await buildImage({label: 'misnamed'});
	await pushImage(upstream.url, 'library/signed', 'latest', signed);
	await pushSignature(upstream.url, 'library/signed', signed.digest, trusted.privateKey);
	await pushImage(upstream.url, 'library/unsigned', 'latest', unsigned);
	await pushImage(upstream.url, 'library/wrongkey', 'latest', wrongKey);
	await pushSignature(upstream.url, 'library/wrongkey', wrongKey.digest, other.privateKey);
	await pushImage(upstream.url, 'library/misnamed', 'latest', misnamed);
	await pushSignature(upstream.url, 'library/misnamed', misnamed.digest, trusted.privateKey, unsigned.digest);

	const cases = [
		{repo: 'unsigned', image: unsigned, reason: 'not found'},
		{repo: 'wrongkey', image: wrongKey, reason: 'signature does not verify with any trusted key'},
		{repo: 'misnamed', image: misnamed, reason: `signature payload names ${unsigned.digest}`},
	];
	for (const {repo, image, reason} of cases) {
		for (const reference of ['latest', image.digest]) {
			const response = await fetch(`${mirror.url}/v2/${repo}/manifests/${reference}`, {headers: {accept: ACCEPT}});
			t.is(response.status, 403, `${repo}:${reference}`);
			const body = (await response.json()) as {errors: Array<{code: string; message: string; detail: {reasons: string[]}}>};
			t.is(body.errors[0]!.code, 'DENIED');
			t.is(body.errors[0]!.message, `no signature by a trusted key for ${image.digest}`);
			t.true(body.errors[0]!.detail.reasons.some(entry => entry.endsWith(reason)), JSON.stringify(body));
			const head = await fetch(`${mirror.url}/v2/${repo}/manifests/${reference}`, {method: 'HEAD', headers: {accept: ACCEPT}});
			t.is(head.status, 403, `HEAD ${repo}:${reference}`);
		}
	}

	const dockerd = await startDockerd({mirrorUrl: mirror.url, insecureRegistries: [mirror.host]});
	t.teardown(async () => dockerd.stop());
	// By the mirror's own name: through registry-mirrors the daemon would fall back to Docker Hub and hide the answer.
	const refused = await dockerd.docker(['pull', `${mirror.host}/docker.io/library/unsigned:latest`], 180_000);
	t.not(refused.code, 0);
	t.regex(refused.stderr, /denied: no signature by a trusted key for sha256:/);

	// Nothing of a denied image is in the store: no manifest, no tag, no blob (only a signature that was found and refused).
	const {metadata} = mirror.registry;
	for (const {repo, image} of cases) {
		t.is(await metadata.getManifest(image.digest), undefined, `${repo} manifest not cached`);
		const signatureTags = repo === 'unsigned' ? [] : [`${image.digest.replace(':', '-')}.sig`];
		t.deepEqual(await metadata.listTags({registry: 'docker.io', name: `library/${repo}`}), signatureTags, `${repo}: no image tag`);
		for (const blob of [image.config, ...image.layers]) {
			t.is(await metadata.getBlobFor({registry: 'docker.io', name: `library/${repo}`}, blob.digest), undefined, `${repo} blob ${blob.digest} not cached`);
		}
	}

	const pulled = await dockerd.docker(['pull', 'signed:latest'], 180_000);
	t.is(pulled.code, 0, pulled.stderr);
	const id = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}} {{index .RepoDigests 0}}', 'signed:latest']);
	t.is(id.stdout.trim(), `${signed.config.digest} signed@${signed.digest}`);
	t.truthy(await metadata.getManifest(signed.digest));

	const before = await (await fetch(`${mirror.url}/metrics`)).text();
	t.true(decisions(before, 'denied') >= 10, before);
	const allowedBefore = decisions(before, 'allowed');
	t.true(allowedBefore >= 1);

	// Upstream down: the signature comes from the cache and is checked again.
	t.is((await dockerd.docker(['rmi', 'signed:latest'])).code, 0);
	await upstream.stop();
	const offline = await dockerd.docker(['pull', 'signed:latest'], 180_000);
	t.is(offline.code, 0, offline.stderr);
	const again = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', 'signed:latest']);
	t.is(again.stdout.trim(), signed.config.digest);
	const after = await (await fetch(`${mirror.url}/metrics`)).text();
	t.true(decisions(after, 'allowed') > allowedBefore, 'the offline pull was checked too');
	// The unsigned image was never cached: with the upstream down there is nothing to serve.
	const stillRefused = await fetch(`${mirror.url}/v2/unsigned/manifests/latest`, {headers: {accept: ACCEPT}});
	t.is(stillRefused.status, 502);
	t.is(await metadata.getManifest(unsigned.digest), undefined);

	const dashboard = await (await fetch(`${mirror.url}/`)).text();
	t.regex(dashboard, /Signature policy/);
	t.regex(dashboard, new RegExp(`<td>docker.io</td><td>${decisions(after, 'allowed')}</td><td><span class="bad">${decisions(after, 'denied')}</span></td>`));
});

test('a bad key file is one start-up error naming the key', async t => {
	const dir = await mkdtemp(join(tmpdir(), 'policy-keys-'));
	await writeFile(join(dir, 'bad.pub'), 'not a key');
	const {parseConfig} = await import('../../src/config/load.js');
	const error = t.throws(() =>
		parseConfig({upstreams: {'docker.io': {url: 'http://127.0.0.1:1', policy: {require_signature: {keys: ['bad.pub']}}}}}, dir),
	);
	t.regex(error.message, /^config: upstreams\.docker\.io\.policy\.require_signature\.keys\.0: not a PEM public key \(.*\): .*bad\.pub$/);
	t.notRegex(error.message, /\n/);
	const missing = t.throws(() => parseConfig({upstreams: {hub: {url: 'http://127.0.0.1:1'}}, namespaces: [{prefix: 'x/', upstream: 'hub', policy: {require_signature: {keys: ['nope.pub']}}}]}, dir));
	t.regex(missing.message, /^config: namespaces\.0\.policy\.require_signature\.keys\.0: file not found: .*nope\.pub$/);
});
