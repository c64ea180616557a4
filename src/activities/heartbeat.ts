/**
 * The one heartbeat helper for long activities. A step that does not report progress (restic
 * listing a repository, forget on S3, a walk of 200,000 files) still heartbeats while it runs, so
 * Temporal does not time the attempt out and retry work that is going fine; and the beat is how
 * the activity learns it was cancelled.
 *
 * Beats alone cannot tell a slow step from a stuck one (a restic stopped by SIGSTOP, a mount that
 * hangs, storage that accepts connections and sends nothing): the worker is alive, so they would
 * flow for the whole 12 hours of the start-to-close timeout. So each step is also watched for
 * progress: its heartbeat details changing (bytes, files, documents, a new stage), a child's
 * output saying something new (see watchChild), or an explicit markProgress(). After `stallAfter`
 * (config, default 10 min) without any, the step's children are stopped and the attempt fails
 * `Stalled`, which the retry policy retries.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { parseDuration } from '../config/units';
import { FailureType, NON_RETRYABLE_FAILURES } from '../shared/failures';

/** Beat at least this often: well inside the shortest heartbeat timeout (LONG_TRANSFERS: 20 s). */
export const HEARTBEAT_INTERVAL_MS = 5_000;

/** Silence after which a step counts as stalled, until the worker sets its config's `stallAfter`. */
export const DEFAULT_STALL_AFTER_MS = 10 * 60_000;

/** What a stalled step's children get to stop (restic: SIGINT, SIGKILL 10 s later) before the attempt fails anyway. */
const STOP_GRACE_MS = 15_000;

let stallAfterMs = DEFAULT_STALL_AFTER_MS;

/** The worker's `stallAfter` (a duration such as "10m"): steps started from now on use it. */
export function configureStallDetection(stallAfter: string): void {
  const ms = parseDuration(stallAfter);
  if (ms === undefined) throw new RangeError(`stallAfter: "${stallAfter}" is not a duration such as "10m"`);
  stallAfterMs = ms;
}

/** One running step, as its children see it. */
interface StepWatch {
  lastProgress: number;
  /** Aborted when this step (or the step around it) stalls. */
  stalled: AbortSignal;
  /** The child that runs now ("restic backup"), for the failure's message. */
  child?: string;
  /** The step around this one (restoreSource inside recoverSource): its progress is the outer's too. */
  outer?: StepWatch;
}

const steps = new AsyncLocalStorage<StepWatch>();

function progressed(watch: StepWatch | undefined): void {
  const now = Date.now();
  for (let step = watch; step; step = step.outer) step.lastProgress = now;
}

/** Real progress of the current step that no heartbeat detail shows (the items of a walk). */
export function markProgress(): void {
  progressed(steps.getStore());
}

/**
 * What the current step's work stops on: `signal` (the activity's cancellation) or the step
 * stalling. For work that is not a child process (a database cursor); children use watchChild.
 */
export function stepSignal(signal?: AbortSignal): AbortSignal | undefined {
  const step = steps.getStore();
  if (!step) return signal;
  return signal ? AbortSignal.any([signal, step.stalled]) : step.stalled;
}

/**
 * A line of a child's output, without what changes while nothing moves: restic repeats its last
 * progress line twice a second with only the elapsed time ticking ("[0:05] 50.00%  4 / 8 packs",
 * a JSON status with `seconds_elapsed`).
 */
export function progressLine(line: string): string {
  if (line.startsWith('{')) {
    try {
      const message = JSON.parse(line) as Record<string, unknown>;
      delete message.seconds_elapsed;
      delete message.seconds_remaining;
      return JSON.stringify(message);
    } catch {
      return line;
    }
  }
  return line.replace(/^\[[\d:]+\]\s*/, '').replace(/\s*\bETA\s+[\d:]+/, '').trim();
}

export interface ChildWatch {
  /** Aborts on the signal given (the activity's cancellation) or when the step stalls: stop the child on it. */
  readonly signal: AbortSignal | undefined;
  /** A handler for one of the child's output streams: each line that says something new is progress. */
  lines(): (chunk: string) => void;
  /** Progress the child's output shows otherwise (bytes of a dump flowing through). */
  progress(): void;
  /** The child has exited. */
  done(): void;
}

/**
 * Watches a child process (`what`: "restic backup") of the current step. Starting it is
 * progress (a new phase), and so is each output line that differs from the one before it, once
 * the clock is taken out (progressLine). Outside a step it only passes `signal` through.
 */
export function watchChild(what: string, signal?: AbortSignal): ChildWatch {
  const step = steps.getStore();
  if (!step) return { signal, lines: () => () => undefined, progress: () => undefined, done: () => undefined };
  step.child = what;
  progressed(step);
  return {
    signal: stepSignal(signal),
    lines() {
      let pending = '';
      let last = '';
      return (chunk) => {
        pending += chunk;
        // Progress bars (git) rewrite their line with \r: each rewrite is a line here.
        const parts = pending.split(/\r\n|\r|\n/);
        pending = parts.pop() ?? '';
        for (const part of parts) {
          const line = progressLine(part.trim());
          if (line && line !== last) {
            last = line;
            progressed(step);
          }
        }
      };
    },
    progress: () => progressed(step),
    done() {
      if (step.child === what) step.child = undefined;
    },
  };
}

function formatSilence(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

function stalledFailure(context: Context, watch: StepWatch, silence: number, details: string | undefined): ApplicationFailure {
  const what = `${context.info.activityType}${watch.child ? ` (${watch.child})` : ''}`;
  const last = details && details.length > 300 ? `${details.slice(0, 300)}…` : details;
  return ApplicationFailure.create({
    type: FailureType.Stalled,
    nonRetryable: NON_RETRYABLE_FAILURES.includes(FailureType.Stalled),
    message: `${what} made no progress for ${formatSilence(silence)} (last heartbeat: ${last ?? 'none'}): it was stopped and the attempt will be retried. `
      + 'Check what it waits on: the repository\'s storage (reachable, answering, not full), the database or disk it reads, '
      + 'and that nothing paused the process (SIGSTOP, a frozen container); if this step is legitimately silent for longer, raise stallAfter in the config',
  });
}

function currentContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined; // Called outside an activity (a unit test, the CLI): nothing to beat.
  }
}

export interface HeartbeatOptions {
  intervalMs?: number;
  /** false for a step bounded by a deadline of its own (a recovery hook's timeout): never `Stalled`. */
  detectStalls?: boolean;
}

/**
 * Runs `step` while heartbeating `details()` at once and then every interval. Details are read at
 * each beat, so a step can update the object it returns (progress, a child's pid); a change is
 * progress. A step without progress for `stallAfter` is stopped (its children's signal aborts)
 * and fails `Stalled`, also if it ends anyway while being stopped.
 */
export async function withHeartbeat<T>(details: () => unknown, step: () => Promise<T>, options: HeartbeatOptions = {}): Promise<T> {
  const context = currentContext();
  if (!context) return step();
  const { intervalMs = HEARTBEAT_INTERVAL_MS, detectStalls = true } = options;
  const silence = detectStalls ? stallAfterMs : Number.POSITIVE_INFINITY;
  const outer = steps.getStore();
  const stall = new AbortController();
  const watch: StepWatch = { lastProgress: Date.now(), stalled: outer ? AbortSignal.any([stall.signal, outer.stalled]) : stall.signal, outer };
  let seen: string | undefined;
  const beat = () => {
    const current = details();
    const text = JSON.stringify(current);
    if (text !== seen) {
      seen = text;
      progressed(watch);
    }
    context.heartbeat(current);
    if (!stall.signal.aborted && Date.now() - watch.lastProgress >= silence) {
      const failure = stalledFailure(context, watch, silence, seen);
      context.log.warn(failure.message);
      stall.abort(failure);
    }
  };
  beat();
  // Checked often enough to notice a short stallAfter in time; the SDK throttles the beats themselves.
  const timer = setInterval(beat, Math.min(intervalMs, Math.max(250, silence / 4)));
  const running = steps.run(watch, step);
  // Once stalled: the attempt fails when the step has wound down, or after the grace if it does not.
  const stopped = new Promise<never>((_, reject) => {
    stall.signal.addEventListener('abort', () => {
      const fail = () => reject(stall.signal.reason);
      const grace = setTimeout(fail, STOP_GRACE_MS);
      void running.then(fail, fail).finally(() => clearTimeout(grace));
    }, { once: true });
  });
  try {
    const result = await Promise.race([running, stopped]);
    if (stall.signal.aborted) throw stall.signal.reason;
    return result;
  } catch (error) {
    throw stall.signal.aborted ? stall.signal.reason : error;
  } finally {
    clearInterval(timer);
  }
}

/**
 * Lets the event loop run (timers: the heartbeat) during a long synchronous-looking loop such as
 * a file walk: call it every few hundred items, which are progress.
 */
export function yieldToEventLoop(): Promise<void> {
  markProgress();
  return new Promise((resolve) => setImmediate(resolve));
}
