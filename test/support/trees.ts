/** Builds test trees and compares them entry by entry: type, mode, mtime, size, content, link target. */
import { createHash, randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, utimesSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join, relative } from 'node:path';

export interface Entry {
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  mtimeMs?: number;
  size?: number;
  sha256?: string;
  target?: string;
}

export function describeTree(root: string): Record<string, Entry> {
  const entries: Record<string, Entry> = {};
  const walk = (path: string) => {
    const stat = lstatSync(path);
    const key = relative(root, path) || '.';
    if (stat.isSymbolicLink()) {
      entries[key] = { type: 'symlink', mode: stat.mode & 0o7777, target: readlinkSync(path) };
    } else if (stat.isDirectory()) {
      // Folder mtimes change when restic writes into them on some systems: compare modes only.
      entries[key] = { type: 'dir', mode: stat.mode & 0o7777 };
      for (const name of readdirSync(path)) walk(join(path, name));
    } else {
      entries[key] = { type: 'file', mode: stat.mode & 0o7777, mtimeMs: Math.floor(stat.mtimeMs), size: stat.size, sha256: createHash('sha256').update(readFileSync(path)).digest('hex') };
    }
  };
  walk(root);
  return entries;
}

/** Random, incompressible bytes written in 1 MiB blocks. */
export function writeRandomFile(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  try {
    for (let written = 0; written < bytes; written += 1 << 20) writeSync(fd, randomBytes(Math.min(1 << 20, bytes - written)));
  } finally {
    closeSync(fd);
  }
}

/** A deployment folder with the awkward cases a restore must keep. */
export function writeAwkwardTree(root: string, options: { bigFileBytes: number }): void {
  const file = (path: string, content: string | Buffer, mode = 0o644) => {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content, { mode });
  };
  file('applications/Société Générale/Ingénieur Données/CV.md', '# CV — Ingénieur Données\n');
  file('applications/Société Générale/Ingénieur Données/cover letter (final).txt', 'Madame, Monsieur,\n');
  file('applications/日本企業/エンジニア/dossier.txt', '会社の調査\n');
  file('applications/Acme Corp/Platform Engineer/contact_list.json', '[{"name":"Zoë"}]\n');
  file('applications/Acme Corp/Platform Engineer/empty.txt', '');
  mkdirSync(join(root, 'applications/Acme Corp/Platform Engineer/CV_PDF/empty folder'), { recursive: true });
  writeRandomFile(join(root, 'applications/Acme Corp/Platform Engineer/CV_PDF/big.pdf'), options.bigFileBytes);
  file('master-cv.md', '# Master CV\n');
  file('.env', 'OPENAI_API_KEY=sk-test-value-that-must-not-leak\nexport MONGODB_URI=mongodb://user:pw@host/db\n# comment\n', 0o600);
  file('credentials/google.json', '{"private_key":"-----BEGIN PRIVATE KEY-----"}\n', 0o600);
  symlinkSync('../master-cv.md', join(root, 'applications/latest-cv.md'));
  symlinkSync('/etc/hostname', join(root, 'applications/outside-link'));
  utimesSync(join(root, 'master-cv.md'), new Date('2024-02-29T12:34:56Z'), new Date('2024-02-29T12:34:56Z'));
  utimesSync(join(root, 'applications/Société Générale/Ingénieur Données/CV.md'), new Date('2023-01-01T00:00:00Z'), new Date('2023-01-01T00:00:00Z'));
}
