/** "Did you mean …?": the known name a mistyped one most likely stands for (config fields, policies, sources, repositories). */

/** Edit distance: insertions, deletions, substitutions, and swaps of two neighbours ("hots" → "host" is one). */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i += 1) {
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The known name closest to `name`, case aside: a few edits away (at most 2, and at most a third
 * of the name), or one it begins (or that begins it, 3 letters at least). Undefined when nothing is close.
 */
export function closestName(name: string, known: readonly string[]): string | undefined {
  const wanted = name.toLowerCase();
  let best: { name: string; score: number } | undefined;
  for (const candidate of known) {
    const lower = candidate.toLowerCase();
    const edits = editDistance(wanted, lower);
    const prefix = Math.min(wanted.length, lower.length) >= 3 && (lower.startsWith(wanted) || wanted.startsWith(lower));
    const score = edits <= Math.min(2, Math.ceil(lower.length / 3)) ? edits : prefix ? 3 : Number.POSITIVE_INFINITY;
    if (score !== Number.POSITIVE_INFINITY && (!best || score < best.score)) best = { name: candidate, score };
  }
  return best?.name;
}
