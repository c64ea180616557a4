/**
 * Every environment variable the worker and the CLI read, in one place, so the Docker Compose
 * file can be checked against it (test/compose.test.ts). Secrets are not listed here: the
 * config names them (e.g. `passwordEnv: RESTIC_PASSWORD`) and they have no defaults.
 */
import { hostname } from 'node:os';
import { parseDuration } from './units';

export const ENVIRONMENT_VARIABLES = {
  BACKUP_CONFIG: 'Path of the YAML config file.',
  BACKUP_HOST: 'Name of this host; file sources declare it and their activities run on its task queue. Default: the OS host name.',
  TEMPORAL_ADDRESS: 'Temporal frontend host:port. Default: 127.0.0.1:7233.',
  TEMPORAL_NAMESPACE: 'Temporal namespace. Default: default.',
  TEMPORAL_TLS: 'Set to "true" to use TLS with the system CAs (implied by the variables below).',
  TEMPORAL_TLS_CA: 'Path of a PEM file with the CA that signed the server certificate.',
  TEMPORAL_TLS_CERT: 'Path of the PEM client certificate (mTLS).',
  TEMPORAL_TLS_KEY: 'Path of the PEM client key (mTLS).',
  TEMPORAL_TLS_SERVER_NAME: 'Server name to verify, when it differs from the address.',
  TEMPORAL_API_KEY: 'API key for Temporal Cloud (a secret: never logged).',
  RESTIC_BIN: 'Path of the restic binary. Default: restic from PATH, then the project cache.',
  RCLONE_BIN: 'Path of the rclone binary, which reads the source of a copy (policies.<p>.copyTo) on S3. Default: rclone from PATH, then the project cache.',
  LOG_LEVEL: 'pino level: trace, debug, info, warn, error. Default: info.',
  LOG_FORMAT: '"json" or "pretty". Default: pretty on a terminal, json otherwise.',
  BACKUP_WORKFLOW_CACHE: 'Workflows the worker keeps in memory between tasks (default: the SDK\'s). 0 replays every task from history, as the tests do.',
  BACKUP_MONITORING_PORT: 'Overrides monitoring.port for this worker (0: any free port), e.g. for a second worker on the same host during a rolling restart.',
  BACKUP_SHUTDOWN_GRACE: 'How long a stopping worker (SIGTERM, SIGINT) lets its running activities finish before they are cancelled and retried on another worker, e.g. 30s, 5m. Default: 30s.',
} as const;

export type EnvironmentVariable = keyof typeof ENVIRONMENT_VARIABLES;

export interface WorkerEnvironment {
  configPath: string | undefined;
  host: string;
  temporal: {
    address: string;
    namespace: string;
    tls: boolean;
    tlsCaPath?: string;
    tlsCertPath?: string;
    tlsKeyPath?: string;
    tlsServerName?: string;
    apiKey?: string;
  };
  resticBin?: string;
  logLevel: string;
  logFormat?: 'json' | 'pretty';
  /** Set: the worker's maxCachedWorkflows (0 in tests, so every workflow task replays). */
  workflowCacheSize?: number;
  /** BACKUP_MONITORING_PORT: overrides config.monitoring.port (0: any free port). */
  monitoringPort?: number;
  /** BACKUP_SHUTDOWN_GRACE in milliseconds: the worker's shutdownGraceTime. */
  shutdownGraceMs?: number;
}

export function readEnvironment(env: NodeJS.ProcessEnv = process.env): WorkerEnvironment {
  const get = (name: EnvironmentVariable): string | undefined => {
    const value = env[name];
    return value === undefined || value === '' ? undefined : value;
  };
  const tlsCaPath = get('TEMPORAL_TLS_CA');
  const tlsCertPath = get('TEMPORAL_TLS_CERT');
  const tlsKeyPath = get('TEMPORAL_TLS_KEY');
  const tlsServerName = get('TEMPORAL_TLS_SERVER_NAME');
  const apiKey = get('TEMPORAL_API_KEY');
  const logFormat = get('LOG_FORMAT');
  if (logFormat !== undefined && logFormat !== 'json' && logFormat !== 'pretty') {
    throw new Error(`LOG_FORMAT must be "json" or "pretty", not "${logFormat}"`);
  }
  const workflowCache = get('BACKUP_WORKFLOW_CACHE');
  if (workflowCache !== undefined && !/^\d+$/.test(workflowCache)) {
    throw new Error(`BACKUP_WORKFLOW_CACHE must be a whole number of workflows, not "${workflowCache}"`);
  }
  const monitoringPort = get('BACKUP_MONITORING_PORT');
  if (monitoringPort !== undefined && (!/^\d+$/.test(monitoringPort) || Number(monitoringPort) > 65535)) {
    throw new Error(`BACKUP_MONITORING_PORT must be a port number (0 to 65535; 0: any free port), not "${monitoringPort}"`);
  }
  const shutdownGrace = get('BACKUP_SHUTDOWN_GRACE');
  const shutdownGraceMs = shutdownGrace === undefined ? undefined : /^0+[smhdw]?$/.test(shutdownGrace.trim()) ? 0 : parseDuration(shutdownGrace);
  if (shutdownGrace !== undefined && shutdownGraceMs === undefined) {
    throw new Error(`BACKUP_SHUTDOWN_GRACE must be a duration such as 30s, 5m or 1m30s, not "${shutdownGrace}"`);
  }
  if ((tlsCertPath === undefined) !== (tlsKeyPath === undefined)) {
    throw new Error('TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY must be set together (mTLS needs both)');
  }
  return {
    configPath: get('BACKUP_CONFIG'),
    host: get('BACKUP_HOST') ?? hostname(),
    temporal: {
      address: get('TEMPORAL_ADDRESS') ?? '127.0.0.1:7233',
      namespace: get('TEMPORAL_NAMESPACE') ?? 'default',
      tls: get('TEMPORAL_TLS') === 'true' || [tlsCaPath, tlsCertPath, apiKey].some((v) => v !== undefined),
      tlsCaPath,
      tlsCertPath,
      tlsKeyPath,
      tlsServerName,
      apiKey,
    },
    resticBin: get('RESTIC_BIN'),
    logLevel: get('LOG_LEVEL') ?? 'info',
    logFormat,
    workflowCacheSize: workflowCache === undefined ? undefined : Number(workflowCache),
    ...(monitoringPort === undefined ? {} : { monitoringPort: Number(monitoringPort) }),
    ...(shutdownGraceMs === undefined ? {} : { shutdownGraceMs }),
  };
}
