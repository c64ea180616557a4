/**
 * The one logger: pino, JSON in production, pretty on a terminal. Secrets are redacted twice:
 * by key (pino `redact`) and by value (every secret read from the environment is registered
 * and scrubbed from messages, because a driver's error text can quote a connection string).
 */
import pino, { type Logger } from 'pino';

export type { Logger };

/** Keys whose values are never written, wherever they sit in a log object (two levels deep). */
const SECRET_KEYS = [
  'password', 'passwd', 'secret', 'secretAccessKey', 'accessKeySecret', 'apiKey', 'token',
  'authorization', 'uri', 'url', 'connectionString', 'routingKey', 'webhookUrl',
  'RESTIC_PASSWORD', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'PGPASSWORD', 'env',
];
export const REDACT_PATHS = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

const secretValues = new Set<string>();

/** Remember a secret's value so that it is scrubbed from any message that quotes it. */
export function registerSecretValue(value: string): void {
  // Very short values would scrub ordinary words; they are still redacted by key.
  if (value.length >= 6) secretValues.add(value);
}

export function scrubSecrets(text: string): string {
  let scrubbed = text;
  for (const value of secretValues) scrubbed = scrubbed.split(value).join('[REDACTED]');
  // Credentials embedded in URLs (mongodb://user:pass@host, postgres://...).
  return scrubbed.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)[^\s@/]+@/gi, '$1[REDACTED]@');
}

function scrubDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubSecrets(value);
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    return { type: value.name, message: scrubSecrets(value.message), stack: value.stack ? scrubSecrets(value.stack) : undefined };
  }
  if (Array.isArray(value)) return value.map((item) => scrubDeep(item, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrubDeep(v, depth + 1)]));
}

export interface LoggerOptions {
  level?: string;
  format?: 'json' | 'pretty';
  name?: string;
  /** Where JSON lines go; tests pass a stream to read what was logged. */
  destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format ?? (process.stderr.isTTY ? 'pretty' : 'json');
  const base: pino.LoggerOptions = {
    name: options.name ?? 'backup',
    level: options.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
    formatters: { log: (object) => scrubDeep(object) as Record<string, unknown> },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((arg) => (typeof arg === 'string' ? scrubSecrets(arg) : arg)) as Parameters<typeof method>);
      },
    },
  };
  if (options.destination) return pino(base, options.destination);
  if (format === 'pretty') {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { destination: 2, colorize: true, translateTime: 'SYS:HH:MM:ss' } } });
  }
  return pino(base, pino.destination(2));
}
