/**
 * restic alone, with the flags and environment the service's `restic backup` uses (host, the
 * deployment and source tags, the source's path from its root), but no Temporal, no worker, no
 * preflight, retention or manifest: the floor any change inside the service can reach.
 */
import { join } from 'node:path';
import type { Config } from '../src/config/schema';
import type { BackupSummary } from '../src/restic/commands';
import { runRestic } from '../src/restic/restic';
import { seconds, syncDisks } from './common';
import { DEPLOYMENT, HOST, SOURCE } from './harness';

export interface DirectBackup {
  seconds: number;
  summary?: BackupSummary;
}

export interface DirectBackupOptions {
  bin: string;
  repository: Config['repositories'][string];
  env: NodeJS.ProcessEnv;
  /** The folder that holds `applications/`. */
  root: string;
  /** Before the sub-command: `--pack-size 32`, `--compression off`. */
  globalArgs?: string[];
  /** After `backup`: `--no-scan`, `--read-concurrency 4`. */
  backupArgs?: string[];
}

export async function directBackup(options: DirectBackupOptions): Promise<DirectBackup> {
  syncDisks();
  let summary: BackupSummary | undefined;
  const started = performance.now();
  await runRestic([
    ...(options.globalArgs ?? []), 'backup', '--json', '--host', HOST, '--tag', `deployment=${DEPLOYMENT}`, '--tag', `source=${SOURCE}`,
    ...(options.backupArgs ?? []), '--', join(options.root, 'applications'),
  ], {
    bin: options.bin, repository: options.repository, env: options.env, cwd: options.root, collectStdout: false,
    onJson: (message) => {
      if (message.message_type === 'summary') summary = message as unknown as BackupSummary;
    },
  });
  return { seconds: seconds(performance.now() - started), summary };
}
