/**
 * restic's knobs from the config reach the real restic: compression off stores compressible data
 * as it is (larger), auto compresses it; a pack size and read concurrency are accepted.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../src/config/load';
import { backup, tuningArguments, type ResticContext } from '../src/restic/commands';
import { runRestic } from '../src/restic/restic';
import { tempDir, testServers } from './support/harness';

function folderBytes(path: string): number {
  let total = 0;
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const full = join(path, entry.name);
    total += entry.isDirectory() ? folderBytes(full) : statSync(full).size;
  }
  return total;
}

test('tuning arguments: restic defaults add nothing', () => {
  assert.deepEqual(tuningArguments(undefined), []);
  assert.deepEqual(tuningArguments({ compression: 'auto' }), []);
  assert.deepEqual(tuningArguments({ compression: 'off', packSizeMiB: 32, readConcurrency: 4 }), ['--compression', 'off', '--pack-size', '32', '--read-concurrency', '4']);
});

test('the config accepts the knobs and refuses nonsense', () => {
  const yaml = (extra: string) => `deployment: t
sources: { app: { type: files, root: /srv/app, paths: [a], ${extra} } }
repositories: { local: { type: local, path: /tmp/r, passwordEnv: P, packSizeMiB: 32 } }
policies: { p: { sources: [app], repositories: [local], schedule: { every: 1h }, retention: { keepLast: 1 } } }
`;
  const config = parseConfig(yaml('compression: "off", readConcurrency: 4'), 't.yaml', { checkEnv: false });
  assert.equal(config.sources.app?.type === 'files' && config.sources.app.compression, 'off');
  assert.throws(() => parseConfig(yaml('compression: fast'), 't.yaml', { checkEnv: false }), /compression/);
});

test('compression off stores compressible data uncompressed; auto compresses it (real restic)', async () => {
  const servers = testServers();
  const root = tempDir('tuning');
  const data = join(root, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'log.txt'), 'the same line of a very compressible log file\n'.repeat(100_000));
  const sizes: Record<string, number> = {};
  for (const compression of ['auto', 'off'] as const) {
    const path = join(root, `repo-${compression}`);
    const context: ResticContext = { bin: servers.resticBin, repository: { type: 'local', path, passwordEnv: 'TUNING_PW' }, env: { ...process.env, TUNING_PW: 'tuning-test-password' } };
    await runRestic(['init'], { bin: context.bin, repository: context.repository, env: context.env });
    const { summary } = await backup(context, { paths: [data], cwd: data, host: 'tuning', tags: [], tuning: { compression, packSizeMiB: 8, readConcurrency: 4 } });
    assert.equal(summary.total_files_processed, 1);
    sizes[compression] = folderBytes(join(path, 'data'));
  }
  assert.ok(sizes.off! > 4_000_000, `off stored ${sizes.off} bytes of 4.7 MB`);
  assert.ok(sizes.auto! < sizes.off! / 10, `auto stored ${sizes.auto} bytes, off ${sizes.off}`);
});
