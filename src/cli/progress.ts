/**
 * The backup progress bar: the workflow's `progress` query says the stage; the heartbeat of the
 * repository workflow's running activity says how far restic is.
 */
import { backupProgressQuery } from '../workflows/definitions';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { BackupHeartbeat, BackupOutcome, BackupProgress } from '../shared/backup-types';
import { formatBytes } from '../config/units';
import { inWorkflow } from './errors';
import { watchTaskQueues, type NeededQueue, type WatchOptions } from './waiting';

/** The latest heartbeat of a workflow's running activity (restic's progress), if any. */
export async function pendingHeartbeat(client: Client, workflowId: string): Promise<BackupHeartbeat | undefined> {
  try {
    const description = await client.workflow.getHandle(workflowId).describe();
    const pending = description.raw.pendingActivities?.[0];
    const payload = pending?.heartbeatDetails?.payloads?.[0];
    if (!payload) return undefined;
    return client.options.loadedDataConverter.payloadConverter.fromPayload<BackupHeartbeat>(payload);
  } catch {
    return undefined;
  }
}

export function renderProgressLine(progress: BackupProgress, heartbeat: BackupHeartbeat | undefined, width = 30): string {
  const fraction = Math.min(1, Math.max(0, heartbeat?.percentDone ?? (progress.stage === 'done' ? 1 : 0)));
  const filled = Math.round(fraction * width);
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
  const files = heartbeat?.totalFiles ? ` ${heartbeat.filesDone ?? 0}/${heartbeat.totalFiles} files` : '';
  const bytes = heartbeat?.totalBytes ? ` ${formatBytes(heartbeat.bytesDone ?? 0)}/${formatBytes(heartbeat.totalBytes)}` : '';
  return `${progress.policy} ${bar} ${(fraction * 100).toFixed(0).padStart(3)}% ${progress.stage} (${progress.sourcesDone}/${progress.sourcesTotal} sources)${files}${bytes}`;
}

/**
 * Waits for a backup, drawing its progress on `out`; with `queues`, also says when no worker polls
 * one of them. A failure is rethrown with the workflow id (see errors.ts).
 */
export async function waitWithProgress(client: Client, handle: WorkflowHandle, out: NodeJS.WriteStream = process.stderr, queues: NeededQueue[] = [], watch: WatchOptions = {}): Promise<BackupOutcome> {
  const result = inWorkflow(handle.workflowId, handle.result() as Promise<BackupOutcome>);
  let finished = false;
  void result.then(() => (finished = true), () => (finished = true));
  let lastLine = '';
  // A watcher's message gets a line of its own, under a progress line redrawn in place.
  const watcher = watchTaskQueues(client, queues, {
    workflowId: handle.workflowId,
    ...watch,
    out: {
      write(text: string) {
        out.write(out.isTTY && lastLine ? `\n${text}` : text);
        if (out.isTTY) lastLine = '';
      },
    },
  });
  let lastProgress: BackupProgress | undefined;
  while (!finished) {
    try {
      const progress = await handle.query(backupProgressQuery);
      lastProgress = progress;
      // While it waits in the repository's queue, the writer's restic is another run's.
      const heartbeat = progress.repositoryWorkflowId && progress.stage !== 'waiting-for-repository' ? await pendingHeartbeat(client, progress.repositoryWorkflowId) : undefined;
      const line = renderProgressLine(progress, heartbeat);
      if (out.isTTY) out.write(`\r${line.padEnd(lastLine.length)}`);
      else if (line !== lastLine) out.write(`${line}\n`);
      lastLine = line;
    } catch {
      // The workflow may not have started its first task yet, or has just closed.
    }
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 500))]);
  }
  watcher.stop();
  // The run may end between two polls: always close with its final state.
  const outcome = await result.catch(() => undefined);
  if (outcome && lastProgress) {
    const line = renderProgressLine({ ...lastProgress, stage: 'done', sourcesDone: lastProgress.sourcesTotal }, undefined);
    if (out.isTTY) out.write(`\r${line.padEnd(lastLine.length)}\n`);
    else if (line !== lastLine) out.write(`${line}\n`);
  } else if (out.isTTY && lastLine) {
    out.write('\n');
  }
  return result;
}
