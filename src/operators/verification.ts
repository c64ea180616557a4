/**
 * The worker's side: who signed this request, and may they? The signed text is rebuilt here from
 * what will actually run (the action derived from the request, the request itself, the workflow
 * id), so a signature over anything else does not verify. Refusals are NotAuthorized, naming the
 * reason and, for a role, the role needed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config/schema';
import { parseDuration } from '../config/units';
import { signedText, type RequestProof } from './canonical';
import { allowedSignersText, resolveOperators, type ResolvedOperator } from './directory';
import { NotAuthorized } from './errors';
import { fingerprintOf, SIGNATURE_NAMESPACE } from './keys';
import type { ReplayStore } from './replay';
import { mayDo, roleNeeded, type Action, type Role } from './roles';
import { runSshKeygen } from './ssh-keygen';

export interface VerifiedOperator {
  name: string;
  /** SHA256:… of the key that signed. */
  fingerprint: string;
  roles: Role[];
  requestId: string;
  signedAt: string;
}

export interface VerifyInput {
  action: Action;
  /** The request as the workflow got it, without its proof. */
  request: unknown;
  workflowId: string;
  /** The run: a retry of the verifying activity in the same run is not a replay. */
  runId: string;
  proof: RequestProof | undefined;
  /**
   * A run its schedule started: the proof is the one `schedules apply` signed into the schedule
   * (over the action "schedules" and the schedule's id as `workflowId`), so it is checked for an admin's key and signature,
   * not for age or reuse (the schedule sends the same request at every run).
   */
  schedule?: boolean;
}

export interface VerifyContext {
  config: Pick<Config, 'operators' | 'signatures'>;
  replayStore: ReplayStore;
  now?: Date;
  /** For tests: where allowedSignersFile is read. */
  readFile?: (file: string) => string;
}

export const DEFAULT_MAX_AGE = '5m';
export const DEFAULT_CLOCK_SKEW = '1m';

const HOW_TO_SIGN = 'start it with backupctl as an operator holding that role (BACKUP_OPERATOR_KEY names your key); an admin grants roles with backupctl operators add NAME --key FILE.pub --role ROLE';

/** The key inside an armored SSHSIG block (magic, version, then the public key as an SSH string). */
export function signatureFingerprint(armored: string): string | undefined {
  const body = /-----BEGIN SSH SIGNATURE-----([\s\S]*?)-----END SSH SIGNATURE-----/.exec(armored)?.[1]?.replace(/\s+/g, '');
  if (!body) return undefined;
  const bytes = Buffer.from(body, 'base64');
  if (bytes.length < 14 || bytes.subarray(0, 6).toString('latin1') !== 'SSHSIG') return undefined;
  const length = bytes.readUInt32BE(10);
  if (length <= 0 || 14 + length > bytes.length) return undefined;
  return fingerprintOf(bytes.subarray(14, 14 + length).toString('base64'));
}

function proofProblem(proof: RequestProof): string | undefined {
  if (typeof proof.requestId !== 'string' || !/^[A-Za-z0-9-]{16,64}$/.test(proof.requestId)) return 'its requestId is not an id of 16-64 letters, digits and dashes';
  if (typeof proof.signedAt !== 'string' || Number.isNaN(Date.parse(proof.signedAt))) return 'its signedAt is not an ISO time';
  if (typeof proof.signature !== 'string' || proof.signature.length > 16_384 || !proof.signature.includes('BEGIN SSH SIGNATURE')) return 'its signature is not an armored SSH signature';
  return undefined;
}

/** Throws NotAuthorized unless `input` is signed, recently, once, by an operator whose roles allow its action. */
export async function verifyRequest(input: VerifyInput, context: VerifyContext): Promise<VerifiedOperator> {
  const needed = input.schedule ? roleNeeded('schedules') : roleNeeded(input.action);
  const refuse = (message: string, reason: NotAuthorized['reason'], fix = HOW_TO_SIGN, details: NotAuthorized['details'] = {}): never => {
    throw new NotAuthorized(`${input.action} refused: ${message}. Nothing was run`, reason, fix, { roleNeeded: needed, ...details });
  };
  const operators = context.config.operators;
  if (!operators) throw new Error('verifyRequest needs a config with operators (without them every request runs, as before)');
  const { proof } = input;
  if (!proof) return refuse(`the request is unsigned, and this deployment runs only requests signed by an operator (a ${input.action} needs role ${needed})`, 'unsigned');
  const problem = proofProblem(proof);
  if (problem) return refuse(`the request's proof is malformed: ${problem}`, 'malformed');

  const now = (context.now ?? new Date()).getTime();
  const maxAge = parseDuration(context.config.signatures?.maxAge ?? DEFAULT_MAX_AGE)!;
  const skew = parseDuration(context.config.signatures?.clockSkew ?? DEFAULT_CLOCK_SKEW)!;
  const signedAt = Date.parse(proof.signedAt);
  const clockFix = 'sign and send it again now (the signer\'s and the worker\'s clocks must agree within signatures.clockSkew; run NTP on both)';
  if (!input.schedule && now - signedAt > maxAge) return refuse(`the signature is from ${proof.signedAt}, older than signatures.maxAge (${context.config.signatures?.maxAge ?? DEFAULT_MAX_AGE})`, 'expired', clockFix);
  if (signedAt - now > skew) return refuse(`the signature is dated ${proof.signedAt}, in the future beyond signatures.clockSkew (${context.config.signatures?.clockSkew ?? DEFAULT_CLOCK_SKEW})`, 'future', clockFix);

  const fingerprint = signatureFingerprint(proof.signature);
  if (!fingerprint) return refuse('the signature is not an SSH signature ssh-keygen -Y sign makes', 'malformed');
  const directory = resolveOperators(operators, context.readFile);
  const holders = directory.operators.filter((operator) => operator.keys.some((key) => key.fingerprint === fingerprint));
  if (holders.length === 0) {
    return refuse(`key ${fingerprint} is no operator's key`, 'unknown-key', 'an admin adds the key: backupctl operators add NAME --key FILE.pub --role ROLE (then the workers load the config again)', { fingerprint });
  }
  if (holders.length > 1) return refuse(`key ${fingerprint} is listed for several operators (${holders.map((o) => o.name).join(', ')}): one key, one person`, 'unknown-key', 'give each operator their own key in the config or allowed_signers file', { fingerprint });
  const operator: ResolvedOperator = holders[0]!;

  // A schedule's proof is over the action "schedules" (signedScheduleRequest): it never verifies as a direct request, nor a direct one as a schedule's.
  const text = signedText({ action: input.schedule ? 'schedules' : input.action, request: input.request, workflowId: input.workflowId, requestId: proof.requestId, signedAt: proof.signedAt });
  if (!(await signatureVerifies(operator.name, proof.signature, text, allowedSignersText({ operators: [operator], problems: [] })))) {
    return refuse(`the signature of ${operator.name} (${fingerprint}) does not match this request: it was signed for another action, request or workflow, or altered`, 'bad-signature',
      'sign the request as it is sent (backupctl does); a request edited after signing is refused', { operator: operator.name, fingerprint });
  }
  if (input.schedule && !mayDo(operator.roles, 'schedules')) {
    return refuse(`the schedule's request was signed by ${operator.name} (roles: ${operator.roles.join(', ')}), who lacks role admin, which signing schedules needs`, 'role',
      'an admin runs backupctl schedules apply again (it signs every schedule with their key)', { operator: operator.name, fingerprint });
  }
  if (!input.schedule && !mayDo(operator.roles, input.action)) {
    return refuse(`${operator.name} (roles: ${operator.roles.join(', ')}) lacks role ${needed}, which a ${input.action} needs`, 'role',
      `ask an operator with role ${needed}, or an admin to grant it: backupctl operators add ${operator.name} --key FILE.pub --role ${needed} (with the roles ${operator.name} keeps)`, { operator: operator.name, fingerprint });
  }
  const expiresAt = new Date(signedAt + maxAge + skew);
  if (!input.schedule && !(await context.replayStore.claim(proof.requestId, `${input.workflowId}/${input.runId}`, expiresAt))) {
    return refuse(`request id ${proof.requestId} of ${operator.name} was already used: a signed request runs once`, 'replayed', 'sign a new request (run the backupctl command again)', { operator: operator.name, fingerprint });
  }
  return { name: operator.name, fingerprint, roles: operator.roles, requestId: proof.requestId, signedAt: proof.signedAt };
}

async function signatureVerifies(principal: string, signature: string, text: string, allowedSigners: string): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'backupctl-verify-'));
  try {
    writeFileSync(join(dir, 'allowed_signers'), allowedSigners, { mode: 0o600 });
    writeFileSync(join(dir, 'request.sig'), `${signature}\n`, { mode: 0o600 });
    const result = await runSshKeygen(['-Y', 'verify', '-n', SIGNATURE_NAMESPACE, '-I', principal, '-f', join(dir, 'allowed_signers'), '-s', join(dir, 'request.sig')], text);
    return result.code === 0 && result.stdout.startsWith('Good ');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
