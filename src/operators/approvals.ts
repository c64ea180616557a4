/**
 * The second person of a recover: an approval is a signed request of its own (action
 * `recover-approve`, over the recover's workflow id), verified like any other, and refused when
 * it comes from the operator (by name or by key) who started the recover.
 */
import { NotAuthorized } from './errors';
import { verifyRequest, type VerifiedOperator, type VerifyContext, type VerifyInput } from './verification';

export async function verifyApproval(input: Omit<VerifyInput, 'action'>, starter: Pick<VerifiedOperator, 'name' | 'fingerprint'>, context: VerifyContext): Promise<VerifiedOperator> {
  const approver = await verifyRequest({ ...input, action: 'recover-approve' }, context);
  if (approver.name === starter.name || approver.fingerprint === starter.fingerprint) {
    throw new NotAuthorized(
      `recover-approve refused: ${approver.name} started this recover and cannot also approve it; a second recoverer must. Nothing was written`,
      'same-person', 'ask another operator with role recoverer to approve it (backupctl recover approve <workflow id>, with their own BACKUP_OPERATOR_KEY)',
      { roleNeeded: 'recoverer', operator: approver.name, fingerprint: approver.fingerprint },
    );
  }
  return approver;
}
