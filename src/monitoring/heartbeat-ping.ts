/**
 * Pings to an outside heartbeat monitor, in Healthchecks.io's convention: <url>/start, <url> for
 * success, <url>/fail. Used by a backup (per policy) and by the worker itself. The URL is a secret
 * of sorts (anyone holding it can ping): errors and logs name its origin only.
 */

export type HeartbeatSignal = 'start' | 'success' | 'fail';

/** Healthchecks.io's convention: <url>/start, <url>, <url>/fail. */
export function heartbeatUrl(base: string, signal: HeartbeatSignal): string {
  const url = new URL(base);
  if (signal !== 'success') url.pathname = `${url.pathname.replace(/\/$/, '')}/${signal}`;
  return url.toString();
}

/** The part of a ping URL that may be logged. */
export function heartbeatOrigin(base: string): string {
  try {
    return new URL(base).origin;
  } catch {
    return '(not a URL)';
  }
}

/** One POST; throws when the monitor does not answer 2xx in time (the message names the origin, never the URL). */
export async function postHeartbeat(base: string, signal: HeartbeatSignal, body: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<number> {
  const url = heartbeatUrl(base, signal);
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 10_000);
  let response: Response;
  try {
    response = await fetch(url, { method: 'POST', body, signal: options.signal ? AbortSignal.any([timeout, options.signal]) : timeout });
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause?.message;
    throw new Error(`heartbeat ${signal} to ${heartbeatOrigin(base)} failed: ${(error as Error).message}${cause ? ` (${cause})` : ''}`);
  }
  // Nobody reads the answer: drop it, so the socket goes back to the pool.
  await response.body?.cancel().catch(() => undefined);
  if (!response.ok) throw new Error(`heartbeat ${signal} to ${heartbeatOrigin(base)} answered ${response.status}`);
  return response.status;
}
