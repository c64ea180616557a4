/** `backupctl audit`: the audit trail, read back from its store and checked against the ledger's head. */
import type { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { problemsOf, verifyChain, type AuditFinding } from '../audit/chain';
import { auditRetentionDays } from '../audit/lifecycle';
import { checkAgainstSnapshotHeads, describeSnapshotHead, headsFromSnapshots, type SnapshotAuditHead } from '../audit/heads';
import { livePollers } from '../temporal/pollers';
import { sharedTaskQueue } from '../shared/task-queues';
import type { Snapshot } from '../restic/commands';
import { listSnapshots } from './operations';
import { openAuditStore } from '../audit/store';
import { auditLocation } from '../config/operations-plan';
import type { Config } from '../config/schema';
import { parseDuration } from '../config/units';
import { ledgerWorkflowId } from '../shared/ledger';
import type { AuditEntry, AuditLocation, OperationsPlan, OperationsView } from '../shared/operations';
import { operationsQuery } from '../workflows/definitions';
import { UsageError } from './errors';
import { renderTable } from './table';

type WithClient = <T>(fn: (client: Client, config: Config, host: string) => Promise<T>) => Promise<T>;

function describeLocation(location: AuditLocation): string {
  return location.type === 's3' ? `s3://${location.bucket}/${location.prefix}/ at ${location.endpoint}` : location.path;
}

function formatSeconds(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** What `schedules apply` tells the ledger, said to the person who ran it. */
export function formatOperationsPlan(plan: OperationsPlan): string {
  const lines = [''];
  lines.push(plan.channels.length > 0
    ? `alerts go to: ${plan.channels.map((c) => `${c.name} (${c.severities.join(' + ')})`).join(', ')}`
    : 'alerts: no channel configured (add `alerts:` to the config); open alerts show in `backupctl status` only');
  lines.push('dead man\'s switch (a missed-backup alert when no success arrives in time):');
  for (const e of Object.values(plan.expectations)) lines.push(`  ${e.source}: every ${formatSeconds(e.intervalSeconds)} + ${formatSeconds(e.graceSeconds)} grace (policy ${e.policy})`);
  lines.push(plan.audit ? `audit trail: ${describeLocation(plan.audit)}` : 'audit trail: nowhere to write it (no s3 repository and no audit.directory): entries wait in the ledger');
  return lines.join('\n');
}

/** "2026-11-01", an ISO time, or a duration back from now ("7d"). */
export function parseSince(text: string, now = new Date()): Date {
  const duration = parseDuration(text);
  if (duration !== undefined && /^\d/.test(text) && !/^\d{4}-/.test(text)) return new Date(now.getTime() - duration);
  const time = Date.parse(text);
  if (Number.isNaN(time)) throw new UsageError(`--since ${text}: expected a time (2026-11-01, 2026-11-01T06:00:00Z) or a duration back from now (24h, 7d)`);
  return new Date(time);
}

function requireLocation(config: Config): AuditLocation {
  const location = auditLocation(config);
  if (!location) throw new UsageError('this config has nowhere to keep an audit trail: add an s3 repository, or audit.directory for a local-only setup');
  return location;
}

async function readOperations(client: Client, config: Config): Promise<OperationsView | null> {
  try {
    return await client.workflow.getHandle(ledgerWorkflowId(config.deployment)).query(operationsQuery);
  } catch {
    return null;
  }
}

/** The heads the snapshots recorded, or why they could not be read (a note, not a failure). */
export interface RecordedHeads {
  heads?: SnapshotAuditHead[];
  /** The highest recorded seq (the newest snapshot among equals). */
  newest?: SnapshotAuditHead;
  note?: string;
}

export function recordedHeads(deployment: string, lists: Record<string, Snapshot[]>): RecordedHeads {
  const heads = headsFromSnapshots(deployment, lists);
  const newest = heads.reduce<SnapshotAuditHead | undefined>((best, head) => (!best || head.seq > best.seq ? head : best), undefined);
  return {
    heads, ...(newest ? { newest } : {}),
    ...(heads.length === 0 ? { note: 'no snapshot records an audit head yet (backups record it from this version on): the trail\'s end was compared with the ledger only' } : {}),
  };
}

/** Lists the snapshots through a worker (which holds the repositories' secrets) for their recorded heads. */
export async function readSnapshotHeads(client: Client, config: Config): Promise<RecordedHeads> {
  const queue = sharedTaskQueue(config.deployment);
  try {
    if (await livePollers(client, queue, 'workflow', 120_000) === 0) {
      return { note: `no worker polls ${queue}: the audit heads recorded in the snapshots were not compared (start a worker and run audit verify again)` };
    }
    return recordedHeads(config.deployment, await listSnapshots(client, config, undefined, { out: { write: () => true } }));
  } catch (error) {
    return { note: `the snapshots could not be listed (${error instanceof Error ? error.message : String(error)}): the audit heads they recorded were not compared` };
  }
}

/** The short form of a key's fingerprint: "SHA256:ab12cd34…". */
export function shortFingerprint(fingerprint: unknown): string {
  if (typeof fingerprint !== 'string' || fingerprint === '') return 'key unknown';
  const [kind, hash = ''] = fingerprint.split(':', 2);
  return hash.length > 8 ? `${kind}:${hash.slice(0, 8)}…` : fingerprint;
}

/** Written by backupctl's own parts (the ledger's alerts, a worker's reload of the operators): nobody's claim to check. */
const SYSTEM_ACTORS = new Set(['ledger', 'worker']);

/**
 * Who, as the trail can vouch for it: an operator whose signed request a worker verified
 * ("alice ✓ SHA256:ab12cd34…", and the second recoverer of a recover), or a name nobody checked
 * ("root@vm (unverified)": what the client said, a refused request, an entry written before
 * signatures were checked).
 */
export function whoText(entry: AuditEntry): string {
  const details = entry.details ?? {};
  if (SYSTEM_ACTORS.has(entry.actor) && details.verified === undefined) return entry.actor;
  // A refusal for the role, the second person or a replay: the signature was checked and is theirs; what they asked was not allowed.
  const who = details.verified === true
    ? `${entry.actor} ✓ ${shortFingerprint(details.fingerprint)}`
    : details.signatureVerified === true ? `${entry.actor} ✓ ${shortFingerprint(details.fingerprint)} (not allowed)`
      : entry.actor.startsWith('unverified') ? entry.actor : `${entry.actor} (unverified)`;
  return typeof details.approvedBy === 'string' ? `${who}, approved by ${details.approvedBy} ✓ ${shortFingerprint(details.approverFingerprint)}` : who;
}

/** A change of the operators (a worker read the config file again) that added, removed or changed `name`. */
function namesOperator(entry: AuditEntry, name: string): boolean {
  if (entry.kind !== 'operators' || entry.actor === name) return false;
  return ['added', 'removed', 'changed'].some((field) => {
    const value = entry.details?.[field];
    return typeof value === 'string' && value.split(',').map((n) => n.trim()).includes(name);
  });
}

/**
 * The entries of one operator: those they are the actor of (verified or not: a refusal of a
 * request signed with their key, a name a client claimed, are kept and shown as unverified), the
 * recovers they approved, and the changes of the operators that added, removed or changed them.
 */
export function entriesOfOperator(entries: readonly AuditEntry[], name: string): AuditEntry[] {
  return entries.filter((entry) => entry.actor === name || entry.details?.approvedBy === name || namesOperator(entry, name));
}

/** The details not already in the "who" column. */
const SHOWN_IN_WHO = new Set(['verified', 'approvedBy', 'approverFingerprint']);

export function detailText(entry: AuditEntry): string {
  const parts: string[] = [];
  if (entry.sources && entry.sources.length > 0) parts.push(entry.sources.join(','));
  if (entry.snapshotIds && entry.snapshotIds.length > 0) parts.push(`snapshots ${entry.snapshotIds.map((id) => id.slice(0, 8)).join(',')}`);
  for (const [key, value] of Object.entries(entry.details ?? {})) {
    if (value === null || key === 'startedAt' || SHOWN_IN_WHO.has(key)) continue;
    if (key === 'fingerprint' && (entry.details?.verified === true || entry.details?.signatureVerified === true)) continue;
    if (key === 'signatureVerified') continue;
    if (key === 'operator' && value === entry.actor) continue;
    parts.push(`${key}=${key === 'fingerprint' ? shortFingerprint(value) : String(value)}`);
  }
  const text = parts.join(' ');
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

/** The listing of `backupctl audit`: one row per entry, then where the entries came from. */
export function formatAuditEntries(entries: readonly AuditEntry[], from: string, operator?: string): string {
  const rows = entries.map((e) => [String(e.seq), e.at.replace(/\.\d+Z$/, 'Z'), e.kind, whoText(e), e.result, detailText(e)]);
  const count = `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}`;
  let summary = `${count} from ${from}`;
  if (operator !== undefined) {
    const verified = entries.filter((e) => (e.actor === operator && e.details?.verified === true) || e.details?.approvedBy === operator).length;
    const changes = entries.filter((e) => namesOperator(e, operator)).length;
    summary = `${count} of operator ${operator} from ${from}: ${verified} verified (✓: a worker checked the signature), ${entries.length - verified - changes} unverified`
      + (changes > 0 ? `, ${changes} change${changes === 1 ? '' : 's'} of their key or roles` : '');
  }
  return `${renderTable(['seq', 'at', 'what', 'who', 'result', 'detail'], rows)}\n${summary}\n`;
}

export function registerAuditCommands(program: Command, withClient: WithClient): void {
  const auditCommand = program.command('audit')
    .description('the audit trail: every backup, restore, verification, drill, prune, schedule change and approval, hash-chained')
    .option('--since <when>', 'only entries from then on: a time (2026-11-01) or a duration back from now (24h, 7d)')
    .option('--operator <name>', 'only the entries of this operator: what they did (✓ where a worker verified their signature), what was refused in their name, the recovers they approved')
    .option('--json', 'print the entries as JSON, one per line')
    .action((options: { since?: string; operator?: string; json?: boolean }) => withClient(async (_client, config) => {
      const since = options.since ? parseSince(options.since) : undefined;
      const location = requireLocation(config);
      const store = openAuditStore(location, process.env);
      try {
        const all = await store.list(since ? { since } : {});
        const entries = options.operator === undefined ? all : entriesOfOperator(all, options.operator);
        if (options.json) {
          process.stdout.write(entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
          return;
        }
        process.stdout.write(formatAuditEntries(entries, describeLocation(location), options.operator));
        if (options.operator !== undefined && config.operators && !(options.operator in config.operators)) {
          process.stderr.write(`note: ${options.operator} is not an operator of ${config.deployment} now (operators: ${Object.keys(config.operators).join(', ')}); the trail keeps the entries of operators since removed\n`);
        }
      } finally {
        store.close();
      }
    }));

  auditCommand.command('verify')
    .description('check the trail\'s hash chain, entry by entry and against the ledger\'s head: exits 1 when an entry is missing or altered')
    .action(() => withClient(async (client, config) => {
      const location = requireLocation(config);
      // An S3 trail expires after its lifecycle's days (the rule init sets): a gap at its start can be that.
      const expiry = location.type === 's3' ? { days: auditRetentionDays(location), now: new Date() } : undefined;
      const store = openAuditStore(location, process.env);
      let entries: AuditEntry[];
      let tampered: AuditFinding[];
      try {
        // Each entry as first written: in a versioned (locked) bucket a later PUT or delete marker does not hide it.
        ({ entries, findings: tampered } = await store.readOriginals(expiry ? { expiredAfterDays: expiry.days, now: expiry.now } : {}));
      } finally {
        store.close();
      }
      const operations = await readOperations(client, config);
      const expected = operations && operations.audit.seq > 0 ? { seq: operations.audit.seq, head: operations.audit.head } : undefined;
      const chain = [...tampered, ...verifyChain(entries, expected, expiry)];
      // The heads the backups recorded in their snapshots, out of the ledger's reach.
      const recorded = await readSnapshotHeads(client, config);
      const againstSnapshots = recorded.heads ? checkAgainstSnapshotHeads(entries, recorded.heads) : [];
      const all = [...chain, ...againstSnapshots].sort((a, b) => a.seq - b.seq);
      const findings = problemsOf(all);
      for (const note of all.filter((f) => f.problem === 'expired')) process.stdout.write(`note: ${note.message}\n`);
      if (recorded.note) process.stdout.write(`note: ${recorded.note}\n`);
      if (findings.length === 0) {
        const head = entries.at(-1);
        const first = [...entries].sort((a, b) => a.seq - b.seq)[0]?.seq ?? 1;
        process.stdout.write(`audit trail intact: ${entries.length} entries in ${describeLocation(location)}, chained from seq ${first} to ${head?.seq ?? 0}`
          + `${expected ? `; the head ${expected.head.slice(0, 12)} matches the ledger's` : ' (the ledger did not answer: its head was not compared)'}`
          + `${recorded.newest ? `; it holds the head ${describeSnapshotHead(recorded.newest)} recorded (seq ${recorded.newest.seq})` : ''}`
          + `${operations && operations.audit.pending > 0 ? `; ${operations.audit.pending} event(s) wait in the ledger to be written${operations.audit.lastError ? ` (last error: ${operations.audit.lastError})` : ''}` : ''}\n`);
        return;
      }
      process.stdout.write(`audit trail NOT intact (${describeLocation(location)}): ${findings.length} problem(s)\n`);
      for (const finding of findings) process.stdout.write(`  - ${finding.message}\n`);
      process.stdout.write(`An entry was removed or changed after it was written: find who has write access to that location, and keep the bucket's object versions (or object lock) to see the original${location.type === 's3' && !location.lock ? '; audit.immutable (mode compliance) keeps every entry out of reach from now on' : ''}.\n`);
      process.exitCode = 1;
    }));
}
