/**
 * The workflow bundle, cached by the content of the code it is made from. Bundling (webpack) runs
 * in a child process: the worker then holds only the bundle, about 100 MB less than bundling in
 * process.
 *
 * The worker runs the cached file as its workflow code, so the cache lives only in a folder no one
 * else can write: the project's ignored .cache/, else a per-user folder in the temp folder, each
 * used only when it is a real folder (not a link) of this user with mode 0700. Anything else (a
 * folder planted in /tmp by another user) is refused and the bundle is built in a new private
 * folder instead.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');

/** Hash of everything a bundle is built from: the workflow and shared sources, the SDK version. */
function sourceDigest(): string {
  const hash = createHash('sha256');
  for (const folder of ['src/workflows', 'src/shared']) {
    for (const name of readdirSync(join(ROOT, folder)).sort()) {
      hash.update(name).update(readFileSync(join(ROOT, folder, name)));
    }
  }
  hash.update(readFileSync(require.resolve('@temporalio/workflow/package.json')));
  return hash.digest('hex').slice(0, 20);
}

/** Why a cache folder may not hold the bundle, or undefined when it is private to this user. */
export function unsafeCacheFolder(folder: string): string | undefined {
  let stat;
  try {
    stat = lstatSync(folder);
  } catch (error) {
    return `cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`;
  }
  if (stat.isSymbolicLink()) return 'is a symbolic link';
  if (!stat.isDirectory()) return 'is not a folder';
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) return `belongs to uid ${stat.uid}, not to this user (${uid})`;
  if ((stat.mode & 0o077) !== 0) return `has mode ${(stat.mode & 0o777).toString(8)}, not 0700`;
  return undefined;
}

function userName(): string {
  try {
    return userInfo().username.replace(/[^A-Za-z0-9_.-]/g, '_') || String(process.getuid?.() ?? 'user');
  } catch {
    return String(process.getuid?.() ?? 'user');
  }
}

/** Where the bundle is cached: in order, the project's .cache/ and a per-user folder in the temp folder. */
export function bundleCacheCandidates(): string[] {
  return [join(ROOT, '.cache', 'workflow-bundles'), join(tmpdir(), `backupctl-workflow-bundles-${userName()}`)];
}

/**
 * The first candidate that is (or can be made) a private folder of this user; when none is, a new
 * folder with an unpredictable name (no cache: the bundle is built again at each start).
 */
export function bundleCacheFolder(candidates: string[] = bundleCacheCandidates(), warn: (message: string) => void = () => undefined): string {
  const refused: string[] = [];
  for (const folder of candidates) {
    try {
      // Only the cache folder itself is made private: .cache/ also holds the test servers' binaries.
      mkdirSync(dirname(folder), { recursive: true });
      mkdirSync(folder, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        refused.push(`${folder} cannot be made (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
        continue; // A read-only install (the container's /app): try the next one.
      }
    }
    const problem = unsafeCacheFolder(folder);
    if (problem === undefined) return folder;
    refused.push(`${folder} ${problem}`);
  }
  const fresh = mkdtempSync(join(tmpdir(), 'backupctl-workflow-bundle-'));
  warn(`workflow bundle: no private cache folder (${refused.join('; ')}); building into ${fresh}, again at each start`);
  return fresh;
}

export async function workflowBundlePath(): Promise<string> {
  const folder = bundleCacheFolder(bundleCacheCandidates(), (message) => process.stderr.write(`${message}\n`));
  const path = join(folder, `workflows-${sourceDigest()}.js`);
  if (!existsSync(path)) {
    await run(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'bundle-workflows.ts'), path], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
  }
  return path;
}
