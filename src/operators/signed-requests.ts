/**
 * The CLI signs what it asks when the config names operators (src/operators): the request's
 * names, the action they amount to and the workflow id, with the key BACKUP_OPERATOR_KEY names.
 * Without operators the request goes unsigned, as before.
 */
import type { Config } from '../config/schema';
import { actionOfRequest, type Action } from './roles';
import { signRequest } from './signing';
import type { RequestAuth, RequestKind, RequestKinds } from '../shared/requests';

export async function signedRequest<K extends RequestKind>(config: Pick<Config, 'operators'>, kind: K, request: RequestKinds[K], workflowId: string): Promise<RequestKinds[K]> {
  if (!config.operators) return request;
  const action = actionOfRequest(kind, request as { mode?: unknown; inPlace?: unknown });
  return { ...request, auth: await signRequest({ action, request, workflowId }) };
}

/** A proof for something that is not a workflow's request (a recover's approval). */
export async function signedProof(action: Action, request: unknown, workflowId: string): Promise<RequestAuth> {
  return signRequest({ action, request, workflowId });
}

/**
 * A schedule's request, signed by the admin applying the schedules: over the action "schedules"
 * (never a workflow's own action) and the schedule's id, so that it verifies only for a run its
 * schedule started, never as a request started directly (under the schedule's id as workflow id).
 */
export async function signedScheduleRequest<R extends object>(request: R, scheduleId: string): Promise<R & { auth: RequestAuth }> {
  return { ...request, auth: await signRequest({ action: 'schedules', request, workflowId: scheduleId }) };
}
