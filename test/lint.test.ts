import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ESLint } from 'eslint';

const eslint = new ESLint({ cwd: process.cwd() });

async function ruleIdsFor(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).map((m) => m.ruleId ?? m.message);
}

describe('the lint rules that keep workflows deterministic', () => {
  const probe = 'src/workflows/doctor.ts';

  test('a Node built-in imported into a workflow is an error', async () => {
    assert.ok((await ruleIdsFor("import { readFileSync } from 'node:fs';\nexport const x = readFileSync;\n", probe)).includes('@typescript-eslint/no-restricted-imports'));
    assert.ok((await ruleIdsFor("import * as path from 'path';\nexport const x = path;\n", probe)).includes('@typescript-eslint/no-restricted-imports'));
  });

  test('an I/O package imported as a value into a workflow is an error, as a type it is allowed', async () => {
    assert.ok((await ruleIdsFor("import { MongoClient } from 'mongodb';\nexport const x = MongoClient;\n", probe)).includes('@typescript-eslint/no-restricted-imports'));
    assert.deepEqual(await ruleIdsFor("import type { MongoClient } from 'mongodb';\nexport type X = MongoClient;\n", probe), []);
  });

  test('Math.random and Date.now in a workflow are errors', async () => {
    const ids = await ruleIdsFor('export const a = Math.random();\nexport const b = Date.now();\n', probe);
    assert.equal(ids.filter((id) => id === 'no-restricted-properties').length, 2);
  });

  test('a floating promise is an error anywhere', async () => {
    const ids = await ruleIdsFor('async function work(): Promise<void> {}\nexport function run(): void {\n  work();\n}\n', 'src/cli/table.ts');
    assert.ok(ids.includes('@typescript-eslint/no-floating-promises'), ids.join(','));
  });

  test('the same Node import outside src/workflows is allowed', async () => {
    assert.deepEqual(await ruleIdsFor("import { readFileSync } from 'node:fs';\nexport const x = readFileSync;\n", 'src/cli/table.ts'), []);
  });
});
