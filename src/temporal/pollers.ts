/** Who polls a task queue now: the server's list of pollers, less those it has not seen lately. */
import type { Client } from '@temporalio/client';

export type TaskQueueKind = 'workflow' | 'activity';

/** A protobuf Timestamp as milliseconds since the epoch. */
export function timestampMs(ts: { seconds?: unknown; nanos?: number | null } | null | undefined): number | undefined {
  if (!ts) return undefined;
  return Number(String(ts.seconds ?? 0)) * 1000 + (ts.nanos ?? 0) / 1e6;
}

/**
 * Workers polling `taskQueue` now: pollers the server last saw within `liveWithinMs`. The server
 * keeps listing a stopped worker for minutes, so a bare count would call a dead host alive.
 */
export async function livePollers(client: Client, taskQueue: string, kind: TaskQueueKind, liveWithinMs: number): Promise<number> {
  const description = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue },
    taskQueueType: kind === 'workflow' ? 1 : 2, // TASK_QUEUE_TYPE_WORKFLOW / _ACTIVITY
  });
  const now = Date.now();
  return (description.pollers ?? []).filter((poller) => {
    const seen = timestampMs(poller.lastAccessTime);
    return seen === undefined || now - seen < liveWithinMs;
  }).length;
}
