import {writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {findExecutable, run, type RunResult, tempDir} from './process.js';

type SkopeoSetup = {binary: string; policy: string; env: NodeJS.ProcessEnv};

let setup: Promise<SkopeoSetup> | null = null;

/**
 * Written once per process: a policy accepting anything (so no --insecure-policy is needed),
 * an empty registries.conf and auth file so the host's containers config cannot interfere.
 */
async function prepare(): Promise<SkopeoSetup> {
	const binary = findExecutable('skopeo');
	if (binary === null) {
		throw new Error('skopeo is not installed: run `apt-get install -y skopeo`');
	}

	const dir = await tempDir('skopeo-');
	const policy = join(dir, 'policy.json');
	const registriesConf = join(dir, 'registries.conf');
	const authFile = join(dir, 'auth.json');
	await Promise.all([
		writeFile(policy, JSON.stringify({default: [{type: 'insecureAcceptAnything'}]})),
		writeFile(registriesConf, ''),
		writeFile(authFile, JSON.stringify({auths: {}})),
	]);
	const env: NodeJS.ProcessEnv = {...process.env, CONTAINERS_REGISTRIES_CONF: registriesConf, REGISTRY_AUTH_FILE: authFile};
	return {binary, policy, env};
}

/** Runs `skopeo --policy <accept-anything> ...args`; never throws on a non-zero exit. */
export async function skopeo(args: string[], timeoutMs = 120_000): Promise<RunResult> {
	setup ??= prepare();
	let ready: SkopeoSetup;
	try {
		ready = await setup;
	} catch (error) {
		setup = null;
		throw error;
	}

	return run(ready.binary, ['--policy', ready.policy, ...args], {env: ready.env, timeoutMs});
}

/** Like `skopeo` but throws (with stderr) unless it exits 0; returns stdout. */
export async function skopeoOk(args: string[], timeoutMs?: number): Promise<string> {
	const result = await skopeo(args, timeoutMs);
	if (result.code !== 0) {
		throw new Error(`skopeo ${args.join(' ')} failed (exit ${result.code}):\n${result.stderr.trim()}`);
	}

	return result.stdout;
}
