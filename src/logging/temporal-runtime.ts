/**
 * Route the Temporal SDK's own logs (TypeScript side and the Rust core) through our pino logger,
 * so they take its format (pretty on a terminal, JSON otherwise), its level and its redaction.
 */
import { DefaultLogger, Runtime, makeTelemetryFilterString, type LogEntry } from '@temporalio/worker';
import type { Logger } from './logger';

const LEVELS = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' } as const;

/** The Temporal level that lets through what the pino logger would write (fatal/silent: errors only). */
function temporalLevel(pinoLevel: string): keyof typeof LEVELS {
  const found = (Object.entries(LEVELS) as [keyof typeof LEVELS, string][]).find(([, level]) => level === pinoLevel);
  return found ? found[0] : 'ERROR';
}

/** SDK warnings that describe this design, not a problem: the host queue's worker runs activities only. */
const EXPECTED = [/^No workflows registered, not polling for workflow tasks/];

let installed = false;

export function installTemporalRuntimeLogger(logger: Logger): void {
  if (installed) return;
  installed = true;
  const temporalLogger = logger.child({ component: 'temporal' });
  Runtime.install({
    logger: new DefaultLogger(temporalLevel(logger.level), (entry: LogEntry) => {
      const method = EXPECTED.some((pattern) => pattern.test(entry.message)) ? 'debug' : LEVELS[entry.level];
      temporalLogger[method](entry.meta ?? {}, entry.message);
    }),
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN', other: 'ERROR' }), forward: {} } },
  });
}
