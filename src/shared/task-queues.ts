/**
 * Task queues: file sources are read by the worker on the host that holds them; everything
 * else (database dumps, checks, the ledger) can run on any worker of the deployment.
 * Pure functions: workflows import them too.
 */
export function sharedTaskQueue(deployment: string): string {
  return `${deployment}.shared`;
}

export function hostTaskQueue(deployment: string, host: string): string {
  return `${deployment}.host.${host}`;
}
