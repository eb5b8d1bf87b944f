/**
 * Base images for building the Dockerfile without pulling anything: a Debian
 * root file system made by `mmdebstrap` from Debian's own mirror, `docker
 * import`ed, with this machine's Node (the binary running the tests, its npm and
 * its headers) copied into /usr/local. Debian's nodejs package is too old (18);
 * the official node images keep Node in /usr/local too, so the Dockerfile sees
 * the same layout either way.
 *
 * The root file systems take minutes to make, so they are kept as tarballs in
 * $TMPDIR/registry-mirror-base-images/, named by a hash of the mmdebstrap
 * arguments: a later run (or the second image of this one) reuses them.
 */
import {createHash} from 'node:crypto';
import {existsSync} from 'node:fs';
import {cp, mkdir, rename, rm, stat, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {findExecutable, run, type RunResult, tempDir} from './process.js';

export type Docker = (args: string[], timeoutMs?: number) => Promise<RunResult>;

const SUITE = 'bookworm';
const MIRROR = 'http://deb.debian.org/debian';

/** The runtime base: what `node` needs (libstdc++ is essential in Debian) and CA certificates for HTTPS upstreams. */
export const RUNTIME_PACKAGES = ['ca-certificates'];
/** The build base adds the toolchain node-gyp needs to compile better-sqlite3. */
export const BUILD_PACKAGES = ['ca-certificates', 'python3', 'make', 'g++'];

function mmdebstrapArgs(packages: string[], output: string): string[] {
	return ['--variant=minbase', `--include=${packages.join(',')}`, SUITE, output, MIRROR];
}

/** A Debian root file system tarball with `packages`, from the cache or made now. */
export async function debianRootfs(packages: string[]): Promise<string> {
	const cacheDir = path.join(tmpdir(), 'registry-mirror-base-images');
	await mkdir(cacheDir, {recursive: true});
	const key = createHash('sha256').update(JSON.stringify(mmdebstrapArgs(packages, ''))).digest('hex').slice(0, 16);
	const tarball = path.join(cacheDir, `debian-${key}.tar`);
	if (await stat(tarball).then(() => true, () => false)) {
		return tarball;
	}

	const binary = findExecutable('mmdebstrap');
	if (binary === null) {
		throw new Error('mmdebstrap is not installed: run `apt-get install -y mmdebstrap` (test/setup.sh does)');
	}

	const partial = `${tarball}.${process.pid}.partial`;
	const result = await run(binary, ['--quiet', ...mmdebstrapArgs(packages, partial)], {timeoutMs: 15 * 60_000});
	if (result.code !== 0) {
		await rm(partial, {force: true});
		throw new Error(`mmdebstrap failed (exit ${result.code}):\n${result.stderr.trim()}`);
	}

	await rename(partial, tarball);
	return tarball;
}

/**
 * Imports `tarball` and adds this machine's Node to it as image `tag`; with
 * `buildTools`, npm and the Node headers too (a build stage), else the binary only.
 */
export async function nodeBaseImage(docker: Docker, tarball: string, tag: string, buildTools: boolean): Promise<void> {
	const imported = await docker(['import', tarball, `${tag}-os`], 10 * 60_000);
	if (imported.code !== 0) {
		throw new Error(`docker import ${tarball} failed:\n${imported.stderr}`);
	}

	const context = await tempDir('node-base-');
	try {
		const prefix = path.dirname(path.dirname(process.execPath));
		await mkdir(path.join(context, 'usr/local/bin'), {recursive: true});
		await cp(process.execPath, path.join(context, 'usr/local/bin/node'));
		// The build stage's npm reaches the npm registry the way this machine does: where this
		// machine trusts an extra CA (an intercepting proxy's), the build base trusts it too, as a
		// company's own base image would.
		const extraCa = process.env['NODE_EXTRA_CA_CERTS'];
		const trustExtraCa = buildTools && extraCa !== undefined && existsSync(extraCa);
		if (buildTools) {
			await cp(path.join(prefix, 'include/node'), path.join(context, 'usr/local/include/node'), {recursive: true});
			await cp(path.join(prefix, 'lib/node_modules/npm'), path.join(context, 'usr/local/lib/node_modules/npm'), {recursive: true});
			if (trustExtraCa) {
				await mkdir(path.join(context, 'usr/local/share/ca-certificates'), {recursive: true});
				await cp(extraCa, path.join(context, 'usr/local/share/ca-certificates/build-host-ca-bundle.crt'));
			}
		}

		await writeFile(path.join(context, 'Dockerfile'), [
			'ARG OS',
			'FROM ${OS}',
			'COPY usr /usr',
			buildTools
				? 'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && node --version && npm --version'
				: 'RUN node --version',
			...(trustExtraCa ? ['ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/build-host-ca-bundle.crt'] : []),
			'CMD ["node"]',
			'',
		].join('\n'));
		const built = await docker(['build', '--network', 'host', '--build-arg', `OS=${tag}-os`, '-t', tag, context], 10 * 60_000);
		if (built.code !== 0) {
			throw new Error(`building ${tag} failed:\n${built.stdout.slice(-4000)}\n${built.stderr}`);
		}
	} finally {
		await rm(context, {recursive: true, force: true});
	}
}
