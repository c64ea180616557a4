/**
 * `npm run bench` (fourth part; alone: `npx tsx bench/scale.ts [--quick] [--runs N]`)
 *
 * Many files: trees of the applications shape with 10× more files each (20,000 and 200,000;
 * --quick: 2,000 and 20,000; PDFs from 2 KiB so 200,000 files fit in about 1 GiB), backed up
 * through the service (the worker in its own process, as bench/run.ts does): a first backup,
 * then per round 1% of the files changed and a backup with nothing changed. For each size: the
 * worker's peak memory (VmHWM, reset before the size's first backup) against 300 MB, the
 * number of events in the backup workflow's history and its repository child's (expected
 * constant in the number of files), and restic alone on the same tree for reference.
 *
 * Output: bench/scale.md (scale-quick.md with --quick) and the matching .json.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../src/servers/binaries';
import { describeOtherCpu, describeSource, f2, gib, log, machine, mb, median, ratio, seconds, sourceState, thousands, startBenchPart } from './common';
import { loadTree, mutate, restoreTree, type Tree } from './generate';
import { startHarness, warmPageCache, type Harness } from './harness';
import type { BackupMeasure } from './history';
import { directBackup } from './restic-direct';

const PDF_MIN = 2 * 1024;
const MEMORY_GOAL = 300e6;

interface SizeResult {
  tree: { key: string; files: number; bytes: number };
  first: BackupMeasure;
  incremental: BackupMeasure[];
  unchanged: BackupMeasure[];
  changedFiles: number;
  /** The worker's VmHWM over this size's backups (reset before them). */
  workerPeak: number;
  hwmReset: boolean;
  direct: { first: number; incremental: number; unchanged: number };
}

async function measureSize(h: Harness, tree: Tree, rounds: number): Promise<SizeResult> {
  const service = h.service!;
  warmPageCache(tree.root, tree.specs.map((s) => s.path));
  const label = `${tree.files}`;
  const hwmReset = service.resetPeak();
  const repo = await h.freshRepository(tree.root, `scale-${tree.files}`);
  log(`${label} files: first backup through the service`);
  const first = await service.backup(`scale-${label}-first`, repo, 0);
  log(`${label} files: first ${f2(first.wall)} s, history ${first.historyEvents.backup} + ${first.historyEvents.repository} events`);
  const incremental: BackupMeasure[] = [];
  const unchanged: BackupMeasure[] = [];
  let changedFiles = 0;
  try {
    for (let round = 1; round <= rounds; round++) {
      // Not restored between rounds: each round's 1% is all that changed since the last snapshot.
      changedFiles = mutate(tree, 0.01, 100 + round).paths.length;
      incremental.push(await service.backup(`scale-${label}-incremental`, repo, round));
      unchanged.push(await service.backup(`scale-${label}-unchanged`, repo, round));
      log(`${label} files round ${round}: 1% changed ${f2(incremental.at(-1)!.wall)} s, nothing changed ${f2(unchanged.at(-1)!.wall)} s`);
    }
  } finally {
    restoreTree(tree);
  }
  const workerPeak = service.peak();
  await h.dropRepository(repo);

  log(`${label} files: restic alone for reference`);
  const directRepo = await h.freshRepository(tree.root, `scale-direct-${tree.files}`);
  const env = { ...h.env, RESTIC_CACHE_DIR: h.resticCache };
  const once = async (): Promise<number> => (await directBackup({ bin: h.restic.path, repository: directRepo.repository, env, root: tree.root })).seconds;
  const directFirst = await once();
  const directUnchanged = await once();
  mutate(tree, 0.01, 101);
  let directIncremental: number;
  try {
    directIncremental = await once();
  } finally {
    restoreTree(tree);
  }
  await h.dropRepository(directRepo);
  return { tree: { key: tree.key, files: tree.files, bytes: tree.bytes }, first, incremental, unchanged, changedFiles, workerPeak, hwmReset, direct: { first: directFirst, incremental: directIncremental, unchanged: directUnchanged } };
}

async function main(): Promise<void> {
  const { started, quick, rounds, commandLine, releaseLock, loadAtStart, otherCpu } = startBenchPart('bench/scale.ts');
  // 10× the files, 10× the bytes: about 5 KiB a file either way.
  const sizes = quick ? [{ files: 2_000, bytes: 2 ** 30 / 100 }, { files: 20_000, bytes: 2 ** 30 / 10 }] : [{ files: 20_000, bytes: 2 ** 30 / 10 }, { files: 200_000, bytes: 2 ** 30 }];
  const trees = sizes.map((s) => loadTree({ files: s.files, bytes: Math.round(s.bytes), pdfMinBytes: PDF_MIN, log }));
  let harness: Harness | undefined;
  try {
    harness = await startHarness({ service: true, workerSourceRoot: trees[0]!.root });
    const h = harness;
    const results: SizeResult[] = [];
    for (const tree of trees) results.push(await measureSize(h, tree, rounds));
    const memory = h.service!.memory();
    const totalSeconds = seconds(performance.now() - started);
    const source = sourceState();
    const other = otherCpu();

    const lines: string[] = [];
    lines.push(`# Scale: many files through the service${quick ? ' (quick)' : ''}`);
    lines.push('');
    lines.push(`One run; first backup once per size, then ${rounds} round(s) of (1% changed, nothing changed), medians. Command: \`${commandLine}\`; ${(totalSeconds / 60).toFixed(1)} min.`);
    lines.push('');
    const head = ['| | ', ...results.map((r) => `${thousands(r.tree.files)} files (${gib(r.tree.bytes)}) | `)].join('');
    lines.push(head.trimEnd());
    lines.push(`|---|${results.map(() => '---:|').join('')}`);
    const row = (label: string, cell: (r: SizeResult) => string): void => {
      lines.push(`| ${label} | ${results.map(cell).join(' | ')} |`);
    };
    const med = (list: BackupMeasure[], pick: (b: BackupMeasure) => number): number => median(list.map(pick));
    row('first backup (s)', (r) => f2(r.first.wall));
    row('1% changed (s)', (r) => `${f2(med(r.incremental, (b) => b.wall))} (${thousands(r.changedFiles)} files)`);
    row('nothing changed (s)', (r) => f2(med(r.unchanged, (b) => b.wall)));
    row('*restic alone: first / 1% / nothing changed (s)*', (r) => `${f2(r.direct.first)} / ${f2(r.direct.incremental)} / ${f2(r.direct.unchanged)}`);
    row('service ÷ restic alone: first / 1% / nothing changed', (r) => `${ratio(r.first.wall, r.direct.first)} / ${ratio(med(r.incremental, (b) => b.wall), r.direct.incremental)} / ${ratio(med(r.unchanged, (b) => b.wall), r.direct.unchanged)}`);
    row('files/s, first backup', (r) => thousands(r.tree.files / r.first.wall));
    row('Temporal overhead first / 1% / nothing changed (s)', (r) => `${f2(r.first.overhead)} / ${f2(med(r.incremental, (b) => b.overhead))} / ${f2(med(r.unchanged, (b) => b.overhead))}`);
    row('wall time outside restic (wall − all restic processes) first / 1% / nothing changed (s)', (r) => `${f2(r.first.wall - r.first.resticTotal)} / ${f2(med(r.incremental, (b) => b.wall - b.resticTotal))} / ${f2(med(r.unchanged, (b) => b.wall - b.resticTotal))}`);
    const backupSource = (pick: (a: BackupMeasure['activities'][number]) => number) => (b: BackupMeasure): number => b.activities.filter((a) => a.name === 'backupSource').reduce((sum, a) => sum + pick(a), 0);
    const before = backupSource((a) => a.beforeRestic);
    const after = backupSource((a) => a.afterRestic);
    row('… of which `backupSource` before restic starts (the manifest walk over every file and folder) first / 1% / nothing changed (s)', (r) => `${f2(before(r.first))} / ${f2(med(r.incremental, before))} / ${f2(med(r.unchanged, before))}`);
    row('… of which `backupSource` after restic ends first / 1% / nothing changed (s)', (r) => `${f2(after(r.first))} / ${f2(med(r.incremental, after))} / ${f2(med(r.unchanged, after))}`);
    row('`restic backup` process first / 1% / nothing changed (s)', (r) => `${f2(r.first.resticBackupProcess)} / ${f2(med(r.incremental, (b) => b.resticBackupProcess))} / ${f2(med(r.unchanged, (b) => b.resticBackupProcess))}`);
    row('**history events: backup workflow** (first / 1% / nothing changed)', (r) => `${r.first.historyEvents.backup} / ${med(r.incremental, (b) => b.historyEvents.backup)} / ${med(r.unchanged, (b) => b.historyEvents.backup)}`);
    row('**history events: repository child** (first / 1% / nothing changed)', (r) => `${r.first.historyEvents.repository} / ${med(r.incremental, (b) => b.historyEvents.repository)} / ${med(r.unchanged, (b) => b.historyEvents.repository)}`);
    row(`**worker peak memory** (VmHWM over this size's backups) vs. ${MEMORY_GOAL / 1e6} MB`, (r) => `${mb(r.workerPeak)}: ${r.workerPeak < MEMORY_GOAL ? 'under' : '**over**'}${r.hwmReset ? '' : ' (HWM not reset: lifetime value)'}`);
    row('restic peak RSS, first / 1% (GNU time)', (r) => `${(r.first.resticPeakRssKb / 1024).toFixed(0)} / ${(Math.max(...r.incremental.map((b) => b.resticPeakRssKb)) / 1024).toFixed(0)} MiB`);
    lines.push('');
    const events = results.map((r) => r.first.historyEvents.backup + r.first.historyEvents.repository);
    lines.push(`History length: ${results.map((r, i) => `${events[i]} events at ${thousands(r.tree.files)} files`).join(', ')}: ${new Set(events).size === 1 ? 'constant in the number of files' : '**not constant**'}. Worker memory over the whole run: VmHWM at start-up ${mb(memory.startupHwm)}, highest 100 ms RSS sample ${mb(memory.sampledWorkerPeak)}, worker + restic children ${mb(memory.sampledTotalPeak)}; goal < ${MEMORY_GOAL / 1e6} MB for the worker: ${Math.max(memory.startupHwm, ...results.map((r) => r.workerPeak)) < MEMORY_GOAL ? 'met' : '**not met**'}.`);
    lines.push('');
    lines.push('## Set-up');
    lines.push('');
    lines.push(`- Trees: the applications shape (bench/generate.ts) with PDFs of ${PDF_MIN / 1024} KiB and up: ${results.map((r) => `\`${r.tree.key}\``).join(', ')}. The 1% rounds are not undone between rounds, so each backup sees only that round's files changed; the tree is put back at the end.`);
    lines.push('- Service path as in bench/run.ts: MinIO and the Temporal dev server on loopback, the worker in its own process (memory probe preloaded), `backupWorkflow` through the client, a fresh repository per size, retention after each backup. restic alone: the service\'s flags, another fresh repository, first / nothing changed / 1% changed.');
    lines.push(`- restic ${h.versions.restic}, MinIO ${h.versions.minio}, Temporal CLI ${h.versions.temporal}, Node ${process.version}. Machine: ${machine()}; load average at start ${loadAtStart}; ${describeOtherCpu(other)}. Code measured: ${describeSource(source)}. Date: ${new Date().toISOString()}.`);
    const report = lines.join('\n');
    const out = join(repoRoot(), 'bench', quick ? 'scale-quick' : 'scale');
    process.stdout.write(`${report}\n`);
    writeFileSync(`${out}.md`, `${report}\n`);
    writeFileSync(`${out}.json`, `${JSON.stringify({ rounds, quick, source, loadAtStart, otherCpu: other, totalSeconds, versions: h.versions, memory, results }, null, 2)}\n`);
    log(`wrote ${out}.md; total ${f2(totalSeconds)} s`);
  } finally {
    for (const tree of trees) restoreTree(tree);
    await harness?.close();
    releaseLock();
  }
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
