/**
 * Every `patched()` and `deprecatePatch()` id in the workflow code, where it is, the day it was
 * added (the first commit whose src/workflows held it) and when the rule in docs/architecture.md
 * ("Retiring a patch") lets it be deprecated and then removed.
 *
 *   npx tsx scripts/patches.ts [--json]
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = join(__dirname, '..');
const WORKFLOWS = join(ROOT, 'src', 'workflows');
/** No run lives longer than this once a patch is in every worker (a backup waits at most 6 h for its repository, a drill 4 h per manual step); the ledger's run lives until 5,000 events, so a ledger patch also waits for its continue-as-new (docs/architecture.md, "Retiring a patch"). */
export const DEPRECATE_AFTER_DAYS = 14;
/** deprecatePatch() stays one more release: workers that replay the old marker still meet it. */
export const REMOVE_AFTER_DAYS = 28;

export interface PatchUse {
  id: string;
  kind: 'patched' | 'deprecatePatch';
  file: string;
  line: number;
}

export interface PatchInventoryEntry {
  id: string;
  state: 'patched' | 'deprecated';
  uses: string[];
  /** YYYY-MM-DD of the first commit that held the id in src/workflows; undefined when not committed yet. */
  added?: string;
  deprecateFrom?: string;
  removeFrom?: string;
}

/** The ids in the workflow code: string literals, or constants defined in src/workflows as `export const X = '…'`. */
export function patchUses(folder = WORKFLOWS): PatchUse[] {
  const files = readdirSync(folder).filter((f) => f.endsWith('.ts'));
  const sources = files.map((file) => ({ file: join(folder, file), text: readFileSync(join(folder, file), 'utf8') }));
  const constants = new Map<string, string>();
  for (const { text } of sources) for (const m of text.matchAll(/(?:export )?const ([A-Z][A-Z0-9_]+) = '([a-z0-9-]+)';/g)) constants.set(m[1]!, m[2]!);
  const uses: PatchUse[] = [];
  for (const { file, text } of sources) {
    text.split('\n').forEach((line, index) => {
      if (/^(\/\/|\/\*|\*)/.test(line.trim())) return;
      for (const m of line.matchAll(/\b(patched|deprecatePatch)\((?:'([a-z0-9-]+)'|([A-Z][A-Z0-9_]+))\)/g)) {
        const id = m[2] ?? constants.get(m[3]!);
        if (!id) throw new Error(`${relative(ROOT, file)}:${index + 1}: ${m[0]} names no constant of src/workflows with a string value`);
        uses.push({ id, kind: m[1] as PatchUse['kind'], file: relative(ROOT, file), line: index + 1 });
      }
    });
  }
  return uses;
}

function firstCommitDay(id: string): string | undefined {
  try {
    const out = execFileSync('git', ['log', '--reverse', '--format=%cs', `-S'${id}'`, '--', 'src/workflows'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.split('\n').find(Boolean);
  } catch {
    return undefined;
  }
}

const plusDays = (day: string, days: number): string => new Date(Date.parse(`${day}T00:00:00Z`) + days * 86_400_000).toISOString().slice(0, 10);

export function patchInventory(): PatchInventoryEntry[] {
  const byId = new Map<string, PatchUse[]>();
  for (const use of patchUses()) byId.set(use.id, [...(byId.get(use.id) ?? []), use]);
  return [...byId.entries()].map(([id, uses]) => {
    const added = firstCommitDay(id);
    return {
      id, state: uses.every((u) => u.kind === 'deprecatePatch') ? 'deprecated' : 'patched', uses: uses.map((u) => `${u.file}:${u.line}`),
      ...(added ? { added, deprecateFrom: plusDays(added, DEPRECATE_AFTER_DAYS), removeFrom: plusDays(added, REMOVE_AFTER_DAYS) } : {}),
    } satisfies PatchInventoryEntry;
  }).sort((a, b) => (a.added ?? '9999').localeCompare(b.added ?? '9999') || a.id.localeCompare(b.id));
}

if (require.main === module) {
  const inventory = patchInventory();
  if (process.argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify(inventory, null, 2)}\n`);
  } else {
    const today = new Date().toISOString().slice(0, 10);
    const rows = inventory.map((p) => {
      const due = !p.added ? 'not committed yet' : p.state === 'deprecated' ? (today >= p.removeFrom! ? `remove now (from ${p.removeFrom})` : `remove from ${p.removeFrom}`) : today >= p.deprecateFrom! ? `deprecatePatch now (from ${p.deprecateFrom})` : `deprecatePatch from ${p.deprecateFrom}`;
      return [p.id, p.state, p.added ?? '-', due, p.uses.join(', ')];
    });
    const header = ['patch', 'state', 'added', 'next step', 'where'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const row of [header, ...rows]) process.stdout.write(`${row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')}\n`);
  }
}
