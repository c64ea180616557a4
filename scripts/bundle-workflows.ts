/**
 * Bundles the workflow code into one file (argument: where to write it). The worker runs this in
 * a child process, so webpack's memory is never part of the long-lived worker.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { bundleWorkflowCode } from '@temporalio/worker';

async function main(): Promise<void> {
  const out = process.argv[2];
  if (!out) throw new Error('usage: bundle-workflows.ts <output file>');
  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('../src/workflows') });
  writeFileSync(`${out}.tmp-${process.pid}`, code);
  renameSync(`${out}.tmp-${process.pid}`, out);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
