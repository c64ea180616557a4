/**
 * BACKUP_MANIFEST.json, stored in every snapshot: what was backed up, from where, by which
 * version, and where the recovery procedure lives. It lists .env keys, never their values.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { Dirent } from 'node:fs';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import type { FilesSource } from '../config/schema';
import { LEDGER, ledgerWorkflowId } from '../shared/ledger';
import type { OperationsView } from '../shared/operations';

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
  /**
   * The audit trail's head when the backup ran (the ledger's last written entry), so the trail's
   * end is also kept inside the encrypted snapshot, out of the ledger's reach: `audit verify` and
   * `ledger rebuild` compare the trail against the newest one. Absent when the ledger did not answer.
   */
  auditHead?: ManifestAuditHead;
}

/** The audit trail's head as a backup recorded it. */
export interface ManifestAuditHead {
  seq: number;
  hash: string;
}

/** The snapshot tag that carries the same head ("audit-head=42:<sha256 hex>"), readable from `restic snapshots` without reading the tree. */
export const AUDIT_HEAD_TAG_KEY = 'audit-head';

export function auditHeadTag(head: ManifestAuditHead): string {
  return `${AUDIT_HEAD_TAG_KEY}=${head.seq}:${head.hash}`;
}

/** The head a snapshot's tags carry, or undefined. */
export function auditHeadOfTags(tags: readonly string[] | null | undefined): ManifestAuditHead | undefined {
  for (const tag of tags ?? []) {
    const match = new RegExp(`^${AUDIT_HEAD_TAG_KEY}=(\\d+):([0-9a-f]{64})$`).exec(tag);
    if (match) return { seq: Number(match[1]), hash: match[2]! };
  }
  return undefined;
}

/** How long a backup waits for the ledger's answer before it goes on without the head. */
const AUDIT_HEAD_QUERY_MS = 5_000;

/**
 * One query of the ledger (its operations view) for the audit trail's head. Never fails a backup:
 * a ledger that is not there (yet), does not answer in time, or has written nothing gives null.
 */
export async function readLedgerAuditHead(temporalClient: (() => Promise<Client>) | undefined, deployment: string, timeoutMs = AUDIT_HEAD_QUERY_MS): Promise<ManifestAuditHead | null> {
  if (!temporalClient) return null;
  let timer: NodeJS.Timeout | undefined;
  try {
    const query = (async () => {
      const client = await temporalClient();
      return client.workflow.getHandle(ledgerWorkflowId(deployment)).query<OperationsView>(LEDGER.operationsQuery);
    })();
    const timeout = new Promise<null>((resolveTimeout) => {
      timer = setTimeout(() => resolveTimeout(null), timeoutMs);
    });
    const view = await Promise.race([query, timeout]);
    query.catch(() => undefined);
    const audit = view?.audit;
    return audit && audit.seq > 0 && /^[0-9a-f]{64}$/.test(audit.head) ? { seq: audit.seq, hash: audit.head } : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
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

/** Folders read at once, and files whose size is read at once per folder: lstat and readdir go through libuv's thread pool; one at a time was the walk's cost. */
const FOLDER_CONCURRENCY = 8;
const STAT_BATCH = 64;

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
    await walkFolders(path, tally, envFiles);
  } else {
    countFile(path, stat.size, tally, envFiles);
  }
}

function countFile(path: string, size: number, tally: Tally, envFiles: string[]): void {
  tally.files += 1;
  tally.bytes += size;
  if (/^\.env(\..+)?$/.test(basename(path))) envFiles.push(path);
}

/** Every folder under `root`, FOLDER_CONCURRENCY at a time, from one queue (a deep tree does not multiply the concurrency). */
async function walkFolders(root: string, tally: Tally, envFiles: string[]): Promise<void> {
  const queue = [root];
  let active = 0;
  await new Promise<void>((resolveAll) => {
    const pump = (): void => {
      if (queue.length === 0 && active === 0) {
        resolveAll();
        return;
      }
      while (active < FOLDER_CONCURRENCY && queue.length > 0) {
        active += 1;
        void readFolder(queue.pop()!, tally, envFiles, queue).finally(() => {
          active -= 1;
          pump();
        });
      }
    };
    pump();
  });
}

/** One folder: its entries by their types (no lstat for folders and links), its files' sizes in parallel batches; subfolders go to the queue. */
async function readFolder(path: string, tally: Tally, envFiles: string[], queue: string[]): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdir(path, { withFileTypes: true });
  } catch {
    return;
  }
  const files: string[] = [];
  for (const entry of entries) {
    const full = join(path, entry.name);
    if (entry.isSymbolicLink()) tally.symlinks += 1;
    else if (entry.isDirectory()) {
      tally.folders += 1;
      queue.push(full);
    } else files.push(full);
  }
  for (let i = 0; i < files.length; i += STAT_BATCH) {
    await Promise.all(files.slice(i, i + STAT_BATCH).map(async (file) => {
      try {
        countFile(file, (await lstat(file)).size, tally, envFiles);
      } catch {
        // Vanished meanwhile: not counted, as above.
      }
    }));
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

export async function buildManifest(input: { deployment: string; policy: string; sourceName: string; source: FilesSource; host: string; scheduledTime: string; auditHead?: ManifestAuditHead | null }): Promise<BackupManifest> {
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
  for (const file of envFiles.sort()) {
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
      procedure: 'backupctl restore (docs/reference.md of the backupctl project); restic alone also works: restic -r <repository> restore <snapshot>:<root> --target <folder>',
      command: `backupctl restore --source ${input.sourceName} --target <folder>`,
    },
    ...(input.auditHead ? { auditHead: input.auditHead } : {}),
  };
}
