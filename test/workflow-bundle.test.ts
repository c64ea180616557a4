/**
 * The workflow bundle is the worker's workflow code: its cache is used only from a folder no one
 * else can write (this user's, mode 0700, not a link); anything else is refused and the bundle
 * goes to a new private folder.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, lstatSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { bundleCacheCandidates, bundleCacheFolder, unsafeCacheFolder } from '../src/workflow-bundle';
import { tempDir } from './support/harness';

describe('the workflow bundle\'s cache folder', () => {
  const root = tempDir('workflow-bundle');
  const made: string[] = [];
  after(() => {
    rmSync(root, { recursive: true, force: true });
    for (const folder of made) rmSync(folder, { recursive: true, force: true });
  });

  test('is the project\'s ignored .cache/ first, then a folder of this user in the temp folder, never one shared name', () => {
    const [project, temporary] = bundleCacheCandidates();
    assert.equal(project, join(__dirname, '..', '.cache', 'workflow-bundles'));
    assert.equal(dirname(temporary!), tmpdir());
    assert.notEqual(basename(temporary!), 'backupctl-workflow-bundles');
  });

  test('a new folder is made 0700 and used', () => {
    const folder = join(root, 'fresh', 'bundles');
    assert.equal(bundleCacheFolder([folder]), folder);
    const stat = lstatSync(folder);
    assert.equal(stat.mode & 0o777, 0o700);
    assert.equal(stat.uid, process.getuid!());
    assert.equal(unsafeCacheFolder(folder), undefined);
  });

  test('a folder others can write, a link, or a folder of another user is refused, and the bundle goes to a new private folder', () => {
    const open = join(root, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    assert.match(unsafeCacheFolder(open)!, /mode 777/);

    const target = join(root, 'target');
    mkdirSync(target, { mode: 0o700 });
    const link = join(root, 'link');
    symlinkSync(target, link);
    assert.match(unsafeCacheFolder(link)!, /symbolic link/);

    const candidates = [open, link];
    if (process.getuid!() === 0) {
      // Only root can give a folder away; as anyone else this case is the one above.
      const foreign = join(root, 'foreign');
      mkdirSync(foreign, { mode: 0o700 });
      chownSync(foreign, 65534, 65534);
      assert.match(unsafeCacheFolder(foreign)!, /belongs to uid 65534/);
      candidates.push(foreign);
    }

    const warnings: string[] = [];
    const chosen = bundleCacheFolder(candidates, (message) => warnings.push(message));
    made.push(chosen);
    assert.ok(!candidates.includes(chosen));
    assert.equal(dirname(chosen), tmpdir());
    assert.match(basename(chosen), /^backupctl-workflow-bundle-.{6}$/);
    assert.equal(unsafeCacheFolder(chosen), undefined);
    assert.equal(warnings.length, 1);
    for (const candidate of candidates) assert.ok(warnings[0]!.includes(candidate), warnings[0]);
  });

  test('a candidate that cannot be made is skipped for the next one', () => {
    // A path under a regular file cannot be a folder.
    const file = join(root, 'a-file');
    writeFileSync(file, '');
    const next = join(root, 'next');
    assert.equal(bundleCacheFolder([join(file, 'bundles'), next]), next);
  });
});
