/**
 * `npm run bench` (fourth part; alone: `npx tsx bench/scale.ts [--quick] [--runs N]`)
 *
 * Many files: trees of the applications shape with PDFs from 2 KiB (small files, about 4-5 KiB
 * each): 20,000, 200,000 and 1,000,000 files (--quick: 2,000 and 20,000), backed up through the
 * service (the worker in its own process, as bench/run.ts does): a first backup, then per round
 * 1% of the files changed and a backup with nothing changed; 3 rounds, 1 at 1,000,000 files
 * (`--runs N` sets every size's). restic alone on the same tree (first, nothing changed, 1%
 * changed) gives each size's floor. For each size: the peak memory of a worker of its own (VmHWM,
 * reset after its warm-up, before the size's first backup), the restic processes one backup
 * costs, the events in the backup workflow's history and its repository child's (expected
 * constant in the number of files). The report's Goals table judges them.
 *
 * Trees are generated once and cached under .cache/bench/ (bench/generate.ts);
 * `npx tsx bench/scale.ts --generate-only [--quick]` only makes sure they are there (the
 * 1,000,000-file tree takes minutes), says how long that took and what they take on disk.
 *
 * Output: bench/scale.md (scale-quick.md with --quick) and the matching .json.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../src/servers/binaries';
import { describeOtherCpu, describeSource, f1, f2, gib, log, machine, mb, median, optionReader, ratio, seconds, sourceState, thousands, startBenchPart } from './common';
import { loadTreeAsync, mutate, restoreTree, treeCached, type Tree, type TreeOptions } from './generate';
import { startHarness, warmPageCache, type Harness } from './harness';
import type { BackupMeasure } from './history';
import { directBackup } from './restic-direct';

const PDF_MIN = 2 * 1024;
const MEMORY_GOAL = 300e6;
/** Service ÷ restic alone at the goal's sizes (200,000 files and more). */
const RATIO_GOAL = 1.1;
/** "Flat": the worker's peak at the largest size at most this much above the smallest's. */
const FLAT_GOAL = 20e6;
const GOAL_FILES = 200_000;

interface Size { files: number; bytes: number; rounds?: number }

/** About 5 KiB a file up to 200,000 files; 4 GiB at 1,000,000 (the text files alone are 3.3 GB). */
function sizesFor(quick: boolean): Size[] {
  return quick
    ? [{ files: 2_000, bytes: 2 ** 30 / 100 }, { files: 20_000, bytes: 2 ** 30 / 10 }]
    : [{ files: 20_000, bytes: 2 ** 30 / 10 }, { files: 200_000, bytes: 2 ** 30 }, { files: 1_000_000, bytes: 4 * 2 ** 30, rounds: 1 }];
}

const treeOptions = (size: Size): TreeOptions => ({ files: size.files, bytes: Math.round(size.bytes), pdfMinBytes: PDF_MIN, log });

/**
 * A rough forecast of the run, in seconds, from the 2026-11-26 run (restic alone at 200,004
 * files: 44 s first, 19 s for the later backups; the service's fixed cost per backup at 20,004
 * files) and the generator's speed (about 8,000 files/s here).
 */
function estimateSeconds(plan: { files: number; rounds: number; cached: boolean }[]): number {
  const perFile = { first: 0.23e-3, later: 0.1e-3, warm: 0.04e-3, generate: 0.13e-3 };
  const fixed = { harness: 40, worker: 12, service: 4, restic: 1.5 }; // worker: a start and a warm-up per size
  let total = fixed.harness;
  for (const { files, rounds, cached } of plan) {
    const first = files * perFile.first;
    const later = files * perFile.later;
    total += (cached ? 0 : files * perFile.generate) + files * perFile.warm + fixed.worker;
    total += fixed.service + first + rounds * 2 * (fixed.service + later); // the service
    total += 3 * fixed.restic + first + 2 * later; // restic alone
  }
  return total;
}

interface SizeResult {
  tree: { key: string; files: number; bytes: number };
  rounds: number;
  first: BackupMeasure;
  incremental: BackupMeasure[];
  unchanged: BackupMeasure[];
  changedFiles: number;
  /** The worker's VmHWM over this size's backups (reset before them). */
  workerPeak: number;
  hwmReset: boolean;
  /** The highest 100 ms RSS sample of the worker during this size's backups. */
  sampledPeak: number;
  warmSeconds: number;
  direct: { first: number; incremental: number; unchanged: number };
}

async function measureSize(h: Harness, tree: Tree, rounds: number): Promise<SizeResult> {
  const service = h.service!;
  const label = `${tree.files}`;
  const warmStarted = performance.now();
  warmPageCache(tree.root, tree.specs.map((s) => s.path));
  const warmSeconds = seconds(performance.now() - warmStarted);
  log(`${label} files: page cache warmed in ${f1(warmSeconds)} s`);
  const repo = await h.freshRepository(tree.root, `scale-${tree.files}`);
  await service.bind(repo); // a worker of its own for this size, warmed up
  const hwmReset = service.resetPeak();
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
      log(`${label} files round ${round}/${rounds}: 1% changed ${f2(incremental.at(-1)!.wall)} s, nothing changed ${f2(unchanged.at(-1)!.wall)} s`);
    }
  } finally {
    restoreTree(tree);
  }
  const workerPeak = service.peak();
  const phases = service.memory().phasePeaks;
  const sampledPeak = Math.max(0, ...Object.entries(phases).filter(([phase]) => phase.startsWith(`scale-${label}-`)).map(([, p]) => p.worker));
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
  log(`${label} files: restic alone ${f2(directFirst)} / ${f2(directIncremental)} / ${f2(directUnchanged)} s`);
  return {
    tree: { key: tree.key, files: tree.files, bytes: tree.bytes }, rounds, first, incremental, unchanged, changedFiles, workerPeak, hwmReset, sampledPeak, warmSeconds,
    direct: { first: directFirst, incremental: directIncremental, unchanged: directUnchanged },
  };
}

/** `npx tsx bench/scale.ts --generate-only [--quick]`: the trees into the cache, nothing measured. */
async function generateOnly(quick: boolean): Promise<void> {
  for (const size of sizesFor(quick)) {
    const options = treeOptions(size);
    const cached = treeCached(options);
    const started = performance.now();
    const tree = await loadTreeAsync(options);
    const took = seconds(performance.now() - started);
    const du = /^(\d+)/.exec(spawnSync('du', ['-s', '--block-size=1', tree.root], { encoding: 'utf8' }).stdout ?? '')?.[1];
    log(`${thousands(tree.files)} files, ${gib(tree.bytes)} of content, ${du ? gib(Number(du)) : '?'} on disk: ${cached ? `already cached (loaded in ${f1(took)} s)` : `generated in ${f1(took)} s`}: ${tree.root}`);
  }
}

/** The three backups of a size as "first / 1% / nothing changed", medians of the rounds. */
type Pick = (b: BackupMeasure) => number;
const med = (list: BackupMeasure[], pick: Pick): number => median(list.map(pick));
const triple = (r: SizeResult, pick: Pick): [number, number, number] => [pick(r.first), med(r.incremental, pick), med(r.unchanged, pick)];
const directTriple = (r: SizeResult): [number, number, number] => [r.direct.first, r.direct.incremental, r.direct.unchanged];
const KINDS = ['first backup', '1% changed', 'nothing changed'] as const;

function report(results: SizeResult[], context: { quick: boolean; commandLine: string; estimate: number; totalSeconds: number; h: Harness; loadAtStart: string; other: ReturnType<ReturnType<typeof startBenchPart>['otherCpu']>; source: ReturnType<typeof sourceState> }): string {
  const { quick, h } = context;
  const memory = h.service!.memory();
  // Goals are judged on "recorded" (the success in the ledger, as bench/run.ts does) when every backup has it.
  const useRecorded = results.every((r) => [r.first, ...r.incremental, ...r.unchanged].every((b) => Number.isFinite(b.recorded)));
  const goalPick: Pick = useRecorded ? (b) => b.recorded : (b) => b.wall;
  const lines: string[] = [];
  lines.push(`# Scale: many files through the service${quick ? ' (quick)' : ''}`);
  lines.push('');
  lines.push(`One run: per size a first backup, then round(s) of (1% changed, nothing changed) through the service (medians of the rounds; rounds per size: ${results.map((r) => r.rounds).join(', ')}), and restic alone on the same tree once (first, nothing changed, 1% changed). Command: \`${context.commandLine}\`; estimated ${(context.estimate / 60).toFixed(0)} min before the run, took ${(context.totalSeconds / 60).toFixed(1)} min.`);
  lines.push('');
  lines.push(['| |', ...results.map((r) => ` ${thousands(r.tree.files)} files (${gib(r.tree.bytes)}) |`)].join(''));
  lines.push(`|---|${results.map(() => '---:|').join('')}`);
  const row = (label: string, cell: (r: SizeResult) => string): void => {
    lines.push(`| ${label} | ${results.map(cell).join(' | ')} |`);
  };
  const three = (values: number[], format: (n: number) => string = f2): string => values.map(format).join(' / ');
  row('rounds (1% changed + nothing changed)', (r) => String(r.rounds));
  row('**service, success recorded in the ledger**: first / 1% / nothing changed (s)', (r) => three(triple(r, (b) => b.recorded)));
  row('service, workflow end (retention included) (s)', (r) => three(triple(r, (b) => b.wall)));
  row('*restic alone* (s)', (r) => three(directTriple(r)));
  row('**service (recorded) ÷ restic alone**', (r) => { const d = directTriple(r); return triple(r, (b) => b.recorded).map((v, i) => ratio(v, d[i]!)).join(' / '); });
  row('service (workflow end) ÷ restic alone', (r) => { const d = directTriple(r); return triple(r, (b) => b.wall).map((v, i) => ratio(v, d[i]!)).join(' / '); });
  row('service (recorded) − restic alone (s)', (r) => { const d = directTriple(r); return triple(r, (b) => b.recorded).map((v, i) => `${v - d[i]! >= 0 ? '+' : ''}${f2(v - d[i]!)}`).join(' / '); });
  row('files changed in a 1% round', (r) => thousands(r.changedFiles));
  row('files/s, first backup (recorded)', (r) => thousands(r.tree.files / r.first.recorded));
  // n/a: the backup's activities are not in the histories bench/history.ts reads (they run in the repository's writer).
  row('Temporal overhead (wall − union of activities) (s)', (r) => three(triple(r, (b) => (b.activities.some((a) => a.name === 'backupSource') ? b.overhead : Number.NaN))));
  row('wall time outside restic (wall − all restic processes) (s)', (r) => three(triple(r, (b) => b.wall - b.resticTotal)));
  const backupSource = (pick: (a: BackupMeasure['activities'][number]) => number): Pick => (b) => {
    const found = b.activities.filter((a) => a.name === 'backupSource');
    return found.length === 0 ? Number.NaN : found.reduce((sum, a) => sum + pick(a), 0);
  };
  row('… of which `backupSource` before its first restic call (s)', (r) => three(triple(r, backupSource((a) => a.beforeRestic))));
  row('… of which `backupSource` after restic ends (s)', (r) => three(triple(r, backupSource((a) => a.afterRestic))));
  row('`restic backup` process (s)', (r) => three(triple(r, (b) => b.resticBackupProcess)));
  const processes: Pick = (b) => b.otherRestic.length + (Number.isFinite(b.resticBackupProcess) ? 1 : 0);
  row('**restic processes per backup** (each one key derivation; restic alone: 1)', (r) => three(triple(r, processes), (n) => n.toFixed(0)));
  row('… which (first backup)', (r) => ['backup', ...r.first.otherRestic.map((c) => c.command)].join(', '));
  row('**history events: backup workflow**', (r) => three(triple(r, (b) => b.historyEvents.backup), (n) => n.toFixed(0)));
  row('**history events: the repository writer during the backup**', (r) => three(triple(r, (b) => b.historyEvents.repository), (n) => n.toFixed(0)));
  row(`**worker peak memory** (VmHWM over this size's backups) vs. ${MEMORY_GOAL / 1e6} MB`, (r) => `${mb(r.workerPeak)}${r.hwmReset ? '' : ' (HWM not reset: lifetime value)'}`);
  row('worker: highest 100 ms RSS sample in this size\'s backups', (r) => mb(r.sampledPeak));
  row('restic peak RSS, first / 1% (GNU time)', (r) => `${(r.first.resticPeakRssKb / 1024).toFixed(0)} / ${(Math.max(...r.incremental.map((b) => b.resticPeakRssKb)) / 1024).toFixed(0)} MiB`);
  row('page cache warm-up before the size (not measured) (s)', (r) => f1(r.warmSeconds));
  lines.push('');

  lines.push('## Goals');
  lines.push('');
  const goalSizes = quick ? results.slice(-1) : results.filter((r) => r.tree.files >= GOAL_FILES);
  const yes = (ok: boolean): string => (ok ? 'met' : '**not met**');
  lines.push(`Within ${Math.round((RATIO_GOAL - 1) * 100)}% of restic alone at ${thousands(GOAL_FILES)} files and more: service (${useRecorded ? 'success recorded in the ledger' : 'workflow end: some backups have no recorded time'}) ÷ restic alone ≤ ${f2(RATIO_GOAL)}, for each of the first backup, the 1% changed and the nothing-changed backup (medians of the rounds against restic alone's one run). The 20,004-file goals (1% incremental recorded within 0.5 s of restic alone, first backup within 5%) are bench/run.ts's, in results.md. Memory: each size's backups run in a worker of their own (started with a config naming the size's repository, warmed up by one small backup, then its VmHWM reset to its RSS at that point); the peak is that worker's VmHWM after the size's backups; flat means the largest size's peak at most ${FLAT_GOAL / 1e6} MB above the smallest's.${quick ? ' **Quick smoke run: these are not the goals\' sizes.**' : ''}`);
  lines.push('');
  lines.push('| goal | size | measured | target | result |');
  lines.push('|---|---|---:|---|---|');
  for (const r of goalSizes) {
    const service = triple(r, goalPick);
    const direct = directTriple(r);
    KINDS.forEach((kind, i) => {
      const value = service[i]! / direct[i]!;
      lines.push(`| within ${Math.round((RATIO_GOAL - 1) * 100)}% of restic alone, ${kind} | ${thousands(r.tree.files)} files | ${f2(value)} (${f2(service[i]!)} s against ${f2(direct[i]!)} s) | ≤ ${f2(RATIO_GOAL)} | ${yes(value <= RATIO_GOAL)} |`);
    });
  }
  const largest = results.at(-1)!;
  const smallest = results[0]!;
  lines.push(`| worker peak memory | ${thousands(largest.tree.files)} files | ${mb(largest.workerPeak)} | < ${MEMORY_GOAL / 1e6} MB | ${yes(largest.workerPeak < MEMORY_GOAL)} |`);
  const growth = largest.workerPeak - smallest.workerPeak;
  lines.push(`| worker memory flat in the number of files | ${thousands(smallest.tree.files)} → ${thousands(largest.tree.files)} files | ${growth >= 0 ? '+' : ''}${(growth / 1e6).toFixed(0)} MB | ≤ +${FLAT_GOAL / 1e6} MB | ${yes(growth <= FLAT_GOAL)} |`);
  const events = results.map((r) => r.first.historyEvents.backup + r.first.historyEvents.repository);
  lines.push(`| history length constant in the number of files | all sizes | ${events.join(' / ')} events | the same at every size | ${yes(new Set(events).size === 1)} |`);
  lines.push('');
  lines.push(`Worker memory over the whole run: VmHWM at start-up ${mb(memory.startupHwm)}, highest 100 ms RSS sample ${mb(memory.sampledWorkerPeak)}, worker + restic children ${mb(memory.sampledTotalPeak)}.`);
  lines.push('');
  lines.push('## Set-up');
  lines.push('');
  lines.push(`- Trees: the applications shape (bench/generate.ts, bench/tree-content.ts) with PDFs of ${PDF_MIN / 1024} KiB and up, generated once into .cache/bench/: ${results.map((r) => `\`${r.tree.key}\``).join(', ')}. The 1% rounds are not undone between rounds, so each backup sees only that round's files changed; the tree is put back at the end. Each size's tree is read once before its backups, so both sides start with it in the page cache.`);
  lines.push('- Service path as in bench/run.ts: MinIO and the Temporal dev server on loopback, the worker in its own process (memory probe preloaded), `backupWorkflow` through the client, a fresh repository per size, the policy\'s retention after each backup. restic alone: the service\'s flags, another fresh repository, first / nothing changed / 1% changed.');
  lines.push(`- restic ${h.versions.restic}, MinIO ${h.versions.minio}, Temporal CLI ${h.versions.temporal}, Node ${process.version}. Machine: ${machine()}; load average at start ${context.loadAtStart}; ${describeOtherCpu(context.other)}. Code measured: ${describeSource(context.source)}. Date: ${new Date().toISOString()}.`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--generate-only')) {
    optionReader(argv, ['generate-only']);
    await generateOnly(argv.includes('--quick'));
    return;
  }
  const { started, quick, rounds, commandLine, releaseLock, loadAtStart, otherCpu } = startBenchPart('bench/scale.ts');
  const sizes = sizesFor(quick);
  const explicitRounds = argv.includes('--runs');
  const roundsFor = (size: Size): number => (explicitRounds ? rounds : size.rounds ?? rounds);
  const estimate = estimateSeconds(sizes.map((s) => ({ files: s.files, rounds: roundsFor(s), cached: treeCached(treeOptions(s)) })));
  log(`sizes ${sizes.map((s) => `${thousands(s.files)} files × ${roundsFor(s)} round(s)`).join(', ')}: estimated ${(estimate / 60).toFixed(0)} min`);
  const trees: Tree[] = [];
  let harness: Harness | undefined;
  try {
    for (const size of sizes) trees.push(await loadTreeAsync(treeOptions(size)));
    harness = await startHarness({ service: true, workerSourceRoot: trees[0]!.root });
    const h = harness;
    const results: SizeResult[] = [];
    for (const [i, tree] of trees.entries()) results.push(await measureSize(h, tree, roundsFor(sizes[i]!)));
    const totalSeconds = seconds(performance.now() - started);
    const source = sourceState();
    const other = otherCpu();
    const text = report(results, { quick, commandLine, estimate, totalSeconds, h, loadAtStart, other, source });
    const out = join(repoRoot(), 'bench', quick ? 'scale-quick' : 'scale');
    process.stdout.write(`${text}\n`);
    writeFileSync(`${out}.md`, `${text}\n`);
    writeFileSync(`${out}.json`, `${JSON.stringify({ quick, source, loadAtStart, otherCpu: other, estimateSeconds: estimate, totalSeconds, versions: h.versions, memory: h.service!.memory(), results }, null, 2)}\n`);
    log(`wrote ${out}.md; total ${f2(totalSeconds)} s (estimated ${f2(estimate)} s)`);
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
