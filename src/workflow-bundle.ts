/**
 * The workflow bundle, cached by the content of the code it is made from. Bundling (webpack) runs
 * in a child process: the worker then holds only the bundle, about 100 MB less than bundling in
 * process.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

export async function workflowBundlePath(): Promise<string> {
  const folder = join(tmpdir(), 'backupctl-workflow-bundles');
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  const path = join(folder, `workflows-${sourceDigest()}.js`);
  if (!existsSync(path)) {
    await run(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'bundle-workflows.ts'), path], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
  }
  return path;
}
