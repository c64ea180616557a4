/**
 * Who may ask for what: each action a person can start needs one role. Roles do not nest (an
 * admin is not a recoverer unless given both), so that the two people of a recover are two
 * recoverers; only the viewer's actions are open to every role.
 *
 * Pure: workflows may import this file.
 */
import type { RequestKind } from '../shared/requests';

export const ROLES = ['viewer', 'operator', 'recoverer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** The permission table: action → the role it needs. README "Who may do what" shows it. */
export const ACTION_ROLES = {
  status: 'viewer',
  ledger: 'viewer',
  audit: 'viewer',
  snapshots: 'viewer',
  doctor: 'viewer',
  backup: 'operator',
  verify: 'operator',
  /** A self-contained archive (config archives): reads snapshots, writes .tar.zst files and deletes those beyond keep. */
  archive: 'operator',
  drill: 'operator',
  'drill-approve': 'operator',
  /** Into a new folder, database or bucket: nothing in production is overwritten. */
  restore: 'operator',
  recover: 'recoverer',
  'recover-approve': 'recoverer',
  'restore-in-place': 'recoverer',
  schedules: 'admin',
  init: 'admin',
  rewind: 'admin',
  prune: 'admin',
  'ledger-rebuild': 'admin',
} as const satisfies Record<string, Role>;

export type Action = keyof typeof ACTION_ROLES;

export function roleNeeded(action: Action): Role {
  return ACTION_ROLES[action];
}

/** Whether someone holding `roles` may do `action`. */
export function mayDo(roles: readonly Role[], action: Action): boolean {
  const needed = roleNeeded(action);
  return roles.includes(needed) || (needed === 'viewer' && roles.length > 0);
}

/** The actions each role opens, for doctor, `operators list` and the README. */
export function actionsOf(role: Role): Action[] {
  return (Object.keys(ACTION_ROLES) as Action[]).filter((action) => ACTION_ROLES[action] === role);
}

/** The action a workflow request asks for: a recover is not a drill, a restore in place is not a restore. */
export function actionOfRequest(kind: RequestKind, request: { mode?: unknown; inPlace?: unknown }): Action {
  switch (kind) {
    case 'recovery':
      return request.mode === 'recover' ? 'recover' : 'drill';
    case 'restore':
      return request.inPlace === true ? 'restore-in-place' : 'restore';
    case 'backup':
    case 'verify':
    case 'doctor':
    case 'prune':
    case 'snapshots':
    case 'archive':
      return kind;
  }
}
