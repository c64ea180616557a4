/**
 * The one logger: pino, JSON in production, pretty on a terminal (decided by whether stderr,
 * where logs go, is a TTY; LOG_FORMAT overrides it). Secrets are redacted twice:
 * by key (pino `redact`) and by value (every secret read from the environment is registered
 * and scrubbed from messages, because a driver's error text can quote a connection string).
 */
import pino, { type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

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
  /** pino level; default `info`. */
  level?: string;
  /** Default: `logFormatFor(process.env)`, i.e. LOG_FORMAT, else pretty when stderr is a terminal. */
  format?: 'json' | 'pretty';
  name?: string;
  /** Where the lines go (default: stderr); tests pass a stream to read what was logged. */
  destination?: pino.DestinationStream;
}

/** Logs go to stderr: pretty when that is a terminal, JSON lines otherwise; LOG_FORMAT decides when set. */
export function logFormatFor(env: NodeJS.ProcessEnv = process.env, stderrIsTTY = Boolean(process.stderr.isTTY)): 'json' | 'pretty' {
  const format = env.LOG_FORMAT;
  if (format === 'json' || format === 'pretty') return format;
  return stderrIsTTY ? 'pretty' : 'json';
}

/**
 * The level of a command a person runs (the CLI, `backupctl dev`): LOG_LEVEL when set, else `warn`
 * on a terminal (info lines would break up the progress bars and tables) and `info` otherwise.
 * The worker command keeps `info` (its logs are its output).
 */
export function interactiveLogLevel(env: NodeJS.ProcessEnv = process.env, stderrIsTTY = Boolean(process.stderr.isTTY)): string {
  return env.LOG_LEVEL || (stderrIsTTY ? 'warn' : 'info');
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format ?? (options.destination ? 'json' : logFormatFor());
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
  if (format === 'pretty') {
    // In this thread and synchronous (not a pino transport): a line is on the terminal before
    // the next progress bar or table is written, in order, and nothing is lost at exit.
    const destination = options.destination ?? 2;
    return pino(base, pinoPretty({ destination, sync: true, colorize: options.destination === undefined && Boolean(process.stderr.isTTY), translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname' }));
  }
  return pino(base, options.destination ?? pino.destination(2));
}
