/**
 * The way into a repository's writer queue: a signal-with-start (one atomic call, so a job never
 * lands between a writer's last job and its end), and a look at whether the writer still holds a job.
 */
import type { Client } from '@temporalio/client';
import type { RepositoryQueueView, RepositoryRequest, RepositoryWriterInput } from '../shared/backup-types';
import { hostTaskQueue, sharedTaskQueue } from '../shared/task-queues';
import { livePollers } from '../temporal/pollers';
// Types only: activities never load workflow code (nor @temporalio/workflow).
import type { repositoryWriterWorkflow } from '../workflows/repository';

export interface RepositoryQueueDependencies {
  temporalClient: () => Promise<Client>;
}

export type RepositoryJobState = 'running' | 'waiting' | 'unknown';

/** A poller seen within this long is a worker; the server lists a stopped one for minutes. */
const POLLER_LIVE_MS = 70_000;

export function createRepositoryQueueActivities({ temporalClient }: RepositoryQueueDependencies) {
  return {
    async enqueueRepositoryJob({ writerId, request }: { writerId: string; request: RepositoryRequest }): Promise<void> {
      const client = await temporalClient();
      const input: RepositoryWriterInput = { deployment: request.job.deployment, repositoryName: request.job.repositoryName, queue: [] };
      await client.workflow.signalWithStart<typeof repositoryWriterWorkflow, [RepositoryRequest]>('repositoryWriterWorkflow', {
        workflowId: writerId,
        taskQueue: sharedTaskQueue(request.job.deployment),
        args: [input],
        signal: 'enqueueRepositoryJob',
        signalArgs: [request],
      });
    },

    /** The hosts, of those given, whose queue a worker polls now (seen within the last 70 s). */
    async hostsPolled({ deployment, hosts }: { deployment: string; hosts: string[] }): Promise<string[]> {
      const client = await temporalClient();
      const polled: string[] = [];
      for (const host of hosts) {
        if ((await livePollers(client, hostTaskQueue(deployment, host), 'activity', POLLER_LIVE_MS)) > 0) polled.push(host);
      }
      return polled;
    },

    /** Whether the running writer holds the job: running it, or with it in its queue. */
    async repositoryJobState({ writerId, id }: { writerId: string; id: string }): Promise<RepositoryJobState> {
      const client = await temporalClient();
      const handle = client.workflow.getHandle(writerId);
      const description = await handle.describe().catch((error: unknown) => {
        if ((error as Error).name === 'WorkflowNotFoundError') return undefined;
        throw error;
      });
      if (description?.status.name !== 'RUNNING') return 'unknown';
      const view = await handle.query<RepositoryQueueView>('queue');
      if (view.current?.id === id) return 'running';
      return view.waiting.some((w) => w.id === id) ? 'waiting' : 'unknown';
    },
  };
}
