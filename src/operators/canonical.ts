/**
 * The text an operator signs: what is asked (the action and the small request of names), for
 * which workflow, when, and a request id that can be used once. Serialised deterministically
 * (keys sorted at every depth, no blanks, undefined fields left out) so that the CLI and the
 * worker, each building it from its own copy, get the same bytes.
 *
 * Pure: workflows may import this file.
 */
import type { RequestAuth } from '../shared/requests';
import type { Action } from './roles';

/** What travels with a request (beside its names): the one shape, defined with the requests. */
export type RequestProof = RequestAuth;

export interface SignedFields {
  action: Action;
  /** The workflow's request without its proof. */
  request: unknown;
  workflowId: string;
  requestId: string;
  signedAt: string;
}

/** Version of the signed text's layout: a later layout is a new number, never a silent change. */
export const SIGNED_TEXT_VERSION = 1;

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`cannot sign the number ${value}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((item) => (item === undefined ? 'null' : canonicalJson(item))).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  throw new Error(`cannot sign a ${typeof value}`);
}

export function signedText(fields: SignedFields): string {
  const { action, request, workflowId, requestId, signedAt } = fields;
  return canonicalJson({ v: SIGNED_TEXT_VERSION, action, request, workflowId, requestId, signedAt });
}
