/**
 * Restore of file sources, on the host that should receive the files. restic keeps modes,
 * mtimes, empty folders and symlinks; this adds the guards: a target that is empty or absent,
 * in place only when confirmed, and no path that would land outside the target.
 */
import { existsSync, mkdirSync, readdirSync, realpathSync } from 'node:fs';
import { isAbsolute, posix, relative, resolve } from 'node:path';
import { Context } from '@temporalio/activity';
import type { FilesSource, Repository } from '../config/schema';
import { ls, restore, snapshots, type ResticContext } from '../restic/commands';
import { FailureType } from '../shared/failures';
import type { RestoreResult } from '../shared/restore-types';
import type { Logger } from '../logging/logger';
import { failure, typed } from './failures';
import { withHeartbeat } from './heartbeat';

export interface RestoreDependencies {
  logger: Logger;
  resticBin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
}

export interface RestoreFilesInput {
  deployment: string;
  sourceName: string;
  source: FilesSource;
  repositoryName: string;
  repository: Repository;
  snapshot?: string;
  target?: string;
  inPlace?: boolean;
  confirmInPlace?: boolean;
  include?: string[];
}

/** True when `path`, taken relative to `base`, stays inside it. */
export function staysInside(base: string, path: string): boolean {
  const rel = relative(base, resolve(base, path));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

export function createRestoreActivities({ logger, resticBin, env }: RestoreDependencies) {
  return {
    async restoreFiles(input: RestoreFilesInput): Promise<RestoreResult> {
      const activity = Context.current();
      const progress: { stage: string; percentDone?: number } = { stage: 'listing' };
      return typed(() => withHeartbeat(() => progress, async () => {
        const restic: ResticContext = { bin: await resticBin(), repository: input.repository, env, signal: activity.cancellationSignal };
        let target: string;
        if (input.inPlace) {
          if (!input.confirmInPlace) throw failure(FailureType.RestoreTargetUnsafe, `restoring ${input.sourceName} in place overwrites ${input.source.root}: confirm it explicitly (--in-place --yes)`);
          target = input.source.root;
        } else {
          if (!input.target) throw failure(FailureType.RestoreTargetUnsafe, 'no target folder given: pass --target <folder> (or --in-place --yes)');
          target = resolve(input.target);
          if (existsSync(target) && readdirSync(target).length > 0) {
            throw failure(FailureType.RestoreTargetUnsafe, `target ${target} is not empty: restore into an empty or new folder (nothing was written)`);
          }
        }
        for (const path of input.include ?? []) {
          if (!staysInside(target, path)) throw failure(FailureType.RestoreTargetUnsafe, `include path "${path}" would escape the target ${target}`);
        }

        const sourceTags = [`deployment=${input.deployment}`, `source=${input.sourceName}`];
        const candidates = await snapshots(restic, { tags: sourceTags });
        const chosen = input.snapshot
          ? candidates.find((s) => s.id === input.snapshot || s.short_id === input.snapshot || s.id.startsWith(input.snapshot!))
          : candidates.sort((a, b) => b.time.localeCompare(a.time))[0];
        if (!chosen) {
          throw failure(FailureType.SourceMissing, input.snapshot
            ? `snapshot ${input.snapshot} of source ${input.sourceName} is not in repository ${input.repositoryName} (backupctl snapshots lists them)`
            : `repository ${input.repositoryName} has no snapshot of source ${input.sourceName} yet`);
        }
        // Every entry must land inside the target once the source's root is stripped.
        const root = posix.normalize(input.source.root);
        for (const node of await ls(restic, chosen.id)) {
          if (node.path !== root && !node.path.startsWith(`${root}/`)) continue;
          const rel = node.path.slice(root.length).replace(/^\/+/, '');
          if (!staysInside(target, rel)) throw failure(FailureType.RestoreTargetUnsafe, `snapshot ${chosen.short_id} holds "${node.path}", which would land outside ${target}: refused`);
        }

        mkdirSync(target, { recursive: true });
        progress.stage = 'restoring';
        const started = Date.now();
        const summary = await restore(restic, {
          snapshotId: chosen.id,
          subfolder: input.source.root,
          target: realpathSync(target),
          include: input.include?.map((p) => `/${posix.normalize(p).replace(/^\/+/, '')}`),
          onStatus: (status) => {
            progress.percentDone = Number(status.percent_done ?? 0);
            activity.heartbeat(progress);
          },
        });
        const result: RestoreResult = {
          source: input.sourceName,
          repository: input.repositoryName,
          snapshotId: chosen.id,
          target,
          filesRestored: Number(summary.files_restored ?? summary.total_files ?? 0),
          bytesRestored: Number(summary.bytes_restored ?? summary.total_bytes ?? 0),
          durationSeconds: (Date.now() - started) / 1000,
        };
        logger.info({ source: input.sourceName, snapshot: chosen.short_id, target, files: result.filesRestored }, 'restored');
        return result;
      }));
    },
  };
}
