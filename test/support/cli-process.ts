/** The CLI in its own process, as a person runs it, with only the TEMPORAL_* variables a test gives it. */
import { spawn } from 'node:child_process';

export interface CliRun { code: number | null; stdout: string; stderr: string }

/** The environment without any TEMPORAL_* variable (TLS, API key, address) of the caller's. */
export function withoutTemporalVariables(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('TEMPORAL_')));
}

/** `backupctl --config <configFile> ...args`, its environment this process's less TEMPORAL_*, plus `env`. */
export function runCli(configFile: string, args: string[], env: Record<string, string>): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/backupctl.js', '--config', configFile, ...args], {
      env: { ...withoutTemporalVariables(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
