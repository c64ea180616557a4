/**
 * The one heartbeat helper for long activities. A step that does not report progress (restic
 * listing a repository, forget on S3, a walk of 200,000 files) still heartbeats while it runs, so
 * Temporal does not time the attempt out and retry work that is going fine; and the beat is how
 * the activity learns it was cancelled.
 */
import { Context } from '@temporalio/activity';

/** Beat at least this often: well inside the shortest heartbeat timeout (LONG_TRANSFERS: 20 s). */
export const HEARTBEAT_INTERVAL_MS = 5_000;

function currentContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined; // Called outside an activity (a unit test, the CLI): nothing to beat.
  }
}

/**
 * Runs `step` while heartbeating `details()` at once and then every interval. Details are read at
 * each beat, so a step can update the object it returns (progress, a child's pid).
 */
export async function withHeartbeat<T>(details: () => unknown, step: () => Promise<T>, intervalMs = HEARTBEAT_INTERVAL_MS): Promise<T> {
  const context = currentContext();
  if (!context) return step();
  const beat = () => context.heartbeat(details());
  beat();
  const timer = setInterval(beat, intervalMs);
  try {
    return await step();
  } finally {
    clearInterval(timer);
  }
}

/**
 * Lets the event loop run (timers: the heartbeat) during a long synchronous-looking loop such as
 * a file walk: call it every few hundred items.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
