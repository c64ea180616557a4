/** What a repository's writer did, read from its histories: the answers it sent and its activities, with their times and attempts. */
import type { Client } from '@temporalio/client';

export interface WriterEvent { kind: 'enqueued' | 'started' | 'done'; job: string; at: number }
export interface WriterActivity { type: string; attempt: number; scheduledAt: number; job?: string; taskQueue?: string; identity?: string }

/** Every run of a writer (it ends when its queue empties and starts again on the next job): the answers it sent and its activities. */
export async function writerRuns(client: Client, writerId: string): Promise<{ events: WriterEvent[]; activities: WriterActivity[] }> {
  const events: WriterEvent[] = [];
  const activities: WriterActivity[] = [];
  const converter = client.options.loadedDataConverter.payloadConverter;
  for await (const execution of client.workflow.list({ query: `WorkflowId = '${writerId}'` })) {
    const history = await client.workflow.getHandle(writerId, execution.runId).fetchHistory();
    const attemptOf = new Map<string, number>();
    for (const event of history.events ?? []) {
      const at = Number(event.eventTime?.seconds ?? 0) * 1000 + Math.floor((event.eventTime?.nanos ?? 0) / 1e6);
      const signal = event.signalExternalWorkflowExecutionInitiatedEventAttributes;
      if (signal && (signal.signalName === 'repositoryJobStarted' || signal.signalName === 'repositoryJobDone')) {
        const { id } = converter.fromPayload<{ id: string }>(signal.input!.payloads![0]!);
        events.push({ kind: signal.signalName === 'repositoryJobStarted' ? 'started' : 'done', job: id, at });
      }
      const signaled = event.workflowExecutionSignaledEventAttributes;
      if (signaled?.signalName === 'enqueueRepositoryJob') {
        const { id } = converter.fromPayload<{ id: string }>(signaled.input!.payloads![0]!);
        events.push({ kind: 'enqueued', job: id, at });
      }
      const scheduled = event.activityTaskScheduledEventAttributes;
      if (scheduled) {
        activities.push({ type: scheduled.activityType!.name!, attempt: 1, scheduledAt: at, job: events.filter((e) => e.kind === 'started').at(-1)?.job, taskQueue: scheduled.taskQueue?.name ?? undefined });
        attemptOf.set(String(event.eventId), activities.length - 1);
      }
      const started = event.activityTaskStartedEventAttributes;
      if (started) {
        const index = attemptOf.get(String(started.scheduledEventId));
        if (index !== undefined) {
          activities[index]!.attempt = Math.max(activities[index]!.attempt, started.attempt ?? 1);
          // The worker that ran it (its identity carries host=<BACKUP_HOST>).
          activities[index]!.identity = started.identity ?? undefined;
        }
      }
    }
  }
  return { events: events.sort((a, b) => a.at - b.at), activities };
}
