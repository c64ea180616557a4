/**
 * Benchmark trees on disk: generated once from a layout of bench/tree-content.ts, cached,
 * mutated by a fraction of their files and put back.
 *
 * Trees are cached under .cache/bench/<key>/ (git ignores .cache/), keyed by GENERATOR_VERSION,
 * profile, file count, byte total and seed. A tree is written into `.tmp-<key>-<pid>/`; its
 * tree.json, written last, and then the rename to `<key>/` mark it complete, so a generation
 * that was interrupted leaves only a tmp folder, removed by the next load (when its process is
 * gone), and is redone. mutated.json marks a tree that `mutate` changed and nobody restored yet
 * (fixed on the next load).
 *
 * `loadTree` writes file by file (what the parts with 20,000 files need); `loadTreeAsync`
 * keeps up to 64 writes in flight while the next contents are generated (a 1,000,000-file tree).
 * Both make each folder once, not once per file.
 *
 * CLI: tsx bench/generate.ts [--files 20000] [--bytes 1GiB] [--seed 1] [--profile applications|random|text] [--pdf-min BYTES]
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile as writeFileAsync } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseSize } from '../src/config/units';
import { repoRoot } from '../src/servers/binaries';
import { applicationsFiles, DEFAULT_BYTES, DEFAULT_FILES, DEFAULT_SEED, fileContent, GENERATOR_VERSION, PDF_MIN, Prng, uniformFiles, type GeneratedFile, type Tree, type TreeProfile, type TreeSummary } from './tree-content';

export { DEFAULT_BYTES, DEFAULT_FILES, DEFAULT_SEED, fileContent, GENERATOR_VERSION, Prng, type FileKind, type FileSpec, type Tree, type TreeProfile } from './tree-content';

export interface TreeOptions {
  files?: number;
  bytes?: number;
  seed?: number;
  profile?: TreeProfile;
  /** applications: the PDFs' smallest size (default 50 KiB); smaller lets 200,000 files fit in 1 GiB. */
  pdfMinBytes?: number;
  /** Parent folder of the cached trees. Default: <repo>/.cache/bench. */
  cacheDir?: string;
  log?: (message: string) => void;
}

const MUTATED_FILE = 'mutated.json';
const TREE_FILE = 'tree.json';
const TMP_PREFIX = '.tmp-';
/** Writes in flight in `loadTreeAsync`: enough to keep libuv's 4 threads busy. */
const WRITES_IN_FLIGHT = 64;

export function treeKey(files: number, bytes: number, seed: number, profile: TreeProfile = 'applications', pdfMinBytes = PDF_MIN): string {
  return `${profile}-v${GENERATOR_VERSION}-f${files}-b${bytes}-s${seed}${profile === 'applications' && pdfMinBytes !== PDF_MIN ? `-pdfmin${pdfMinBytes}` : ''}`;
}

function writeFile(root: string, path: string, content: Buffer): void {
  const full = join(root, path);
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, content);
}

interface Cached {
  key: string;
  root: string;
  cacheDir: string;
  log: (message: string) => void;
  /** The layout's files, in writing order; its return value is the summary. */
  layout: () => Generator<GeneratedFile, TreeSummary>;
  describe: string;
}

function cached(options: TreeOptions): Cached {
  const files = options.files ?? DEFAULT_FILES;
  const bytes = options.bytes ?? DEFAULT_BYTES;
  const seed = options.seed ?? DEFAULT_SEED;
  const profile = options.profile ?? 'applications';
  const cacheDir = options.cacheDir ?? join(repoRoot(), '.cache', 'bench');
  const key = treeKey(files, bytes, seed, profile, options.pdfMinBytes);
  return {
    key, cacheDir, root: join(cacheDir, key), log: options.log ?? (() => undefined),
    layout: () => (profile === 'applications' ? applicationsFiles(files, bytes, seed, options.pdfMinBytes) : uniformFiles(profile, files, bytes, seed)),
    describe: `${files} ${profile} files / ${bytes} bytes`,
  };
}

/** Whether the tree for these options is in the cache, complete. */
export function treeCached(options: TreeOptions = {}): boolean {
  return existsSync(join(cached(options).root, TREE_FILE));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Clears what an interrupted generation left and returns the empty folder to write into. */
function begin(c: Cached): string {
  mkdirSync(c.cacheDir, { recursive: true });
  for (const entry of readdirSync(c.cacheDir)) {
    if (!entry.startsWith(`${TMP_PREFIX}${c.key}-`)) continue;
    const pid = Number(entry.slice(`${TMP_PREFIX}${c.key}-`.length));
    if (pid !== process.pid && alive(pid)) throw new Error(`process ${pid} is generating the same tree into ${join(c.cacheDir, entry)}: wait for it, or remove that folder if that pid is not a benchmark`);
    c.log(`removing ${entry}, left by an interrupted generation`);
    rmSync(join(c.cacheDir, entry), { recursive: true, force: true });
  }
  // A folder without tree.json was not made by the rename below (or lost its marker): redo it.
  rmSync(c.root, { recursive: true, force: true });
  const tmp = join(c.cacheDir, `${TMP_PREFIX}${c.key}-${process.pid}`);
  mkdirSync(tmp, { recursive: true });
  c.log(`generating ${c.describe} into ${c.root} (once; cached)`);
  return tmp;
}

/** tree.json last, then the rename: only a complete tree is ever at `c.root`. */
function finish(c: Cached, tmp: string, summary: TreeSummary, started: number): void {
  writeFileSync(join(tmp, TREE_FILE), JSON.stringify({ generatorVersion: GENERATOR_VERSION, ...summary }));
  try {
    renameSync(tmp, c.root);
  } catch (error) {
    if (!existsSync(join(c.root, TREE_FILE))) throw error;
    rmSync(tmp, { recursive: true, force: true }); // another process finished the same tree first
  }
  const took = (performance.now() - started) / 1000;
  c.log(`generated ${summary.files} files, ${summary.bytes} bytes in ${took.toFixed(1)} s (${Math.round(summary.files / took)} files/s)`);
}

function open(c: Cached): Tree {
  const tree = { ...(JSON.parse(readFileSync(join(c.root, TREE_FILE), 'utf8')) as TreeSummary), root: c.root, key: c.key };
  if (existsSync(join(c.root, MUTATED_FILE))) {
    c.log('the cached tree was left mutated by an interrupted run: restoring it');
    restoreTree(tree);
  }
  return tree;
}

/** The cached tree for these parameters, generated on first use; a mutated one is restored first. */
export function loadTree(options: TreeOptions = {}): Tree {
  const c = cached(options);
  if (!existsSync(join(c.root, TREE_FILE))) {
    const started = performance.now();
    const tmp = begin(c);
    const made = new Set<string>();
    const files = c.layout();
    let next = files.next();
    for (; !next.done; next = files.next()) {
      const full = join(tmp, next.value.spec.path);
      const dir = dirname(full);
      if (!made.has(dir)) {
        mkdirSync(dir, { recursive: true });
        made.add(dir);
      }
      writeFileSync(full, next.value.content);
    }
    finish(c, tmp, next.value, started);
  }
  return open(c);
}

/** `loadTree` with up to WRITES_IN_FLIGHT writes under way while the next contents are made. */
export async function loadTreeAsync(options: TreeOptions = {}): Promise<Tree> {
  const c = cached(options);
  if (!existsSync(join(c.root, TREE_FILE))) {
    const started = performance.now();
    const tmp = begin(c);
    const folders = new Map<string, Promise<unknown>>();
    const inFlight = new Set<Promise<void>>();
    const files = c.layout();
    let next = files.next();
    for (; !next.done; next = files.next()) {
      const full = join(tmp, next.value.spec.path);
      const dir = dirname(full);
      let folder = folders.get(dir);
      if (folder === undefined) {
        folder = mkdir(dir, { recursive: true });
        folders.set(dir, folder);
      }
      const content = next.value.content;
      const write: Promise<void> = folder.then(() => writeFileAsync(full, content)).finally(() => inFlight.delete(write));
      write.catch(() => undefined); // a failure is thrown by the race or the final wait below
      inFlight.add(write);
      if (inFlight.size >= WRITES_IN_FLIGHT) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    finish(c, tmp, next.value, started);
  }
  return open(c);
}

/**
 * Rewrites a `fraction` of the files (at least one), picked deterministically from `seed`, with
 * edited content: text files get new text, PDFs new bytes of the same size (a re-rendered PDF
 * differs throughout). Returns the paths changed; `restoreTree` undoes it.
 */
export function mutate(tree: Tree, fraction: number, seed: number): { paths: string[]; bytes: number } {
  const count = Math.max(1, Math.round(tree.specs.length * fraction));
  const rng = new Prng(`${tree.seed}\0mutate\0${seed}`);
  // Partial Fisher-Yates over the indices: `count` distinct files.
  const indices = tree.specs.map((_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(rng.next() * (indices.length - i));
    [indices[i], indices[j]] = [indices[j]!, indices[i]!];
  }
  const chosen = indices.slice(0, count).sort((a, b) => a - b).map((i) => tree.specs[i]!);
  const marker = join(tree.root, MUTATED_FILE);
  const previous = existsSync(marker) ? (JSON.parse(readFileSync(marker, 'utf8')) as string[]) : [];
  writeFileSync(marker, JSON.stringify([...new Set([...previous, ...chosen.map((s) => s.path)])]));
  let bytes = 0;
  for (const spec of chosen) {
    const content = fileContent(tree.seed, spec, 1 + seed);
    bytes += content.length;
    writeFile(tree.root, spec.path, content);
  }
  return { paths: chosen.map((s) => s.path), bytes };
}

/** Writes the original content back to every file `mutate` changed. */
export function restoreTree(tree: Tree): number {
  const marker = join(tree.root, MUTATED_FILE);
  if (!existsSync(marker)) return 0;
  const paths = new Set(JSON.parse(readFileSync(marker, 'utf8')) as string[]);
  let restored = 0;
  for (const spec of tree.specs) {
    if (!paths.has(spec.path)) continue;
    writeFile(tree.root, spec.path, fileContent(tree.seed, spec, 0));
    restored += 1;
  }
  rmSync(marker);
  return restored;
}

export function parseByteOption(text: string): number {
  const value = parseSize(text);
  if (value === undefined || value <= 0) throw new Error(`not a size: "${text}" (e.g. 100MB, 1GiB, 1073741824)`);
  return value;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const option = (name: string): string | undefined => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const files = option('files');
  const bytes = option('bytes');
  const seed = option('seed');
  const profile = option('profile');
  const pdfMin = option('pdf-min');
  if (profile !== undefined && !['applications', 'random', 'text'].includes(profile)) throw new Error('--profile is applications, random or text');
  loadTreeAsync({
    profile: profile as TreeProfile | undefined,
    pdfMinBytes: pdfMin === undefined ? undefined : parseByteOption(pdfMin),
    files: files === undefined ? undefined : Number(files),
    bytes: bytes === undefined ? undefined : parseByteOption(bytes),
    seed: seed === undefined ? undefined : Number(seed),
    log: (m) => process.stderr.write(`${m}\n`),
  }).then((tree) => {
    process.stdout.write(`${JSON.stringify({ root: tree.root, files: tree.files, bytes: tree.bytes, textBytes: tree.textBytes, pdfBytes: tree.pdfBytes })}\n`);
  }, (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
