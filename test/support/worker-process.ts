/** A worker in its own process (src/worker.ts), so a test can SIGKILL it like a crashed host. */
import { spawn, type ChildProcess } from 'node:child_process';
import { hostname } from 'node:os';
import { testServers, waitFor } from './harness';

export interface WorkerProcess {
  child: ChildProcess;
  output(): string;
  kill(signal: NodeJS.Signals): Promise<void>;
}

/**
 * `as`: run the worker as another (unprivileged) user, as a production worker would.
 * `entry`: `src/worker.ts` (npm run worker) or the CLI's `backupctl worker`; both must behave alike.
 */
export async function startWorkerProcess(configFile: string, env: Record<string, string>, as?: { uid: number; gid: number }, entry: 'npm run worker' | 'backupctl worker' = 'npm run worker'): Promise<WorkerProcess> {
  const servers = testServers();
  let output = '';
  const args = entry === 'npm run worker' ? ['--import', 'tsx', 'src/worker.ts'] : ['bin/backupctl.js', 'worker'];
  const child = spawn(process.execPath, args, {
    env: {
      ...process.env,
      BACKUP_CONFIG: configFile, BACKUP_HOST: hostname(), TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace,
      RESTIC_BIN: servers.resticBin, LOG_FORMAT: 'json', LOG_LEVEL: 'info', BACKUP_WORKFLOW_CACHE: '0',
      // The caller's variables last: a test may point its worker at another server or host.
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(as ? { uid: as.uid, gid: as.gid } : {}),
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor('the worker process to start polling', () => {
    if (child.exitCode !== null) throw new Error(`worker exited with ${child.exitCode}: ${output.slice(-2000)}`);
    return /"msg":"worker started"/.test(output);
  }, 60_000);
  return {
    child,
    output: () => output,
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
