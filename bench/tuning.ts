/**
 * `npm run bench` (second part; alone: `npx tsx bench/tuning.ts [--quick] [--runs N]`)
 *
 * restic's own knobs, measured with the restic CLI directly (the way bench/run.ts's reference
 * rows call it: the service's flags and environment), each variant into a fresh repository on
 * the same MinIO: a first backup, then the same 1% of the files changed (the same files for
 * every variant of a round). Variants alternate within a round, and each round starts at
 * another variant, so drift on this shared machine spreads over all of them.
 *
 * - on the applications tree (bench/generate.ts): default, `--no-scan`, `--pack-size` 32 and
 *   64 MiB, `--read-concurrency` 4 and 8, `--compression off`;
 * - compression `auto` against `off` on a tree of random bytes (already compressed data) and on
 *   a tree of prose (compressible).
 *
 * Output: bench/tuning.md (tuning-quick.md with --quick) and the matching .json.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../src/servers/binaries';
import { bucketUsage, describeOtherCpu, describeSource, f1, f2, gib, log, machine, mb, median, ratio, seconds, sourceState, stats, startBenchPart } from './common';
import { DEFAULT_BYTES, DEFAULT_FILES, loadTree, mutate, restoreTree, type Tree } from './generate';
import { startHarness, warmPageCache, type Harness } from './harness';
import { directBackup } from './restic-direct';
import { readResticCalls } from './worker-process';

interface Variant {
  id: string;
  label: string;
  /** Before the sub-command (repository-wide options). */
  globalArgs: string[];
  backupArgs: string[];
}

const DEFAULT: Variant = { id: 'default', label: 'default (`--pack-size` 16 MiB, `--read-concurrency` 2, `--compression auto`)', globalArgs: [], backupArgs: [] };
const COMPRESSION_OFF: Variant = { id: 'compression-off', label: '`--compression off`', globalArgs: ['--compression=off'], backupArgs: [] };

const APPLICATION_VARIANTS: Variant[] = [
  DEFAULT,
  { id: 'no-scan', label: '`--no-scan`', globalArgs: [], backupArgs: ['--no-scan'] },
  { id: 'pack-32', label: '`--pack-size 32`', globalArgs: ['--pack-size=32'], backupArgs: [] },
  { id: 'pack-64', label: '`--pack-size 64`', globalArgs: ['--pack-size=64'], backupArgs: [] },
  { id: 'read-4', label: '`--read-concurrency 4`', globalArgs: [], backupArgs: ['--read-concurrency=4'] },
  { id: 'read-8', label: '`--read-concurrency 8`', globalArgs: [], backupArgs: ['--read-concurrency=8'] },
  COMPRESSION_OFF,
];

const COMPRESSION_VARIANTS: Variant[] = [{ ...DEFAULT, id: 'compression-auto', label: '`--compression auto` (default)' }, COMPRESSION_OFF];

interface VariantRun {
  variant: string;
  round: number;
  first: number;
  incremental: number;
  firstAdded: number;
  incrementalAdded: number;
  storedAfterFirst: number;
  packsAfterFirst: number;
  peakRssKb: number;
}

interface TreeResult {
  name: string;
  tree: { key: string; files: number; bytes: number; textBytes: number; pdfBytes: number };
  mutatedFiles: number;
  runs: VariantRun[];
}

async function measureTree(h: Harness, name: string, tree: Tree, variants: Variant[], rounds: number): Promise<TreeResult> {
  warmPageCache(tree.root, tree.specs.map((s) => s.path));
  const env = { ...h.env, RESTIC_CACHE_DIR: h.resticCache };
  const runs: VariantRun[] = [];
  let mutatedFiles = 0;
  for (let round = 1; round <= rounds; round++) {
    for (let k = 0; k < variants.length; k++) {
      const variant = variants[(k + round - 1) % variants.length]!;
      const repo = await h.freshRepository(tree.root, `tune-${variant.id}`);
      const callsBefore = readResticCalls(h.wrapper.logFile).length;
      // The wrapper logs each restic's peak RSS.
      const backup = () => directBackup({ bin: h.wrapper.path, repository: repo.repository, env, root: tree.root, globalArgs: variant.globalArgs, backupArgs: variant.backupArgs });
      const first = await backup();
      const usage = await bucketUsage(h.s3, repo.bucket);
      const changed = mutate(tree, 0.01, round);
      mutatedFiles = changed.paths.length;
      let incremental;
      try {
        incremental = await backup();
      } finally {
        restoreTree(tree);
      }
      const calls = readResticCalls(h.wrapper.logFile).slice(callsBefore).filter((c) => c.command === 'backup');
      runs.push({
        variant: variant.id, round, first: first.seconds, incremental: incremental.seconds,
        firstAdded: first.summary?.data_added ?? Number.NaN, incrementalAdded: incremental.summary?.data_added ?? Number.NaN,
        storedAfterFirst: usage.bytes, packsAfterFirst: usage.objects, peakRssKb: Math.max(0, ...calls.map((c) => c.maxRssKb)),
      });
      log(`${name} round ${round}: ${variant.id}: first ${f2(first.seconds)} s, 1% changed ${f2(incremental.seconds)} s, stored ${(usage.bytes / 1e6).toFixed(0)} MB`);
      await h.dropRepository(repo);
    }
  }
  return { name, tree: { key: tree.key, files: tree.files, bytes: tree.bytes, textBytes: tree.textBytes, pdfBytes: tree.pdfBytes }, mutatedFiles, runs };
}

/** A verdict only where the spread allows one: every run of the variant beats (or loses to) every run of the default. */
function verdict(variant: number[], reference: number[]): string {
  const m = median(variant) / median(reference);
  if (variant.length < 3) return m <= 0.95 ? 'faster (one run: not conclusive)' : m >= 1.05 ? 'slower (one run: not conclusive)' : 'same';
  if (m <= 0.95 && Math.max(...variant) < Math.min(...reference)) return `**helps** (${((1 - m) * 100).toFixed(0)}% less)`;
  if (m >= 1.05 && Math.min(...variant) > Math.max(...reference)) return `hurts (${((m - 1) * 100).toFixed(0)}% more)`;
  return 'no clear difference';
}

function table(result: TreeResult, variants: Variant[], referenceId: string): string[] {
  const of = (id: string) => result.runs.filter((r) => r.variant === id);
  const reference = of(referenceId);
  const lines = [
    '| variant | first backup (s) | min–max | ratio | verdict | 1% changed (s) | min–max | ratio | verdict | stored after first | restic peak RSS |',
    '|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|',
  ];
  for (const variant of variants) {
    const runs = of(variant.id);
    const first = stats(runs.map((r) => r.first));
    const incremental = stats(runs.map((r) => r.incremental));
    const refFirst = reference.map((r) => r.first);
    const refIncremental = reference.map((r) => r.incremental);
    const isReference = variant.id === referenceId;
    lines.push(`| ${variant.label} | ${f2(first.median)} | ${f2(first.min)}–${f2(first.max)} | ${isReference ? '1' : ratio(first.median, median(refFirst))} | ${isReference ? '' : verdict(runs.map((r) => r.first), refFirst)} | ${f2(incremental.median)} | ${f2(incremental.min)}–${f2(incremental.max)} | ${isReference ? '1' : ratio(incremental.median, median(refIncremental))} | ${isReference ? '' : verdict(runs.map((r) => r.incremental), refIncremental)} | ${(median(runs.map((r) => r.storedAfterFirst)) / 1e6).toFixed(0)} MB | ${(Math.max(...runs.map((r) => r.peakRssKb)) / 1024).toFixed(0)} MiB |`);
  }
  return lines;
}

async function main(): Promise<void> {
  const { started, quick, rounds, commandLine, releaseLock, loadAtStart, otherCpu } = startBenchPart('bench/tuning.ts');
  const applications = loadTree(quick ? { files: 2_000, bytes: 100 * 2 ** 20, log } : { files: DEFAULT_FILES, bytes: DEFAULT_BYTES, log });
  const compressedBytes = quick ? 32 * 2 ** 20 : 256 * 2 ** 20;
  const random = loadTree({ profile: 'random', files: quick ? 64 : 512, bytes: compressedBytes, log });
  const text = loadTree({ profile: 'text', files: quick ? 256 : 2_048, bytes: compressedBytes, log });
  let harness: Harness | undefined;
  try {
    harness = await startHarness({ service: false });
    const results = [
      await measureTree(harness, 'applications', applications, APPLICATION_VARIANTS, rounds),
      await measureTree(harness, 'random', random, COMPRESSION_VARIANTS, rounds),
      await measureTree(harness, 'text', text, COMPRESSION_VARIANTS, rounds),
    ];
    const totalSeconds = seconds(performance.now() - started);
    const source = sourceState();
    const other = otherCpu();
    const [apps, rnd, txt] = results as [TreeResult, TreeResult, TreeResult];
    const lines: string[] = [];
    lines.push(`# restic tuning on this machine${quick ? ' (quick)' : ''}`);
    lines.push('');
    lines.push(`Medians of ${rounds} round(s), restic CLI alone (the service's flags and environment), a fresh repository per variant and round, every variant on the same MinIO in one run. Command: \`${commandLine}\`; ${(totalSeconds / 60).toFixed(1)} min. Ratios are to the default; a verdict needs every run of the variant to beat (or lose to) every run of the default and a 5% difference.`);
    lines.push('');
    lines.push(`## The applications tree (${apps.tree.files} files, ${gib(apps.tree.bytes)}: ${(apps.tree.textBytes / 1e6).toFixed(0)} MB text, ${(apps.tree.pdfBytes / 1e6).toFixed(0)} MB PDFs of random bytes; ${apps.mutatedFiles} files changed for the incremental)`);
    lines.push('');
    lines.push(...table(apps, APPLICATION_VARIANTS, 'default'));
    lines.push('');
    lines.push(`## Compression on one kind of data at a time`);
    lines.push('');
    lines.push(`Random bytes (already compressed data): ${rnd.tree.files} files, ${mb(rnd.tree.bytes)}.`);
    lines.push('');
    lines.push(...table(rnd, COMPRESSION_VARIANTS, 'compression-auto'));
    lines.push('');
    lines.push(`Prose (compressible word salad, ${f1(txt.tree.bytes / Math.max(1, median(txt.runs.filter((r) => r.variant === 'compression-auto').map((r) => r.storedAfterFirst))))}× smaller with restic's zstd): ${txt.tree.files} files, ${mb(txt.tree.bytes)}.`);
    lines.push('');
    lines.push(...table(txt, COMPRESSION_VARIANTS, 'compression-auto'));
    lines.push('');
    lines.push('## Set-up');
    lines.push('');
    lines.push(`- restic ${harness.versions.restic}, MinIO ${harness.versions.minio} on loopback; restic defaults: \`--pack-size\` 16 MiB, \`--read-concurrency\` 2, \`--compression auto\` (repository format 2).`);
    lines.push('- Each run: `restic init` (untimed), `restic backup` of the tree (first), 1% of the files rewritten, `restic backup` again (incremental); the variant\'s options on both. "stored after first" is the bucket\'s size after the first backup (packs, index, keys). Peak RSS of restic from GNU time (max over runs). Every tree read once before its runs (page cache), `sync` before each timed backup.');
    lines.push(`- Machine: ${machine()}; load average at start ${loadAtStart}; ${describeOtherCpu(other)}. Code measured: ${describeSource(source)}. Date: ${new Date().toISOString()}.`);
    const report = lines.join('\n');
    const out = join(repoRoot(), 'bench', quick ? 'tuning-quick' : 'tuning');
    process.stdout.write(`${report}\n`);
    writeFileSync(`${out}.md`, `${report}\n`);
    writeFileSync(`${out}.json`, `${JSON.stringify({ rounds, quick, source, loadAtStart, otherCpu: other, totalSeconds, versions: harness.versions, results }, null, 2)}\n`);
    log(`wrote ${out}.md; total ${f2(totalSeconds)} s`);
  } finally {
    for (const tree of [applications, random, text]) restoreTree(tree);
    await harness?.close();
    releaseLock();
  }
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
