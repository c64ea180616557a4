/**
 * The patch inventory (issue 20, patches retired on a plan): every patched() and deprecatePatch()
 * id in the workflow code is found (also through constants), dated by its first commit, and listed
 * in docs/architecture.md's "Retiring a patch" table at its stage and date, which names no id the
 * code no longer has.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEPRECATE_AFTER_DAYS, patchInventory, patchUses, REMOVE_AFTER_DAYS } from '../scripts/patches';

test('every patched() id in src/workflows is found, constants included, with the day it was added', () => {
  const uses = patchUses();
  const ids = new Set(uses.map((u) => u.id));
  // Through a constant (COPY_TO, WORKER_RESOLVES_PLANS) and as a literal.
  for (const id of ['copy-to', 'worker-resolves-plans', 'repository-queue', 'ledger-without-tick']) assert.ok(ids.has(id), id);
  assert.ok(uses.every((u) => /^src\/workflows\/[a-z-]+\.ts$/.test(u.file) && u.line > 0));
  const inventory = patchInventory();
  for (const entry of inventory.filter((e) => e.added)) {
    assert.match(entry.added!, /^\d{4}-\d{2}-\d{2}$/);
    assert.equal(Date.parse(entry.deprecateFrom!) - Date.parse(entry.added!), DEPRECATE_AFTER_DAYS * 86_400_000);
  }
  assert.equal(inventory.find((e) => e.id === 'ledger-without-tick')?.added, '2026-11-26');
});

test('the ledger\'s tick-era patches are deprecated: deprecatePatch() everywhere, patched() nowhere, removal from day 28', () => {
  const retired = ['ledger-operations', 'ledger-wakes-on-signal', 'ledger-without-tick'];
  const uses = patchUses().filter((u) => retired.includes(u.id));
  assert.deepEqual([...new Set(uses.map((u) => u.id))].sort(), retired);
  assert.ok(uses.every((u) => u.kind === 'deprecatePatch' && u.file === 'src/workflows/ledger.ts'), JSON.stringify(uses));
  const inventory = patchInventory();
  for (const id of retired) {
    const entry = inventory.find((e) => e.id === id)!;
    assert.equal(entry.state, 'deprecated', id);
    assert.equal(entry.removeFrom, '2026-12-24', id);
    assert.equal(Date.parse(entry.removeFrom!) - Date.parse(entry.added!), REMOVE_AFTER_DAYS * 86_400_000);
  }
  // A deprecation deletes the old branch everywhere at once: no id is both.
  const kinds = new Map<string, Set<string>>();
  for (const use of patchUses()) kinds.set(use.id, (kinds.get(use.id) ?? new Set()).add(use.kind));
  assert.deepEqual([...kinds].filter(([, k]) => k.size > 1).map(([id]) => id), [], 'ids both patched() and deprecatePatch()');
});

test('docs/architecture.md lists exactly the patches the code has, each at its stage and with the day it was added', () => {
  const doc = readFileSync(join(__dirname, '..', 'docs', 'architecture.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Retiring a patch'), doc.indexOf('## Dependencies and why'));
  // | `id` | added | … for a patched() id, | `id` (deprecated) | added | … for a deprecatePatch() one.
  const rows = [...section.matchAll(/^\| `([a-z0-9-]+)`( \(deprecated\))? \| ([^|]*) \|/gm)].map((m) => ({ id: m[1]!, deprecated: Boolean(m[2]), added: m[3]!.trim() }));
  assert.ok(rows.length >= 10, `rows read: ${rows.length}`);
  const listed = new Set(rows.map((r) => r.id));
  const inventory = patchInventory();
  const inCode = new Set(inventory.map((e) => e.id));
  assert.deepEqual([...inCode].filter((id) => !listed.has(id)), [], 'patches in the code without a retirement plan in docs/architecture.md');
  assert.deepEqual([...listed].filter((id) => !inCode.has(id)), [], 'patches listed in docs/architecture.md that the code no longer has');
  for (const entry of inventory) {
    const row = rows.find((r) => r.id === entry.id)!;
    assert.equal(row.deprecated, entry.state === 'deprecated', `${entry.id}: the code has it as ${entry.state}; the table says ${row.deprecated ? 'deprecated' : 'patched'}`);
    assert.match(row.added, /^\d{4}-\d{2}-\d{2}$/, `${entry.id}: the day it was added`);
    // Its first commit's day (none yet: unknown here); a day apart at most, for a row written the day before the commit.
    if (entry.added) assert.ok(Math.abs(Date.parse(row.added) - Date.parse(entry.added)) <= 86_400_000, `${entry.id}: added on ${entry.added} (its first commit), the table says ${row.added}`);
  }
});
