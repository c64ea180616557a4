import { Client, Connection } from '@temporalio/client';
import type { WorkerEnvironment } from '../config/environment';
import { temporalConnectionOptions } from './connection';

export async function connectClient(environment: WorkerEnvironment, timeoutMs = 5_000): Promise<Client> {
  const connection = await Connection.connect({ ...temporalConnectionOptions(environment), connectTimeout: timeoutMs });
  return new Client({ connection, namespace: environment.temporal.namespace });
}
