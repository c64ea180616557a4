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
  /** Each configured path and what it was when the backup ran (older manifests also counted its files and bytes). */
  paths: { path: string; kind: 'file' | 'folder' | 'symlink' | 'missing'; files?: number; bytes?: number }[];
  /**
   * Manifests written before the tree walk went (restic's own summary in the snapshot counts the
   * files and bytes now: `restic snapshots --json`, field `summary`). Absent in new manifests.
   */
  totals?: { files: number; folders: number; symlinks: number; bytes: number };
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

/** A `.env` file by its name: `.env`, `.env.production`, ... */
const ENV_FILE = /^\.env(\..+)?$/;

/**
 * The `.env` files whose key names the manifest lists: each path that is one, and those directly
 * inside each folder path. One readdir per folder path, never a walk of the tree: restic reads the
 * tree once and reports its counts in the snapshot's summary (files, bytes, new, changed), so the
 * service no longer walks it a second time. A `.env` deeper down is backed up like any file; its
 * key names are not listed.
 */
async function envFilesAt(paths: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  for (const path of paths) {
    const stat = await lstat(path).catch(() => undefined);
    if (!stat) continue;
    if (stat.isFile()) {
      if (ENV_FILE.test(basename(path))) found.push(path);
    } else if (stat.isDirectory()) {
      const entries = await readdir(path, { withFileTypes: true }).catch(() => [] as Dirent[]);
      for (const entry of entries) if (entry.isFile() && ENV_FILE.test(entry.name)) found.push(join(path, entry.name));
    }
  }
  return found;
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
  const paths: BackupManifest['paths'] = [];
  const present: string[] = [];
  for (const path of input.source.paths) {
    const full = resolve(input.source.root, path);
    const stat = await lstat(full).catch(() => undefined);
    paths.push({ path, kind: !stat ? 'missing' : stat.isSymbolicLink() ? 'symlink' : stat.isDirectory() ? 'folder' : 'file' });
    if (stat) present.push(full);
  }
  const keys: Record<string, string[]> = {};
  for (const file of (await envFilesAt(present)).sort()) {
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
    git: await gitState(input.source.root),
    envKeys: keys,
    recovery: {
      procedure: 'backupctl restore (docs/reference.md of the backupctl project); restic alone also works: restic -r <repository> restore <snapshot>:<root> --target <folder>',
      command: `backupctl restore --source ${input.sourceName} --target <folder>`,
    },
    ...(input.auditHead ? { auditHead: input.auditHead } : {}),
  };
}
