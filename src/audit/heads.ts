/**
 * The audit trail against the heads its backups recorded. Each backup asks the ledger for the
 * trail's head (seq and hash of its last written entry) and stores it in the snapshot: in
 * BACKUP_MANIFEST.json and in the tag "audit-head=<seq>:<hash>" (src/activities/manifest.ts). A
 * snapshot is encrypted with the repository's password and, in an immutable repository, locked: the
 * loss of the ledger (a wiped Temporal database) or a trail cut short or rewritten after a backup
 * cannot forge it. Pure: the caller lists the snapshots (through a worker) and the trail.
 */
import { auditHeadOfTags } from '../activities/manifest';
import type { Snapshot } from '../restic/commands';
import type { AuditEntry } from '../shared/operations';
import type { AuditFinding } from './chain';

/** A head as one snapshot recorded it. */
export interface SnapshotAuditHead {
  repository: string;
  snapshotId: string;
  time: string;
  source?: string;
  seq: number;
  hash: string;
}

/** Every head the deployment's snapshots carry, newest snapshot first. */
export function headsFromSnapshots(deployment: string, lists: Record<string, Snapshot[]>): SnapshotAuditHead[] {
  const heads: SnapshotAuditHead[] = [];
  for (const [repository, list] of Object.entries(lists)) {
    for (const snapshot of list) {
      if (!snapshot.tags?.includes(`deployment=${deployment}`)) continue;
      const head = auditHeadOfTags(snapshot.tags);
      if (!head) continue;
      const source = snapshot.tags.find((tag) => tag.startsWith('source='))?.slice('source='.length);
      heads.push({ repository, snapshotId: snapshot.id, time: new Date(snapshot.time).toISOString(), ...(source ? { source } : {}), seq: head.seq, hash: head.hash });
    }
  }
  return heads.sort((a, b) => b.time.localeCompare(a.time) || b.seq - a.seq);
}

/** "snapshot 1a2b3c4d (source artifacts, repository offsite, 2026-12-05T18:00:00Z)" */
export function describeSnapshotHead(head: SnapshotAuditHead): string {
  return `snapshot ${head.snapshotId.slice(0, 8)} (${head.source ? `source ${head.source}, ` : ''}repository ${head.repository}, ${head.time.replace(/\.\d+Z$/, 'Z')})`;
}

const short = (hash: string): string => hash.slice(0, 12);
const range = (from: number, to: number): string => (from === to ? `entry ${from} is` : `entries ${from}..${to} are`);

/**
 * What the stored trail lacks or changed compared with the heads the snapshots recorded: a trail
 * that ends before the newest recorded head (entries removed from its end, or a ledger rebuilt on a
 * cut trail), and an entry whose hash is not the one a snapshot recorded at that seq (the trail
 * rewritten from there, its hashes recomputed). Heads before the trail's first kept entry (expired
 * or missing, which verifyChain reports) and inside a gap (reported as missing) are skipped.
 */
export function checkAgainstSnapshotHeads(entries: AuditEntry[], heads: SnapshotAuditHead[]): AuditFinding[] {
  const findings: AuditFinding[] = [];
  if (heads.length === 0) return findings;
  const bySeq = new Map(entries.map((entry) => [entry.seq, entry]));
  const seqs = entries.map((entry) => entry.seq);
  const first = seqs.length > 0 ? Math.min(...seqs) : Infinity;
  const last = seqs.length > 0 ? Math.max(...seqs) : 0;

  // The newest head (the highest seq; the newest snapshot among equals) is the end the trail must reach.
  const highest = heads.reduce((best, head) => (head.seq > best.seq ? head : best), heads[0]!);
  if (last < highest.seq) {
    findings.push({
      seq: last + 1, problem: 'truncated',
      message: `${range(last + 1, highest.seq)} missing at the end: ${describeSnapshotHead(highest)} recorded the audit head at seq ${highest.seq} (${short(highest.hash)}), the trail ${last === 0 ? 'is empty' : `ends at ${last}`}`
        + ' (entries were deleted from the trail, or the ledger was rebuilt on a trail cut short)',
    });
  }
  // One finding per recorded (seq, hash) that the stored entry contradicts; the newest snapshot names it.
  const seen = new Set<string>();
  for (const head of heads) {
    const key = `${head.seq}:${head.hash}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (head.seq < first) continue;
    const stored = bySeq.get(head.seq);
    if (!stored || stored.hash === head.hash) continue;
    findings.push({
      seq: head.seq, problem: 'altered',
      message: `entry ${head.seq} is not the one ${describeSnapshotHead(head)} recorded: its hash is ${short(stored.hash)}, the snapshot's manifest has ${short(head.hash)} (the trail was rewritten from there on)`,
    });
  }
  return findings.sort((a, b) => a.seq - b.seq);
}
