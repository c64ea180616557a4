// The worker as `backupctl worker` runs it (bin/backupctl.js): tsx registered in the main thread
// only, so the workflow thread (the prebuilt bundle) does not load it, as `--import tsx` on the
// command line would make it (worker threads inherit the command line's flags).
import { createRequire } from 'node:module';
import process from 'node:process';

const require = createRequire(import.meta.url);
require('tsx/cjs');
require('../src/worker.ts').main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
