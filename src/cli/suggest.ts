/** "did you mean …?" for a misspelt policy, source or repository name: checked before the CLI connects to Temporal. */
import { closestName } from '../shared/names';
import { UsageError } from './errors';

/** Throws a UsageError (exit 2) naming the known ones and the closest, unless `name` is one of them. */
export function checkName(kind: 'policy' | 'source' | 'repository' | 'archive', name: string, known: readonly string[], configFile: string): void {
  if (known.includes(name)) return;
  const closest = closestName(name, known);
  throw new UsageError(`no ${kind} named "${name}" in ${configFile} (known: ${known.join(', ') || 'none'})${closest ? `; did you mean "${closest}"?` : ''}`);
}
