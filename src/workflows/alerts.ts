/**
 * Delivers one alert notice (trigger or resolve) to every channel routed its severity. Started by
 * the ledger and left running on its own (a channel that is down is retried for a day without
 * holding up the ledger); each channel is one activity, so one down channel never delays another.
 */
import { ActivityFailure, ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AlertChannel, AlertNotice } from '../shared/operations';

export interface AlertDeliveryInput {
  deployment: string;
  notice: AlertNotice;
  channels: AlertChannel[];
}

export interface AlertDelivery {
  channel: string;
  delivered: boolean;
  error?: string;
}

/** Retried with backoff up to 10 minutes apart for a day; a `Retry-After` sets the next delay. 4xx refusals are final. */
const delivery = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '24 hours',
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '10 minutes', nonRetryableErrorTypes: ['AlertChannelRejected'] },
});

export async function alertDeliveryWorkflow(input: AlertDeliveryInput): Promise<AlertDelivery[]> {
  const results = await Promise.all(input.channels.map(async (channel): Promise<AlertDelivery> => {
    try {
      await delivery.deliverAlert({ channel, notice: input.notice });
      return { channel: channel.name, delivered: true };
    } catch (error) {
      const cause = error instanceof ActivityFailure && error.cause ? error.cause : error;
      return { channel: channel.name, delivered: false, error: cause instanceof Error ? cause.message : String(cause) };
    }
  }));
  const failed = results.filter((r) => !r.delivered);
  // Failed when no channel got it: the Web UI and `temporal workflow list` show it.
  if (failed.length > 0 && failed.length === results.length) {
    throw ApplicationFailure.create({ type: 'AlertNotDelivered', message: `alert ${input.notice.key} (${input.notice.action}) reached no channel: ${failed.map((f) => `${f.channel}: ${f.error}`).join('; ')}`, nonRetryable: true });
  }
  return results;
}
