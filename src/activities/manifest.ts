/**
 * BACKUP_MANIFEST.json, stored in every snapshot: what was backed up, from where, by which
 * version, and where the recovery procedure lives. It lists .env keys, never their values.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { FilesSource } from '../config/schema';

const run = promisify(execFile);

export const MANIFEST_FILE = 'BACKUP_MANIFEST.json';
const SERVICE_VERSION = (JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

export interface BackupManifest {
  manifestVersion: 1;
  service: { name: 'backupctl'; version: string };
  deployment: string;
  policy: string;
  source: string;
  sourceType: FilesSource['type'];
  host: string;
  scheduledTime: string;
  createdAt: string;
  root: string;
  paths: { path: string; kind: 'file' | 'folder' | 'symlink' | 'missing'; files: number; bytes: number }[];
  totals: { files: number; folders: number; symlinks: number; bytes: number };
  git: { commit: string; branch?: string; dirty: boolean } | null;
  envKeys: Record<string, string[]>;
  recovery: { procedure: string; command: string };
}

/** Keys of a dotenv file, without values (comments and blank lines skipped). */
export function envKeys(text: string): string[] {
  const keys: string[] = [];
  for (const line of text.split('\n')) {
    const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=/.exec(line);
    if (match) keys.push(match[1]!);
  }
  return keys;
}

interface Tally { files: number; folders: number; symlinks: number; bytes: number }

/** Async, so the activity's heartbeat timer keeps firing while a large tree is walked. */
async function walk(path: string, tally: Tally, envFiles: string[]): Promise<void> {
  let stat;
  try {
    stat = await lstat(path);
  } catch {
    return; // Vanished or unreadable: restic reports it (a partial snapshot), the manifest counts what it saw.
  }
  if (stat.isSymbolicLink()) {
    tally.symlinks += 1;
  } else if (stat.isDirectory()) {
    tally.folders += 1;
    let entries: string[] = [];
    try {
      entries = await readdir(path);
    } catch {
      return;
    }
    for (const entry of entries) await walk(join(path, entry), tally, envFiles);
  } else {
    tally.files += 1;
    tally.bytes += stat.size;
    if (/^\.env(\..+)?$/.test(basename(path))) envFiles.push(path);
  }
}

async function gitState(root: string): Promise<BackupManifest['git']> {
  if (!existsSync(join(root, '.git'))) return null;
  try {
    const commit = (await run('git', ['-C', root, 'rev-parse', 'HEAD'])).stdout.trim();
    const branch = (await run('git', ['-C', root, 'rev-parse', '--abbrev-ref', 'HEAD'])).stdout.trim();
    const dirty = (await run('git', ['-C', root, 'status', '--porcelain'])).stdout.trim().length > 0;
    return { commit, branch, dirty };
  } catch {
    return null;
  }
}

export async function buildManifest(input: { deployment: string; policy: string; sourceName: string; source: FilesSource; host: string; scheduledTime: string }): Promise<BackupManifest> {
  const totals: Tally = { files: 0, folders: 0, symlinks: 0, bytes: 0 };
  const envFiles: string[] = [];
  const paths: BackupManifest['paths'] = [];
  for (const path of input.source.paths) {
    const full = resolve(input.source.root, path);
    if (!existsSync(full)) {
      paths.push({ path, kind: 'missing', files: 0, bytes: 0 });
      continue;
    }
    const tally: Tally = { files: 0, folders: 0, symlinks: 0, bytes: 0 };
    await walk(full, tally, envFiles);
    const stat = await lstat(full);
    paths.push({ path, kind: stat.isSymbolicLink() ? 'symlink' : stat.isDirectory() ? 'folder' : 'file', files: tally.files, bytes: tally.bytes });
    for (const key of Object.keys(totals) as (keyof Tally)[]) totals[key] += tally[key];
  }
  const keys: Record<string, string[]> = {};
  for (const file of envFiles) {
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text !== undefined) keys[file.slice(input.source.root.length + 1) || basename(file)] = envKeys(text);
  }
  return {
    manifestVersion: 1,
    service: { name: 'backupctl', version: SERVICE_VERSION },
    deployment: input.deployment,
    policy: input.policy,
    source: input.sourceName,
    sourceType: input.source.type,
    host: input.host,
    scheduledTime: input.scheduledTime,
    createdAt: new Date().toISOString(),
    root: input.source.root,
    paths,
    totals,
    git: await gitState(input.source.root),
    envKeys: keys,
    recovery: {
      procedure: 'README.md, section "Restore" of the backupctl project; restic alone also works: restic -r <repository> restore <snapshot>:<root> --target <folder>',
      command: `backupctl restore --source ${input.sourceName} --target <folder>`,
    },
  };
}
