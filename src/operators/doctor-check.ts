/** doctor's row about people: who holds which role, and what nobody can do. From the config alone. */
import type { Config } from '../config/schema';
import type { CheckResult } from '../shared/doctor-types';
import { resolveOperators } from './directory';
import { ROLES, actionsOf } from './roles';

export function operatorsCheck(config: Pick<Config, 'operators'>, read?: (file: string) => string): CheckResult {
  const id = 'operators';
  const title = 'who may start what (operators and roles)';
  if (!config.operators) {
    return {
      id, title, ok: true, warning: true,
      detail: 'no operators: in the config: every request runs unsigned, so anyone who reaches Temporal can start a recover',
      fix: 'name the people and their roles (the workers then run only requests signed by an operator with the role each needs, and a recover waits for a second recoverer): backupctl operators add NAME --key ~/.ssh/id_ed25519.pub --role admin --role recoverer; meanwhile limit who reaches Temporal (each client its own certificate: docs/production.md)',
    };
  }
  const directory = resolveOperators(config.operators, read);
  const listed = directory.operators.map((o) => `${o.name} (${o.roles.join(', ')})`).join(', ');
  const gaps: string[] = [];
  // Every role may view: a missing viewer is no gap.
  for (const role of ROLES.filter((r) => r !== 'viewer')) {
    if (!directory.operators.some((o) => o.roles.includes(role) && o.keys.length > 0)) gaps.push(`no ${role} with a key: nobody can ${actionsOf(role).join(', ')}`);
  }
  const recoverers = directory.operators.filter((o) => o.roles.includes('recoverer') && o.keys.length > 0);
  if (recoverers.length === 1) gaps.push(`one recoverer (${recoverers[0]!.name}): a recover needs two recoverers (one starts it, another approves it), so no recover can run`);
  // allowedSignersFile is read here on this machine; the worker reads it on its own host.
  const problems = [...directory.problems, ...gaps];
  const wanted = [...new Set([...ROLES.filter((role) => gaps.some((gap) => gap.startsWith(`no ${role} `))), ...(recoverers.length === 1 ? ['recoverer'] : [])])];
  const enforced = 'the workers run only requests signed by an operator holding the role each needs; a recover needs two recoverers';
  if (problems.length === 0) return { id, title, ok: true, detail: `${listed}; ${enforced}` };
  return {
    id, title, ok: true, warning: true, detail: `${listed}; ${problems.join('; ')}`,
    fix: wanted.length > 0
      ? `give the roles to people: backupctl operators add NAME --key FILE.pub ${wanted.map((role) => `--role ${role}`).join(' ')}${recoverers.length <= 1 ? ' (a recover needs two recoverers: one starts it, another approves it)' : ''}`
      : 'correct the allowedSignersFile lines named above (git\'s allowed_signers format: NAME namespaces="backupctl" ssh-ed25519 AAAA…)',
  };
}
