/** Runs ssh-keygen with data on standard input; the one place that spawns it. */
import { spawn } from 'node:child_process';
import { SigningFailed } from './errors';

export interface SshKeygenResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runSshKeygen(args: string[], input: string, bin = process.env.SSH_KEYGEN_BIN || 'ssh-keygen'): Promise<SshKeygenResult> {
  return new Promise((resolve, reject) => {
    // A minimal environment: the agent's socket (a key held by ssh-agent), nothing else of ours.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, SSH_AUTH_SOCK: process.env.SSH_AUTH_SOCK };
    const child = spawn(bin, args, { env, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.on('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'ENOENT'
        ? new SigningFailed(`${bin} is not installed (OpenSSH's ssh-keygen signs and verifies operators' requests)`, 'install openssh-client (ssh-keygen 8.2 or later), or set SSH_KEYGEN_BIN to its path')
        : error);
    });
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.on('error', () => { /* ssh-keygen exited before reading all: its exit code says why */ });
    child.stdin.end(input);
  });
}
