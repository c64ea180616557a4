/**
 * `backupctl audit --operator NAME`: the entries of one operator, each saying whether a worker
 * verified who it was (pure, on entries as the ledger writes them).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { detailText, entriesOfOperator, formatAuditEntries, whoText } from '../src/cli/audit';
import type { AuditEntry } from '../src/shared/operations';

const ALICE = 'SHA256:ab12cd34ef56gh78ij90kl12mn34op56qr78st90uvw';
const RITA = 'SHA256:rr11ss22tt33uu44vv55ww66xx77yy88zz99aa00bbc';
const RAVI = 'SHA256:vv99ww88xx77yy66zz55aa44bb33cc22dd11ee00ffg';

let seq = 0;
function entry(fields: Partial<AuditEntry> & Pick<AuditEntry, 'kind' | 'actor' | 'result'>): AuditEntry {
  seq += 1;
  return { deployment: 'app', seq, prevHash: '', hash: `h${seq}`, at: `2026-12-05T10:00:0${seq % 10}.123Z`, ...fields };
}

const trail: AuditEntry[] = [
  // A backup alice signed, verified by the worker.
  entry({ kind: 'backup', actor: 'alice', result: 'ok', workflowId: 'app-backup-1', sources: ['files'], snapshotIds: ['0123456789abcdef'], details: { startedAt: '2026-12-05T09:59:00Z', verified: true, fingerprint: ALICE, claimedBy: 'alice@laptop', policy: 'daily' } }),
  // A scheduled run: authorized by the admin's signature in the schedule.
  entry({ kind: 'backup', actor: 'alice', result: 'ok', workflowId: 'app-daily-2026', details: { verified: true, fingerprint: ALICE, schedule: 'app-daily' } }),
  // A recover alice tried without the role: refused, her key known, not verified.
  entry({ kind: 'recover', actor: 'alice', result: 'refused', workflowId: 'app-recover-0', details: { action: 'recover', reason: 'role', verified: false, roleNeeded: 'recoverer', operator: 'alice', fingerprint: ALICE } }),
  // An unsigned request: nobody's key, only what the client claimed.
  entry({ kind: 'drill', actor: 'unverified (claims root@vm)', result: 'refused', details: { action: 'drill', reason: 'unsigned', verified: false, roleNeeded: 'operator', operator: null, fingerprint: null } }),
  // A recover rita started and ravi approved: two people, both verified.
  entry({ kind: 'recover', actor: 'rita', result: 'ok', workflowId: 'app-recover-1', details: { verified: true, fingerprint: RITA, claimedBy: 'rita@ops', approvedBy: 'ravi', approverFingerprint: RAVI } }),
  // A deployment without operators: the name the client gave, never checked.
  entry({ kind: 'restore', actor: 'root@vm', result: 'ok', details: { verified: false, target: '/srv/restore' } }),
  // Written by the CLI itself (a schedule change) and by the ledger (an alert).
  entry({ kind: 'schedule-change', actor: 'alice@laptop', result: 'paused', details: { schedule: 'app-daily', note: null } }),
  entry({ kind: 'alert', actor: 'ledger', result: 'trigger', details: { cause: 'backup-failed', severity: 'critical' } }),
  // A worker read the config file again: alice's roles changed, mallory was removed.
  entry({ kind: 'operators', actor: 'worker', result: 'changed', details: { added: null, removed: 'mallory', changed: 'alice, ravi', source: 'config file, read again by the worker' } }),
];

describe('backupctl audit --operator', () => {
  test('keeps the entries whose actor is the operator, verified or refused, and the recovers they approved', () => {
    assert.deepEqual(entriesOfOperator(trail, 'alice').map((e) => [e.kind, e.result]), [['backup', 'ok'], ['backup', 'ok'], ['recover', 'refused'], ['operators', 'changed']]);
    assert.deepEqual(entriesOfOperator(trail, 'ravi').map((e) => [e.kind, e.actor]), [['recover', 'rita'], ['operators', 'worker']]);
    assert.deepEqual(entriesOfOperator(trail, 'mallory').map((e) => e.details?.removed), ['mallory']);
    // A part of a name is no match ("rav" in "ravi").
    assert.deepEqual(entriesOfOperator(trail, 'rav'), []);
    assert.deepEqual(entriesOfOperator(trail, 'rita').map((e) => e.workflowId), ['app-recover-1']);
    // user@host claims and the ledger are nobody's operator name.
    assert.deepEqual(entriesOfOperator(trail, 'root'), []);
    assert.deepEqual(entriesOfOperator(trail, 'root@vm').map((e) => e.kind), ['restore']);
  });

  test('who: ✓ and the key for a verified operator, "(unverified)" for any other name, both people of a recover', () => {
    assert.deepEqual(trail.map(whoText), [
      'alice ✓ SHA256:ab12cd34…',
      'alice ✓ SHA256:ab12cd34…',
      'alice (unverified)',
      'unverified (claims root@vm)',
      'rita ✓ SHA256:rr11ss22…, approved by ravi ✓ SHA256:vv99ww88…',
      'root@vm (unverified)',
      'alice@laptop (unverified)',
      'ledger',
      'worker',
    ]);
    // A refusal for the role (or the second person, or a replay) since the worker records that the signature itself was good.
    const refusedSigned = entry({ kind: 'recover', actor: 'alice', result: 'refused', details: { reason: 'role', verified: false, signatureVerified: true, fingerprint: ALICE } });
    assert.equal(whoText(refusedSigned), 'alice ✓ SHA256:ab12cd34… (not allowed)');
    assert.equal(detailText(refusedSigned), 'reason=role');
  });

  test('the detail column keeps what the who column does not say: the claim, the schedule, why it was refused', () => {
    assert.equal(detailText(trail[0]!), 'files snapshots 01234567 claimedBy=alice@laptop policy=daily');
    assert.equal(detailText(trail[1]!), 'schedule=app-daily');
    assert.equal(detailText(trail[2]!), 'action=recover reason=role roleNeeded=recoverer fingerprint=SHA256:ab12cd34…');
    assert.equal(detailText(trail[4]!), 'claimedBy=rita@ops');
  });

  test('the listing counts what was verified', () => {
    const text = formatAuditEntries(entriesOfOperator(trail, 'alice').slice(0, 3), '/srv/audit');
    assert.match(text, /^seq +at +what +who +result +detail$/m);
    assert.match(text, /\b1 +2026-12-05T10:00:01Z +backup +alice ✓ SHA256:ab12cd34… +ok +files snapshots 01234567/);
    assert.match(text, /\n3 entries from \/srv\/audit\n$/);
    const alice = formatAuditEntries(entriesOfOperator(trail, 'alice'), '/srv/audit', 'alice');
    assert.match(alice, /\n4 entries of operator alice from \/srv\/audit: 2 verified \(✓: a worker checked the signature\), 1 unverified, 1 change of their key or roles\n$/);
    assert.match(alice, /operators +worker +changed +removed=mallory changed=alice, ravi source=/);
    assert.match(alice, /recover +alice \(unverified\) +refused/);
    assert.match(formatAuditEntries(entriesOfOperator(trail, 'ravi').slice(0, 1), '/srv/audit', 'ravi'), /\n1 entry of operator ravi from \/srv\/audit: 1 verified \(✓: a worker checked the signature\), 0 unverified\n$/);
  });
});
