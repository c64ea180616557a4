import { Client, Connection } from '@temporalio/client';
import type { WorkerEnvironment } from '../config/environment';
import { temporalConnectionOptions } from './connection';
import { diagnoseTls } from './tls-diagnosis';

/** A client of the environment's Temporal; a failure to connect because of TLS says which part of TLS. */
export async function connectClient(environment: WorkerEnvironment, timeoutMs = 5_000): Promise<Client> {
  const options = temporalConnectionOptions(environment);
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...options, connectTimeout: timeoutMs });
  } catch (error) {
    throw (await diagnoseTls(options)) ?? error;
  }
  return new Client({ connection, namespace: environment.temporal.namespace });
}
