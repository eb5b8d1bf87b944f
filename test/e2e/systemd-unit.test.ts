/** deploy/systemd/registry-mirror.service passes `systemd-analyze verify` without a warning. */
import {copyFile, readFile, rm, writeFile} from 'node:fs/promises';
import {existsSync} from 'node:fs';
import {join} from 'node:path';
import test from 'ava';
import {repoRoot} from '../helpers/mirror-process.js';
import {findExecutable, run, tempDir} from '../helpers/process.js';

const UNIT = join(repoRoot, 'deploy/systemd/registry-mirror.service');

test('systemd-analyze verify accepts the unit with no warning', async t => {
	const analyze = findExecutable('systemd-analyze');
	if (analyze === null) {
		throw new Error('systemd-analyze is not installed: run `apt-get install -y systemd` (test/setup.sh does)');
	}

	const dir = await tempDir('systemd-unit-');
	t.teardown(async () => rm(dir, {recursive: true, force: true}));
	const unit = join(dir, 'registry-mirror.service');
	// verify checks that ExecStart's binary exists: where this machine has no /usr/bin/node, its own node stands in.
	if (existsSync('/usr/bin/node')) {
		await copyFile(UNIT, unit);
	} else {
		await writeFile(unit, (await readFile(UNIT, 'utf8')).replace('/usr/bin/node ', `${process.execPath} `));
	}

	const result = await run(analyze, ['verify', unit], {timeoutMs: 60_000});
	t.is(result.code, 0, result.stderr);
	t.is(result.stderr.trim(), '', 'no unknown keys or unparsable values');

	const text = await readFile(UNIT, 'utf8');
	for (const line of ['DynamicUser=yes', 'StateDirectory=registry-mirror', 'Restart=on-failure', 'ProtectSystem=strict', 'NoNewPrivileges=yes']) {
		t.true(text.split('\n').includes(line), line);
	}

	t.false(/^ExecReload=/m.test(text), 'no reload: the mirror does not re-read its config on SIGHUP');
});

test('systemd-analyze verify reports a broken unit (the check can fail)', async t => {
	const analyze = findExecutable('systemd-analyze')!;
	const dir = await tempDir('systemd-unit-');
	t.teardown(async () => rm(dir, {recursive: true, force: true}));
	const unit = join(dir, 'registry-mirror.service');
	await writeFile(unit, (await readFile(UNIT, 'utf8')).replace('Restart=on-failure', 'Restart=sometimes'));
	const result = await run(analyze, ['verify', unit], {timeoutMs: 60_000});
	t.regex(result.stderr, /restart specifier/);
});
