/**
 * BACKUP_MANIFEST.json without a second walk of the tree (issue 20, point 1): the manifest keeps
 * what restic does not know (the paths' kinds, the .env key names, git, how to restore), and the
 * file counts come from restic's summary in the snapshot. Pure: a temporary folder, no servers.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FilesSource } from '../src/config/schema';
import { buildManifest } from '../src/activities/manifest';
import { expectedTotals } from '../src/activities/verify';

describe('the backup manifest', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'manifest-'));
    mkdirSync(join(root, 'app', 'service', 'deep'), { recursive: true });
    writeFileSync(join(root, 'app', '.env'), 'export API_KEY=secret-value\n# comment\nDB_URL=postgres://u:pw@h/db\n');
    writeFileSync(join(root, 'app', '.env.production'), 'PROD_ONLY=1\n');
    writeFileSync(join(root, 'app', 'service', 'deep', '.env'), 'DEEP_KEY=1\n');
    writeFileSync(join(root, 'app', 'service', 'big.bin'), Buffer.alloc(4096));
    writeFileSync(join(root, 'secrets.env'), 'NOT_A_DOTENV_NAME=1\n');
    writeFileSync(join(root, '.env'), 'TOP=1\n');
    symlinkSync('app', join(root, 'current'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const source = (paths: string[]): FilesSource => ({ type: 'files', root, paths, exclude: [] }) as unknown as FilesSource;

  test('lists the .env key names of each path and of the .env files directly inside a folder path, never a value', async () => {
    const manifest = await buildManifest({ deployment: 'd', policy: 'p', sourceName: 's', source: source(['app', '.env', 'current', 'gone']), host: 'h', scheduledTime: '2026-12-05T00:00:00.000Z' });
    assert.deepEqual(manifest.envKeys, { '.env': ['TOP'], 'app/.env': ['API_KEY', 'DB_URL'], 'app/.env.production': ['PROD_ONLY'] });
    assert.doesNotMatch(JSON.stringify(manifest), /secret-value|u:pw/);
    assert.deepEqual(manifest.paths, [
      { path: 'app', kind: 'folder' }, { path: '.env', kind: 'file' }, { path: 'current', kind: 'symlink' }, { path: 'gone', kind: 'missing' },
    ]);
  });

  test('does not walk the tree: no totals, and a .env two folders down is not opened', async () => {
    const manifest = await buildManifest({ deployment: 'd', policy: 'p', sourceName: 's', source: source(['app']), host: 'h', scheduledTime: '2026-12-05T00:00:00.000Z' });
    assert.equal(manifest.totals, undefined);
    assert.ok(!Object.keys(manifest.envKeys).some((file) => file.includes('deep')), 'the deep .env is backed up as a file, not read');
  });

  test('a verification counts against restic\'s summary less the manifest, and falls back to an old manifest\'s totals', () => {
    const manifestFile = { files: 1, bytes: 812 };
    assert.deepEqual(expectedTotals({ summary: { total_files_processed: 20_005, total_bytes_processed: 1_000_812 } }, {}, manifestFile), { files: 20_004, bytes: 1_000_000, from: 'restic\'s summary' });
    assert.deepEqual(expectedTotals({}, { totals: { files: 7, folders: 2, symlinks: 0, bytes: 70 } }, manifestFile), { files: 7, bytes: 70, from: 'the manifest' });
    assert.equal(expectedTotals({}, {}, manifestFile), undefined);
  });
});
