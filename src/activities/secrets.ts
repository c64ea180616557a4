/**
 * Secrets for activities: read from the worker's environment, registered so that logs and
 * messages never show them. One place, so a missing variable always says the same thing.
 */
import { hostname } from 'node:os';
import { registerSecretValue } from '../logging/logger';
import { FailureType } from '../shared/failures';
import { failure } from './failures';

/** The variable's value; a clear ConfigInvalid failure (not retried) when it is not set. */
export function requireSecret(env: NodeJS.ProcessEnv, variable: string, what: string): string {
  const value = optionalSecret(env, variable);
  if (!value) throw failure(FailureType.ConfigInvalid, `environment variable ${variable} (${what}) is not set on this worker (${hostname()})`);
  return value;
}

/** The variable's value, or undefined when it is not set (doctor reports that itself). */
export function optionalSecret(env: NodeJS.ProcessEnv, variable: string): string | undefined {
  const value = env[variable];
  if (value) registerSecretValue(value);
  return value || undefined;
}
