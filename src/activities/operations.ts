/**
 * Operations activities: an alert notice to one channel, a batch of audit entries to the store,
 * a ping to the outside heartbeat monitor. None of them can fail a backup: the ledger and the
 * delivery workflow call the first two, and the backup catches the third.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { deliverToChannel, ChannelRejected, ChannelUnavailable } from '../alerts/channels';
import { chainAfter, continueChain } from '../audit/chain';
import { openAuditStore } from '../audit/store';
import type { Logger } from '../logging/logger';
import type { AlertChannel, AlertNotice, AuditEvent, AuditLocation } from '../shared/operations';
import { asFailure } from './failures';
import { registerSecretValue } from '../logging/logger';
import { heartbeatUrl, postHeartbeat, type HeartbeatSignal } from '../monitoring/heartbeat-ping';

export interface OperationsDependencies {
  logger: Logger;
  env: NodeJS.ProcessEnv;
}

export interface AppendAuditInput {
  location: AuditLocation;
  deployment: string;
  /** The last entry already written (0 for none) and its hash: the batch continues the chain from there. */
  afterSeq: number;
  prevHash: string;
  events: AuditEvent[];
}

export { heartbeatUrl, type HeartbeatSignal };

export function createOperationsActivities({ logger, env }: OperationsDependencies) {
  return {
    async deliverAlert({ channel, notice }: { channel: AlertChannel; notice: AlertNotice }): Promise<{ status?: number }> {
      // The channel's URL, key or SMTP password is scrubbed from every log line from now on.
      const variable = 'webhookUrlEnv' in channel ? channel.webhookUrlEnv : 'urlEnv' in channel ? channel.urlEnv : 'routingKeyEnv' in channel ? channel.routingKeyEnv : channel.smtpUrlEnv;
      const secret = env[variable];
      if (secret) registerSecretValue(secret);
      try {
        const result = await deliverToChannel(channel, notice, env);
        logger.info({ channel: channel.name, type: channel.type, key: notice.key, action: notice.action }, 'alert delivered');
        return result;
      } catch (error) {
        if (error instanceof ChannelRejected) {
          logger.error({ channel: channel.name, key: notice.key, err: error.message }, 'alert refused by its channel (not retried)');
          throw ApplicationFailure.create({ type: 'AlertChannelRejected', message: error.message, nonRetryable: true });
        }
        if (error instanceof ChannelUnavailable) {
          logger.warn({ channel: channel.name, key: notice.key, err: error.message, retryAfterMs: error.retryAfterMs }, 'alert channel unavailable; retried');
          throw ApplicationFailure.create({
            type: 'AlertChannelUnavailable', message: error.message,
            ...(error.retryAfterMs !== undefined ? { nextRetryDelay: error.retryAfterMs } : {}),
          });
        }
        throw error;
      }
    },

    /** Chains the events after the ledger's head and writes them; returns the new head. A retry writes the same entries again (idempotent). */
    async appendAudit({ location, deployment, afterSeq, prevHash, events }: AppendAuditInput): Promise<{ seq: number; head: string }> {
      const store = openAuditStore(location, env);
      try {
        // A ledger that has never written (new, or rebuilt after Temporal's data was lost)
        // continues the stored trail; otherwise it chains onto its own head.
        const stored = afterSeq === 0 ? await store.readHead() : null;
        const next = afterSeq === 0
          ? continueChain(deployment, stored ? await store.list({ fromSeq: Math.max(1, stored.seq - events.length + 1) }) : [], events)
          : chainAfter(deployment, { seq: afterSeq, head: prevHash }, events);
        if (stored) logger.info({ storedHead: stored.seq }, 'audit trail continued from its stored head (the ledger had not written before)');
        if (next.entries.length > 0) await store.append(next.entries);
        return { seq: next.seq, head: next.head };
      } catch (error) {
        throw asFailure(error);
      } finally {
        store.close();
      }
    },

    /** One ping; the caller ignores a failure (an outside monitor that is down must not fail a backup). */
    async pingHeartbeat({ urlEnv, signal, message }: { urlEnv: string; signal: HeartbeatSignal; message?: string }): Promise<number> {
      const base = env[urlEnv];
      if (base) registerSecretValue(base);
      if (!base) throw ApplicationFailure.create({ type: 'ConfigInvalid', message: `environment variable ${urlEnv} (the policy's heartbeatUrlEnv) is not set`, nonRetryable: true });
      try {
        heartbeatUrl(base, signal);
      } catch {
        throw ApplicationFailure.create({ type: 'ConfigInvalid', message: `${urlEnv} does not hold a URL`, nonRetryable: true });
      }
      // The URL is a secret of sorts (anyone holding it can ping): an error names its origin only.
      return postHeartbeat(base, signal, message ?? '');
    },
  };
}
