/**
 * The patch inventory (issue 20, patches retired on a plan): every patched() id in the workflow
 * code is found (also through constants), dated by its first commit, and listed in
 * docs/architecture.md's "Retiring a patch" table, which names no id the code no longer has.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEPRECATE_AFTER_DAYS, patchInventory, patchUses } from '../scripts/patches';

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

test('docs/architecture.md lists exactly the patches the code has, each with its plan', () => {
  const doc = readFileSync(join(__dirname, '..', 'docs', 'architecture.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Retiring a patch'), doc.indexOf('## Dependencies and why'));
  const listed = new Set([...section.matchAll(/^\| `([a-z0-9-]+)` \|/gm)].map((m) => m[1]!));
  const inCode = new Set(patchUses().map((u) => u.id));
  assert.deepEqual([...inCode].filter((id) => !listed.has(id)), [], 'patches in the code without a retirement plan in docs/architecture.md');
  assert.deepEqual([...listed].filter((id) => !inCode.has(id)), [], 'patches listed in docs/architecture.md that the code no longer has');
});
