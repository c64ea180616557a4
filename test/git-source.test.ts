// Git repositories as a backup source: bundle, verify, restore, mirror push, refusals.
// Pure git in temporary folders: no servers.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { FailureType } from '../src/shared/failures';
import { compareFingerprints, type GitFingerprint } from '../src/shared/fingerprints';
import { bundleRepository, checkGitRepository, gitRefs, GitSourceError, mirrorPush, redactUrl, restoreBundle, verifyBundle } from '../src/sources/git';

const execFileAsync = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'git-source-'));
after(() => rmSync(root, { recursive: true, force: true }));

let folders = 0;
function folder(name: string): string {
  return join(root, `${++folders}-${name}`);
}

const identity = {
  GIT_AUTHOR_NAME: 'Ada', GIT_AUTHOR_EMAIL: 'ada@example.org', GIT_COMMITTER_NAME: 'Ada', GIT_COMMITTER_EMAIL: 'ada@example.org',
  GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null',
};

/** git for setting up and inspecting, independent of the code under test. */
async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('git', args, { cwd, env: { ...process.env, ...identity }, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

let clock = 1_700_000_000;
async function commit(repo: string, file: string, content: string, message: string): Promise<void> {
  mkdirSync(join(repo, file, '..'), { recursive: true });
  writeFileSync(join(repo, file), content);
  await git(repo, 'add', '--', file);
  const date = `${++clock} +0000`;
  await execFileAsync('git', ['commit', '--quiet', '-m', message], { cwd: repo, env: { ...process.env, ...identity, GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date } });
}

async function initRepo(path: string, bare = false): Promise<string> {
  mkdirSync(path, { recursive: true });
  await git(path, 'init', '--quiet', '--initial-branch=main', ...(bare ? ['--bare'] : []));
  return path;
}

/** A repository with history: main, two branches, a lightweight and an annotated tag, a note, a stash, remote-tracking refs, a unicode file name. */
async function historyRepository(): Promise<string> {
  const repo = await initRepo(folder('history'));
  await commit(repo, 'README.md', '# project\n', 'first');
  await commit(repo, 'données/café ☕.txt', 'crème brûlée\n', 'unicode file');
  await git(repo, 'tag', 'v1.0');
  await commit(repo, 'src/app.ts', 'export const x = 1;\n', 'third on main');
  await git(repo, 'tag', '-a', 'v1.1', '-m', 'release 1.1');
  await git(repo, 'checkout', '--quiet', '-b', 'feature/login', 'v1.0');
  await commit(repo, 'login.ts', 'login\n', 'login on feature');
  await commit(repo, 'login.ts', 'login v2\n', 'login again');
  await git(repo, 'checkout', '--quiet', '-b', 'release', 'main');
  await commit(repo, 'CHANGELOG', 'one\n', 'changelog on release');
  await git(repo, 'checkout', '--quiet', 'main');
  await commit(repo, 'src/app.ts', 'export const x = 4;\n', 'fourth on main');
  await git(repo, 'notes', 'add', '-m', 'reviewed', 'HEAD');
  await git(repo, 'update-ref', 'refs/remotes/origin/main', 'HEAD~1');
  await git(repo, 'symbolic-ref', 'refs/remotes/origin/HEAD', 'refs/remotes/origin/main');
  writeFileSync(join(repo, 'README.md'), '# project (work in progress)\n');
  await git(repo, 'stash', '--quiet');
  return repo;
}

async function rejectsWith(promise: Promise<unknown>, type: FailureType, message: RegExp): Promise<GitSourceError> {
  let caught: unknown;
  await promise.then(() => assert.fail(`expected a ${type} failure`), (error: unknown) => { caught = error; });
  assert.ok(caught instanceof GitSourceError, `expected a GitSourceError, got ${String(caught)}`);
  assert.equal(caught.failureType, type, caught.message);
  assert.match(caught.message, message);
  return caught;
}

function assertEqualFingerprints(expected: GitFingerprint, actual: GitFingerprint): void {
  const comparison = compareFingerprints(expected, actual);
  assert.ok(comparison.equal, comparison.differences.join('\n'));
  assert.deepEqual(actual, expected);
}

function refNames(fingerprint: GitFingerprint): string[] {
  return fingerprint.refs.map((r) => r.name);
}

describe('git source: bundle and restore', () => {
  test('every branch, tag, note, stash and remote-tracking ref is bundled, verified and restored with the same sha and history', async () => {
    const repo = await historyRepository();
    const before = await gitRefs(repo);
    assert.deepEqual(refNames(before), [
      'refs/heads/feature/login', 'refs/heads/main', 'refs/heads/release', 'refs/notes/commits',
      'refs/remotes/origin/HEAD', 'refs/remotes/origin/main', 'refs/stash', 'refs/tags/v1.0', 'refs/tags/v1.1',
    ]);
    for (const ref of before.refs) assert.equal(ref.sha, (await git(repo, 'rev-parse', ref.name)).trim(), ref.name);
    // The annotated tag is its tag object, not the commit.
    assert.equal(await git(repo, 'cat-file', '-t', before.refs.find((r) => r.name === 'refs/tags/v1.1')?.sha ?? ''), 'tag\n');

    const bundleFile = join(folder('staging'), 'nested', 'history.bundle');
    const bundled = await bundleRepository({ repoPath: repo, bundleFile });
    assertEqualFingerprints(await gitRefs(repo), bundled);
    assert.ok(statSync(bundleFile).size > 0);
    assert.deepEqual(readdirSync(join(bundleFile, '..')), ['history.bundle'], 'no scratch folder left behind');

    const target = folder('restored');
    const restored = await restoreBundle({ bundleFile, target });
    assertEqualFingerprints(bundled, restored);
    // Local branches and tags (not only remote-tracking refs); no remote left pointing at the bundle.
    assert.deepEqual((await git(target, 'for-each-ref', '--format=%(refname)', 'refs/heads', 'refs/tags')).trim().split('\n'),
      ['refs/heads/feature/login', 'refs/heads/main', 'refs/heads/release', 'refs/tags/v1.0', 'refs/tags/v1.1']);
    assert.equal((await git(target, 'remote')).trim(), '');
    for (const branch of ['main', 'feature/login', 'release']) {
      const log = (cwd: string) => git(cwd, 'log', '--format=%H %T %P %an %at %s', branch);
      assert.equal(await log(target), await log(repo), branch);
    }
    assert.equal(await git(target, 'notes', 'show', 'main'), 'reviewed\n');
    assert.equal(await git(target, 'stash', 'list', '--format=%H'), `${before.refs.find((r) => r.name === 'refs/stash')?.sha}\n`);
    await git(target, 'fsck', '--full', '--strict', '--no-dangling');
    // A working clone, on main, its files checked out (the unicode name too) and clean.
    assert.equal((await git(target, 'symbolic-ref', 'HEAD')).trim(), 'refs/heads/main');
    assert.equal(readFileSync(join(target, 'données', 'café ☕.txt'), 'utf8'), 'crème brûlée\n');
    assert.equal(await git(target, 'status', '--porcelain'), '');

    const bareTarget = folder('restored.git');
    const bareRestored = await restoreBundle({ bundleFile, target: bareTarget, bare: true });
    assertEqualFingerprints(bundled, bareRestored);
    assert.equal((await git(bareTarget, 'rev-parse', '--is-bare-repository')).trim(), 'true');
    assert.equal((await git(bareTarget, 'symbolic-ref', 'HEAD')).trim(), 'refs/heads/main');
    assert.equal(await git(bareTarget, 'log', '--format=%H', 'release'), await git(repo, 'log', '--format=%H', 'release'));
    await git(bareTarget, 'fsck', '--full', '--strict', '--no-dangling');

    // A bare repository is a source too, and its bundle equals it.
    assertEqualFingerprints(bareRestored, await bundleRepository({ repoPath: bareTarget, bundleFile: join(folder('staging'), 'bare.bundle') }));
  });

  test('a restore checks out the branch HEAD was on when that is not main, and a detached HEAD stays detached', async () => {
    const repo = await initRepo(folder('trunk'));
    await commit(repo, 'a', 'a\n', 'one');
    await git(repo, 'branch', '-m', 'trunk');
    await git(repo, 'checkout', '--quiet', '-b', 'other');
    await commit(repo, 'b', 'b\n', 'two');
    await git(repo, 'checkout', '--quiet', 'trunk');
    const bundleFile = join(folder('staging'), 'trunk.bundle');
    await bundleRepository({ repoPath: repo, bundleFile });
    const target = folder('trunk-restored');
    await restoreBundle({ bundleFile, target });
    assert.equal((await git(target, 'symbolic-ref', 'HEAD')).trim(), 'refs/heads/trunk');
    assert.ok(!existsSync(join(target, 'b')));

    await git(repo, 'checkout', '--quiet', '--detach', 'other');
    await git(repo, 'branch', '-D', 'other');
    await git(repo, 'tag', 'kept', 'HEAD');
    await bundleRepository({ repoPath: repo, bundleFile });
    const detached = folder('detached-restored');
    await restoreBundle({ bundleFile, target: detached });
    assert.equal((await git(detached, 'rev-parse', 'HEAD')).trim(), (await git(repo, 'rev-parse', 'HEAD')).trim());
    assert.equal(readFileSync(join(detached, 'b'), 'utf8'), 'b\n');
  });
});

describe('git source: damaged bundles', () => {
  test('verifyBundle catches a truncated bundle that `git bundle verify` alone would pass; restoring one fails clearly and leaves nothing', async () => {
    const repo = await historyRepository();
    const staging = folder('staging');
    const bundleFile = join(staging, 'good.bundle');
    const bundled = await bundleRepository({ repoPath: repo, bundleFile });
    assertEqualFingerprints(bundled, await verifyBundle(bundleFile));

    const size = statSync(bundleFile).size;
    for (const cut of [20, Math.floor(size / 2)]) {
      const truncated = join(staging, `truncated-${cut}.bundle`);
      copyFileSync(bundleFile, truncated);
      truncateSync(truncated, size - cut);
      await rejectsWith(verifyBundle(truncated), FailureType.RepositoryCorrupted, /truncated-\d+\.bundle is damaged or incomplete/);
      const target = folder('from-truncated');
      await rejectsWith(restoreBundle({ bundleFile: truncated, target }), FailureType.RepositoryCorrupted, /truncated-\d+\.bundle is damaged or incomplete.*(early EOF|index-pack|pack)/i);
      assert.ok(!existsSync(target), 'a failed restore into a new folder leaves no folder');
    }
    assert.deepEqual(readdirSync(staging).filter((name) => name.startsWith('.')), [], 'no scratch folder left behind');

    const notBundle = join(staging, 'notes.txt');
    writeFileSync(notBundle, 'hello\n');
    await rejectsWith(verifyBundle(notBundle), FailureType.RepositoryCorrupted, /notes\.txt is not a git bundle/);
    await rejectsWith(restoreBundle({ bundleFile: join(staging, 'missing.bundle'), target: folder('x') }), FailureType.SourceMissing, /missing\.bundle does not exist/);
  });

  test('bundleRepository deletes a bundle that fails verification and throws', async () => {
    const repo = await historyRepository();
    // A git that damages every bundle it creates: the bundle bundleRepository verifies is truncated.
    const realGit = (await execFileAsync('sh', ['-c', 'command -v git'])).stdout.trim();
    const bin = folder('bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'git'), `#!/bin/sh
"${realGit}" "$@" || exit $?
creating=""
for argument in "$@"; do
  case "$argument" in
    create) creating=yes ;;
    -*) ;;
    *) if [ -n "$creating" ]; then size=$(wc -c < "$argument"); truncate -s $((size - 30)) "$argument"; exit 0; fi ;;
  esac
done
`);
    chmodSync(join(bin, 'git'), 0o755);
    const bundleFile = join(folder('staging'), 'damaged.bundle');
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      await rejectsWith(bundleRepository({ repoPath: repo, bundleFile }), FailureType.RepositoryCorrupted, /failed verification and was deleted: .*damaged\.bundle is damaged or incomplete/);
    } finally {
      process.env.PATH = path;
    }
    assert.ok(!existsSync(bundleFile), 'the damaged bundle was deleted');
    // The same call with the real git succeeds: the failure was the damage.
    assertEqualFingerprints(await gitRefs(repo), await bundleRepository({ repoPath: repo, bundleFile }));
  });

  test('a cancelled bundle leaves no file', async () => {
    const repo = await historyRepository();
    const bundleFile = join(folder('staging'), 'cancelled.bundle');
    const controller = new AbortController();
    controller.abort(new Error('cancelled by test'));
    await assert.rejects(bundleRepository({ repoPath: repo, bundleFile, signal: controller.signal }), /cancelled by test/);
    assert.ok(!existsSync(bundleFile));
  });
});

describe('git source: mirror push', () => {
  test('the mirror has the same refs after each push, deletions included', async () => {
    const repo = await initRepo(folder('mirrored'));
    await commit(repo, 'a.txt', 'a\n', 'one');
    await commit(repo, 'b.txt', 'b\n', 'two');
    await git(repo, 'tag', 'light');
    await git(repo, 'tag', '-a', 'annotated', '-m', 'annotated');
    await git(repo, 'checkout', '--quiet', '-b', 'feature');
    await commit(repo, 'c.txt', 'c\n', 'three');
    await git(repo, 'checkout', '--quiet', '-b', 'doomed', 'main');
    await commit(repo, 'd.txt', 'd\n', 'four');
    await git(repo, 'checkout', '--quiet', 'main');
    await git(repo, 'notes', 'add', '-m', 'note', 'HEAD');
    const mirror = await initRepo(folder('mirror.git'), true);

    const first = await mirrorPush({ repoPath: repo, remoteUrl: mirror });
    assert.equal(first.pushedRefs, 6);
    assertEqualFingerprints(await gitRefs(repo), await gitRefs(mirror));

    await commit(repo, 'a.txt', 'a changed\n', 'five');
    await git(repo, 'branch', '-D', 'doomed');
    await git(repo, 'tag', 'v2');
    const second = await mirrorPush({ repoPath: repo, remoteUrl: `file://${mirror}` });
    assert.equal(second.pushedRefs, 3, 'main updated, doomed deleted, v2 created');
    const after = await gitRefs(mirror);
    assertEqualFingerprints(await gitRefs(repo), after);
    assert.ok(!refNames(after).includes('refs/heads/doomed'));
    assert.equal(await git(mirror, 'log', '--format=%H', 'main'), await git(repo, 'log', '--format=%H', 'main'));

    assert.equal((await mirrorPush({ repoPath: repo, remoteUrl: mirror })).pushedRefs, 0, 'nothing changed');
  });

  test('credentials in the mirror URL never reach a message', async () => {
    const repo = await initRepo(folder('secret-push'));
    await commit(repo, 'a.txt', 'a\n', 'one');
    const url = 'http://backup-bot:S3cr3t-P%40ss@127.0.0.1:9/team/app.git';
    assert.equal(redactUrl(url), 'http://127.0.0.1:9/team/app.git');
    const error = await rejectsWith(mirrorPush({ repoPath: repo, remoteUrl: url }), FailureType.StorageUnreachable, /mirror push of .* to http:\/\/127\.0\.0\.1:9\/team\/app\.git failed: .*(connect|refused)/i);
    for (const secret of ['S3cr3t', 'P%40ss', 'P@ss', 'backup-bot']) {
      assert.ok(!error.message.includes(secret), `${secret} in: ${error.message}`);
      assert.ok(!(error.stack ?? '').includes(secret), `${secret} in the stack`);
    }
    // Nothing was stored in the repository's configuration either.
    assert.doesNotMatch(readFileSync(join(repo, '.git', 'config'), 'utf8'), /S3cr3t|127\.0\.0\.1/);
  });

  test('an empty repository is not mirror-pushed (it would empty the mirror)', async () => {
    const repo = await initRepo(folder('empty-source'));
    const mirror = await initRepo(folder('kept-mirror.git'), true);
    const source = await initRepo(folder('filled'));
    await commit(source, 'a.txt', 'a\n', 'one');
    await mirrorPush({ repoPath: source, remoteUrl: mirror });
    const kept = await gitRefs(mirror);
    await rejectsWith(mirrorPush({ repoPath: repo, remoteUrl: mirror }), FailureType.SourceMissing, /is empty: refusing to mirror-push/);
    assert.deepEqual(await gitRefs(mirror), kept);
  });
});

describe('git source: refusals and doctor', () => {
  test('a non-empty restore target is refused unless force, and force replaces it only after a good restore', async () => {
    const repo = await historyRepository();
    const bundleFile = join(folder('staging'), 'r.bundle');
    const bundled = await bundleRepository({ repoPath: repo, bundleFile });
    const target = folder('occupied');
    mkdirSync(target);
    writeFileSync(join(target, 'precious.txt'), 'keep me\n');
    await rejectsWith(restoreBundle({ bundleFile, target }), FailureType.RestoreTargetUnsafe, new RegExp(`restore target ${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not empty`));
    assert.deepEqual(readdirSync(target), ['precious.txt']);

    const truncated = join(bundleFile, '..', 'bad.bundle');
    copyFileSync(bundleFile, truncated);
    truncateSync(truncated, statSync(bundleFile).size - 20);
    await rejectsWith(restoreBundle({ bundleFile: truncated, target, force: true }), FailureType.RepositoryCorrupted, /damaged/);
    assert.deepEqual(readdirSync(target), ['precious.txt'], 'a failed forced restore leaves the target as it was');

    assertEqualFingerprints(bundled, await restoreBundle({ bundleFile, target, force: true }));
    assert.ok(!existsSync(join(target, 'precious.txt')));
    assert.deepEqual(readdirSync(join(target, '..')).filter((name) => name.includes('.restore-')), []);

    const empty = folder('empty-target');
    mkdirSync(empty);
    assertEqualFingerprints(bundled, await restoreBundle({ bundleFile, target: empty }));
  });

  test('a path that is not a repository is SourceMissing naming the path, even inside another repository', async () => {
    const plain = folder('plain folder');
    mkdirSync(plain);
    for (const path of [plain, folder('does-not-exist')]) {
      const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      await rejectsWith(gitRefs(path), FailureType.SourceMissing, new RegExp(escaped));
      await rejectsWith(bundleRepository({ repoPath: path, bundleFile: join(folder('staging'), 'x.bundle') }), FailureType.SourceMissing, new RegExp(escaped));
      await rejectsWith(mirrorPush({ repoPath: path, remoteUrl: folder('nowhere') }), FailureType.SourceMissing, new RegExp(escaped));
      const check = await checkGitRepository(path);
      assert.equal(check.ok, false);
      assert.match(check.detail, new RegExp(escaped));
      assert.ok(check.fix);
    }
    // A folder inside a work tree is not the enclosing repository.
    const repo = await initRepo(folder('outer'));
    await commit(repo, 'sub/file.txt', 'x\n', 'one');
    await rejectsWith(gitRefs(join(repo, 'sub')), FailureType.SourceMissing, /sub is not a git repository/);
  });

  test('an empty repository has no refs and is not bundled; doctor says so', async () => {
    const repo = await initRepo(folder('empty'));
    assert.deepEqual(await gitRefs(repo), { kind: 'git', refs: [] });
    const bundleFile = join(folder('staging'), 'empty.bundle');
    await rejectsWith(bundleRepository({ repoPath: repo, bundleFile }), FailureType.SourceMissing, /is empty \(no commits, no refs\): there is nothing to bundle/);
    assert.ok(!existsSync(bundleFile));
    const check = await checkGitRepository(repo);
    assert.equal(check.ok, false);
    assert.match(check.detail, /empty/);
  });

  test('a shallow clone is refused; doctor reports a good repository with its size', async () => {
    const repo = await historyRepository();
    const check = await checkGitRepository(repo);
    assert.equal(check.ok, true, check.detail);
    assert.match(check.detail, /non-bare repository .*: 9 refs/);
    assert.ok((check.estimatedBytes ?? 0) > 0);

    const shallow = folder('shallow');
    await git(root, 'clone', '--quiet', '--depth', '1', `file://${repo}`, shallow);
    await rejectsWith(bundleRepository({ repoPath: shallow, bundleFile: join(folder('staging'), 's.bundle') }), FailureType.ConfigInvalid, /shallow clone/);
    const shallowCheck = await checkGitRepository(shallow);
    assert.equal(shallowCheck.ok, false);
    assert.match(shallowCheck.fix ?? '', /fetch --unshallow/);
  });
});
