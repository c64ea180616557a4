/**
 * The audit trail's hash chain: each entry's hash covers its content and the previous entry's
 * hash, so an entry altered, removed or inserted after the fact shows up in `verifyChain`.
 * Pure: no I/O, the same answer on every worker.
 */
import { createHash } from 'node:crypto';
import { FailureType } from '../shared/failures';
import type { AuditEntry, AuditEvent } from '../shared/operations';

/** What `verifyChain` found wrong, at the first seq it concerns. */
export interface AuditFinding {
  seq: number;
  /** 'expired': entries at the start that the bucket's lifecycle removed (a note, not a problem). */
  problem: 'altered' | 'missing' | 'broken' | 'truncated' | 'duplicate' | 'expired';
  message: string;
}

/** An audit store whose objects expire (an S3 lifecycle rule): how many days, and when the check runs. */
export interface AuditExpiry {
  days: number;
  now: Date;
}

/**
 * How close to its own expiry the oldest stored entry must be for a gap before it to count as
 * expired rather than removed: the ledger writes entries every day (each backup), so the oldest
 * survivor of a trail whose start expired was written about `days` ago.
 */
export const EXPIRY_SLACK_DAYS = 7;

/** Findings that mean the trail was tampered with ('expired' is a note). */
export function problemsOf(findings: AuditFinding[]): AuditFinding[] {
  return findings.filter((finding) => finding.problem !== 'expired');
}

/** The ledger's last chained entry: what the stored trail must reach. */
export interface AuditHead {
  seq: number;
  head: string;
}

/**
 * JSON with object keys sorted at every level and `undefined` members left out, so one value has
 * one text whatever order its keys were built in, before and after a JSON round trip.
 */
export function canonicalJson(value: unknown): string {
  const text = canonicalText(value);
  if (text === undefined) throw new TypeError('canonicalJson: the value itself is undefined');
  return text;
}

function canonicalText(value: unknown): string | undefined {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (typeof value === 'bigint') throw new TypeError('canonicalJson: a bigint has no JSON form');
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return canonicalText((value as { toJSON(): unknown }).toJSON());
  if (Array.isArray(value)) return `[${value.map((item) => canonicalText(item) ?? 'null').join(',')}]`;
  const members: string[] = [];
  for (const key of Object.keys(value).sort()) {
    const text = canonicalText((value as Record<string, unknown>)[key]);
    if (text !== undefined) members.push(`${JSON.stringify(key)}:${text}`);
  }
  return `{${members.join(',')}}`;
}

/** sha256 hex of `prevHash + "\n" + canonicalJson(entry without hash)`; a `hash` member passed in is ignored. */
export function hashEntry(entry: Omit<AuditEntry, 'hash'> & { hash?: string }): string {
  const { hash: _ignored, ...content } = entry;
  return createHash('sha256').update(`${content.prevHash}\n${canonicalJson(content)}`).digest('hex');
}

/** Numbers a batch of events from `startSeq` and chains them onto `prevHash` ("" before the first entry). */
export function chainEntries(deployment: string, startSeq: number, prevHash: string, events: AuditEvent[]): AuditEntry[] {
  if (!Number.isSafeInteger(startSeq) || startSeq < 1) throw new RangeError(`chainEntries: startSeq must be an integer from 1, got ${startSeq}`);
  const entries: AuditEntry[] = [];
  let previous = prevHash;
  events.forEach((event, index) => {
    const content = withoutUndefined({ ...event, deployment, seq: startSeq + index, prevHash: previous });
    const entry = { ...content, hash: hashEntry(content) };
    entries.push(entry);
    previous = entry.hash;
  });
  return entries;
}

/** The event an entry records, without its place in the chain. */
function eventOf(entry: AuditEntry): string {
  const { deployment: _d, seq: _s, prevHash: _p, hash: _h, ...event } = entry;
  return canonicalJson(event);
}

/** A batch chained onto a head, and the head after it (the same head for no events). */
export interface ChainedBatch {
  entries: AuditEntry[];
  seq: number;
  head: string;
}

/** Chains `events` after `after` ({ seq: 0, head: "" } before the first entry). */
export function chainAfter(deployment: string, after: AuditHead, events: AuditEvent[]): ChainedBatch {
  const entries = events.length > 0 ? chainEntries(deployment, after.seq + 1, after.head, events) : [];
  const last = entries.at(-1);
  return { entries, seq: last?.seq ?? after.seq, head: last?.hash ?? after.head };
}

/**
 * The first write of a ledger that has never written (a new deployment, or a ledger rebuilt after
 * the Temporal server was lost): it continues the stored trail instead of numbering from 1 again,
 * which would collide with the entries already stored. `tail` is the stored trail's last entries
 * (at least as many as `events`, when there are that many). Events an earlier attempt of the same
 * write already stored (a write that failed half-way and is retried) are the tail's last entries:
 * they are not written twice. Refuses a trail of another deployment.
 */
export function continueChain(deployment: string, tail: AuditEntry[], events: AuditEvent[]): ChainedBatch {
  const sorted = [...tail].sort((a, b) => a.seq - b.seq);
  const last = sorted.at(-1);
  if (!last) return chainAfter(deployment, { seq: 0, head: '' }, events);
  if (last.deployment !== deployment) {
    const message = `the audit trail at this location belongs to deployment "${last.deployment}", not "${deployment}": give each deployment its own audit prefix or folder`;
    throw Object.assign(new Error(message), { failureType: FailureType.ConfigInvalid });
  }
  const wanted = events.map((event) => canonicalJson(withoutUndefined(event)));
  let stored = 0;
  for (let k = Math.min(events.length, sorted.length); k > 0; k -= 1) {
    if (sorted.slice(-k).map(eventOf).every((text, i) => text === wanted[i])) {
      stored = k;
      break;
    }
  }
  return chainAfter(deployment, { seq: last.seq, head: last.hash }, events.slice(stored));
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, member]) => member !== undefined)) as T;
}

const short = (hash: string): string => (hash === '' ? '""' : hash.slice(0, 12));
/** "entry 4 is" or "entries 4..6 are". */
const entriesAt = (from: number, to: number): string => (from === to ? `entry ${from} is` : `entries ${from}..${to} are`);

/**
 * Checks a trail (in any order) entry by entry and, given the ledger's head, at its end. Each
 * problem is reported once, at the seq where it starts; an empty list means the trail is intact.
 * A trail that does not start at seq 1 is reported as missing entries even when it was started
 * later on purpose: the caller knows which it is.
 */
export function verifyChain(entries: AuditEntry[], expected?: AuditHead, expiry?: AuditExpiry): AuditFinding[] {
  const findings: AuditFinding[] = [];
  const sorted = [...entries].sort((a, b) => a.seq - b.seq);
  const bySeq = new Map<number, AuditEntry>();
  let previous: AuditEntry | undefined;

  for (const entry of sorted) {
    const seq = entry.seq;
    const intact = hashEntry(entry) === entry.hash;
    if (!intact) {
      findings.push({ seq, problem: 'altered', message: `entry ${seq} was altered: its content does not match its hash ${short(entry.hash)}` });
    }
    const first = bySeq.get(seq);
    if (first) {
      findings.push({ seq, problem: 'duplicate', message: first.hash === entry.hash ? `entry ${seq} is stored twice` : `two different entries have seq ${seq} (hashes ${short(first.hash)} and ${short(entry.hash)})` });
      continue;
    }
    bySeq.set(seq, entry);

    if (!previous) {
      const ageDays = expiry ? (expiry.now.getTime() - Date.parse(entry.at)) / 86_400_000 : Number.NaN;
      if (seq > 1 && expiry && ageDays >= expiry.days - EXPIRY_SLACK_DAYS) {
        // Its predecessors are older still: past the lifecycle's days, so expired, not removed.
        findings.push({
          seq: 1, problem: 'expired',
          message: `${entriesAt(1, seq - 1)} gone because the bucket's lifecycle expires audit entries after ${expiry.days} days: the oldest kept, ${seq}, was written ${entry.at} (${Math.floor(ageDays)} days ago); the chain is checked from ${seq} on`,
        });
      } else if (seq > 1) {
        const young = expiry ? `; the oldest kept, ${seq}, is only ${Math.floor(ageDays)} days old, so the lifecycle (${expiry.days} days) did not remove the ones before it` : ' (expected when the trail was deliberately started later)';
        findings.push({ seq: 1, problem: 'missing', message: `${entriesAt(1, seq - 1)} missing: the trail starts at seq ${seq}${young}` });
      } else if (entry.prevHash !== '') {
        findings.push({ seq, problem: 'broken', message: `the chain is broken at ${seq}: the first entry's prevHash is ${short(entry.prevHash)} instead of ""` });
      }
    } else if (seq > previous.seq + 1) {
      // The missing entries' hashes are unknown, so the link across the gap cannot be checked.
      findings.push({ seq: previous.seq + 1, problem: 'missing', message: `${entriesAt(previous.seq + 1, seq - 1)} missing (between ${previous.seq} and ${seq})` });
    } else if (entry.prevHash !== previous.hash) {
      findings.push({ seq, problem: 'broken', message: `the chain is broken at ${seq}: its prevHash ${short(entry.prevHash)} is not entry ${previous.seq}'s hash ${short(previous.hash)} (one of them was rewritten)` });
    }
    previous = entry;
  }

  if (expected && expected.seq > 0) {
    const last = previous?.seq ?? 0;
    if (last < expected.seq) {
      findings.push({ seq: last + 1, problem: 'truncated', message: `${entriesAt(last + 1, expected.seq)} missing at the end: the ledger's head is seq ${expected.seq} (${short(expected.head)}), the trail ${last === 0 ? 'is empty' : `ends at ${last}`}` });
    } else {
      // Entries past the ledger's head are normal: they were stored before the ledger recorded them.
      const atHead = bySeq.get(expected.seq);
      if (atHead && atHead.hash !== expected.head) {
        findings.push({ seq: expected.seq, problem: 'altered', message: `entry ${expected.seq} is not the one the ledger chained: its hash is ${short(atHead.hash)}, the ledger's head is ${short(expected.head)}` });
      }
    }
  }
  return findings.sort((a, b) => a.seq - b.seq);
}
