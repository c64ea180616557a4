// Lint rules that keep workflow code deterministic and promises handled.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const nodeBuiltins = builtinModules.flatMap((name) => [name, `node:${name}`]);
// Packages that do I/O: importing their values into a workflow breaks replay.
const ioPackages = ['@aws-sdk/*', 'mongodb', 'pg', 'pino', 'pino-pretty', 'yaml', '@temporalio/client', '@temporalio/worker', '@temporalio/activity', 'commander'];

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', '.cache/**', '.data/**', 'bin/**', 'tools/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // node:test's test()/describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', name: ['test', 'it', 'describe', 'suite'], package: 'node:test' }] }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', {
        paths: nodeBuiltins.map((name) => ({ name, message: 'Workflow code must not use Node built-ins: move the side effect into an activity.' })),
        patterns: [{ group: ioPackages, message: 'Workflow code must not import I/O packages (only `import type`): move it into an activity.', allowTypeImports: true },
          { group: ['**/activities/*', '!**/activities/index'], message: 'Workflows see activities only through `import type` of the factory.', allowTypeImports: true }],
      }],
      'no-restricted-globals': ['error',
        { name: 'setInterval', message: 'Use the workflow sleep() or condition().' },
        { name: 'process', message: 'Workflow code must not read the process.' },
        { name: 'require', message: 'Workflow code must not load modules at run time.' }],
      'no-restricted-properties': ['error',
        { object: 'Date', property: 'now', message: 'Date.now() is replaced by the SDK, but say what you mean: use workflowInfo() or an activity.' },
        { object: 'Math', property: 'random', message: 'Use uuid4() from @temporalio/workflow.' }],
    },
  },
);
