/** Connection options for Temporal, from the environment (address, namespace, TLS, API key). */
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/common/lib/internal-non-workflow';
import type { WorkerEnvironment } from '../config/environment';
import { registerSecretValue } from '../logging/logger';

export interface TemporalConnectionOptions {
  address: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
}

export function temporalConnectionOptions(environment: WorkerEnvironment): TemporalConnectionOptions {
  const t = environment.temporal;
  if (t.apiKey) registerSecretValue(t.apiKey);
  if (!t.tls) return { address: t.address };
  const tls: TLSConfig = {
    serverNameOverride: t.tlsServerName,
    serverRootCACertificate: t.tlsCaPath ? readFileSync(t.tlsCaPath) : undefined,
    clientCertPair: t.tlsCertPath && t.tlsKeyPath ? { crt: readFileSync(t.tlsCertPath), key: readFileSync(t.tlsKeyPath) } : undefined,
  };
  return { address: t.address, tls, apiKey: t.apiKey };
}
