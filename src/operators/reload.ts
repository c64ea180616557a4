/**
 * The worker's current operators: read again from its config file at each verification, so that a
 * key removed (`backupctl operators remove`) or a role taken away counts from the next request,
 * without a restart. What changed is reported once (the worker audits it). A file that no longer
 * parses, names another deployment, or drops `operators:` altogether keeps the last good list:
 * turning signed requests off takes a restart, so an edit cannot do it by accident.
 */
import { createHash } from 'node:crypto';
import { loadConfig } from '../config/load';
import type { Config } from '../config/schema';

export type OperatorsView = Pick<Config, 'operators' | 'signatures'>;

export interface OperatorsChange {
  added: string[];
  removed: string[];
  /** Operators whose keys or roles changed. */
  changed: string[];
}

export interface OperatorsReload {
  current: OperatorsView;
  /** Set the first time a reload sees a different list. */
  change?: OperatorsChange;
  /** Why the file's list was not taken (the last good one is kept). */
  problem?: string;
}

function digest(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value ?? null)).digest('hex');
}

export function compareOperators(before: Config['operators'], after: Config['operators']): OperatorsChange | undefined {
  const old = before ?? {};
  const now = after ?? {};
  const added = Object.keys(now).filter((name) => !(name in old));
  const removed = Object.keys(old).filter((name) => !(name in now));
  const changed = Object.keys(now).filter((name) => name in old && digest(old[name]) !== digest(now[name]));
  return added.length + removed.length + changed.length > 0 ? { added, removed, changed } : undefined;
}

/** Returns a reader of the file's operators, starting from those the worker was started with. */
export function operatorsReloader(configPath: string, started: Config, read: (path: string) => Config = (path) => loadConfig(path, { checkEnv: false })): () => OperatorsReload {
  let current: OperatorsView = { operators: started.operators, signatures: started.signatures };
  return () => {
    let fresh: Config;
    try {
      fresh = read(configPath);
    } catch (error) {
      return { current, problem: `${configPath} cannot be read as a config now (${(error as Error).message.split('\n')[0]}): the operators loaded before stay in force` };
    }
    if (fresh.deployment !== started.deployment) return { current, problem: `${configPath} now names deployment ${fresh.deployment}, not ${started.deployment}: the operators loaded before stay in force` };
    if (current.operators && !fresh.operators) return { current, problem: `${configPath} no longer names operators: turning signed requests off takes a worker restart; the operators loaded before stay in force` };
    const change = compareOperators(current.operators, fresh.operators);
    current = { operators: fresh.operators, signatures: fresh.signatures };
    return change ? { current, change } : { current };
  };
}
