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
