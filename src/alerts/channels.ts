/**
 * Delivers one alert notice to one channel: Slack incoming webhook, a generic JSON webhook,
 * PagerDuty Events API v2, or e-mail over SMTP. Secrets (webhook URLs, routing keys, SMTP URLs
 * with a password) are read from the environment variable the channel names and never appear
 * in an error message: addresses are shown as their origin only.
 *
 * Failures are ChannelRejected (permanent: retrying sends the same refused request) or
 * ChannelUnavailable (retryable, with the server's Retry-After when it gave one). Their `name`
 * is the class name, so Temporal uses it as the failure type of the activity that calls this.
 */
import type * as Nodemailer from 'nodemailer';
import { registerSecretValue } from '../logging/logger';
import type { AlertChannel, AlertNotice } from '../shared/operations';

export const DEFAULT_CHANNEL_TIMEOUT_MS = 10_000;
/** Longest Retry-After honoured: a server asking for more is retried after this anyway. */
export const MAX_RETRY_AFTER_MS = 60 * 60 * 1000;
const PAGERDUTY_SUMMARY_MAX = 1024;

export interface ChannelErrorDetails {
  /** HTTP status of the channel's answer. */
  status?: number;
  /** SMTP reply code of the mail server's answer. */
  smtpCode?: number;
  /** The environment variable that is missing or holds something unusable. */
  variable?: string;
}

export abstract class ChannelError extends Error {
  readonly channel: string;
  readonly channelType: AlertChannel['type'];
  readonly status?: number;
  readonly smtpCode?: number;
  readonly variable?: string;
  abstract readonly retryable: boolean;

  constructor(channel: AlertChannel, message: string, details: ChannelErrorDetails = {}) {
    super(`${channel.type} channel "${channel.name}": ${message}`);
    this.channel = channel.name;
    this.channelType = channel.type;
    if (details.status !== undefined) this.status = details.status;
    if (details.smtpCode !== undefined) this.smtpCode = details.smtpCode;
    if (details.variable !== undefined) this.variable = details.variable;
  }
}

/** The channel refused the notice for good (bad request, revoked key, missing secret...). */
export class ChannelRejected extends ChannelError {
  readonly retryable = false;
  constructor(channel: AlertChannel, message: string, details?: ChannelErrorDetails) {
    super(channel, message, details);
    this.name = 'ChannelRejected';
  }
}

/** The channel could not take the notice now (rate limit, outage, network); try again later. */
export class ChannelUnavailable extends ChannelError {
  readonly retryable = true;
  /** When the channel said to come back (Retry-After), capped at MAX_RETRY_AFTER_MS. */
  readonly retryAfterMs?: number;
  constructor(channel: AlertChannel, message: string, details: ChannelErrorDetails & { retryAfterMs?: number } = {}) {
    super(channel, message, details);
    this.name = 'ChannelUnavailable';
    if (details.retryAfterMs !== undefined) this.retryAfterMs = details.retryAfterMs;
  }
}

export interface DeliveryOptions {
  /** Per request (HTTP) or per conversation (SMTP). Default: 10 s. */
  timeoutMs?: number;
}

export async function deliverToChannel(channel: AlertChannel, notice: AlertNotice, env: NodeJS.ProcessEnv, options: DeliveryOptions = {}): Promise<{ status?: number }> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_CHANNEL_TIMEOUT_MS;
  switch (channel.type) {
    case 'slack': {
      const url = httpUrlFromEnv(channel, env, channel.webhookUrlEnv, 'Slack incoming webhook URL');
      return postJson(channel, url, slackMessage(notice), timeoutMs, urlSecrets(url));
    }
    case 'webhook': {
      const url = httpUrlFromEnv(channel, env, channel.urlEnv, 'webhook URL');
      return postJson(channel, url, webhookBody(notice), timeoutMs, urlSecrets(url));
    }
    case 'pagerduty': {
      const routingKey = secretFromEnv(channel, env, channel.routingKeyEnv, 'PagerDuty routing key');
      const url = parseHttpUrl(channel.url);
      if (url === undefined) throw new ChannelRejected(channel, 'its url is not an http(s) URL');
      return postJson(channel, url, pagerDutyEvent(notice, routingKey), timeoutMs, [routingKey]);
    }
    case 'email':
      await sendEmail(channel, notice, env, timeoutMs);
      return {};
  }
}

// ---------------------------------------------------------------------------------------------
// Messages

/** "[CRITICAL]", "[WARNING]" or "[RESOLVED]". */
function label(notice: AlertNotice): string {
  return notice.action === 'resolve' ? 'RESOLVED' : notice.severity.toUpperCase();
}

/** "job-pipeline/artifacts", or just the deployment for a deployment-wide alert. */
function subject(notice: AlertNotice): string {
  return notice.source === '*' ? notice.deployment : `${notice.deployment}/${notice.source}`;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** "[CRITICAL] job-pipeline/artifacts: backup failed ..." */
export function headline(notice: AlertNotice): string {
  return `[${label(notice)}] ${subject(notice)}: ${oneLine(notice.summary)}`;
}

function detailLines(notice: AlertNotice): string[] {
  return Object.entries(notice.details).map(([key, value]) => `${key}: ${value === null ? '-' : String(value)}`);
}

/** Slack's mrkdwn treats these three as markup. */
function slackEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function slackMessage(notice: AlertNotice): Record<string, unknown> {
  const text = slackEscape(headline(notice));
  const facts = [
    `*Cause:* ${notice.cause}`,
    `*Severity:* ${notice.severity}`,
    `*Opened:* ${notice.openedAt}`,
    ...(notice.action === 'resolve' ? [`*Resolved:* ${notice.at}`] : []),
  ];
  const blocks: Array<Record<string, unknown>> = [
    { type: 'section', text: { type: 'mrkdwn', text: truncate(`*${slackEscape(`[${label(notice)}] ${subject(notice)}`)}*\n${slackEscape(notice.summary)}`, 3000) } },
    { type: 'section', fields: facts.map((fact) => ({ type: 'mrkdwn', text: slackEscape(fact) })) },
  ];
  if (notice.fix !== undefined && notice.action === 'trigger') {
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: truncate(`*Fix:* ${slackEscape(notice.fix)}`, 3000) } });
  }
  const details = detailLines(notice);
  if (details.length > 0) {
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: truncate(slackEscape(details.join('\n')), 3000) } });
  }
  blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: slackEscape(`backupctl · alert ${notice.key}`) }] });
  return { text, blocks };
}

export function webhookBody(notice: AlertNotice): Record<string, unknown> {
  return { type: 'backupctl.alert', version: 1, ...notice };
}

export function pagerDutyEvent(notice: AlertNotice, routingKey: string): Record<string, unknown> {
  const event: Record<string, unknown> = {
    routing_key: routingKey,
    event_action: notice.action,
    dedup_key: notice.key,
    client: 'backupctl',
  };
  if (notice.action === 'trigger') {
    event.payload = {
      summary: truncate(`${subject(notice)}: ${oneLine(notice.summary)}`, PAGERDUTY_SUMMARY_MAX),
      source: notice.deployment,
      severity: notice.severity,
      component: notice.source,
      group: notice.deployment,
      class: notice.cause,
      timestamp: notice.at,
      custom_details: { ...notice.details, ...(notice.fix !== undefined ? { fix: notice.fix } : {}), openedAt: notice.openedAt },
    };
  }
  return event;
}

export function emailSubject(notice: AlertNotice): string {
  return truncate(`[backupctl] ${label(notice)} ${subject(notice)}: ${oneLine(notice.summary)}`, 250);
}

export function emailText(notice: AlertNotice): string {
  const lines = [
    `${label(notice)}: ${subject(notice)}`,
    '',
    notice.summary,
    '',
  ];
  if (notice.fix !== undefined && notice.action === 'trigger') lines.push(`Fix: ${notice.fix}`, '');
  lines.push(
    `Cause: ${notice.cause}`,
    `Severity: ${notice.severity}`,
    `Opened at: ${notice.openedAt}`,
    ...(notice.action === 'resolve' ? [`Resolved at: ${notice.at}`] : []),
    `Alert key: ${notice.key}`,
  );
  const details = detailLines(notice);
  if (details.length > 0) lines.push('', 'Details:', ...details.map((line) => `  ${line}`));
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Secrets

function secretFromEnv(channel: AlertChannel, env: NodeJS.ProcessEnv, variable: string, what: string): string {
  const value = env[variable];
  if (value === undefined || value === '') {
    throw new ChannelRejected(channel, `environment variable ${variable} (the ${what}) is not set on this worker`, { variable });
  }
  registerSecretValue(value);
  return value;
}

function parseHttpUrl(text: string): URL | undefined {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
  } catch {
    return undefined;
  }
}

function httpUrlFromEnv(channel: AlertChannel, env: NodeJS.ProcessEnv, variable: string, what: string): URL {
  const url = parseHttpUrl(secretFromEnv(channel, env, variable, what));
  if (url === undefined) throw new ChannelRejected(channel, `environment variable ${variable} does not hold an http(s) URL (the ${what})`, { variable });
  return url;
}

/** The parts of a secret URL that must not be repeated: all but its origin. */
function urlSecrets(url: URL): string[] {
  return [url.href, url.pathname, url.search, url.username, url.password].filter((part) => part.length > 1);
}

/** "https://hooks.slack.com", "smtp://mail.example.com:587": no credentials, path or query. */
function origin(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

/** Removes each secret (and its URL-decoded form) from text a server sent back. */
function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    for (const form of new Set([secret, safeDecode(secret)])) {
      if (form.length >= 3) out = out.split(form).join('[REDACTED]');
    }
  }
  return out;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/** Retry-After as milliseconds from now: delta-seconds or an HTTP-date, capped; undefined if unusable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  let ms: number;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else {
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    ms = Math.max(0, at - now);
  }
  return Math.min(ms, MAX_RETRY_AFTER_MS);
}

/** 408, 429 and 5xx are worth another try; every other 4xx (and anything unexpected) is not. */
function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

async function postJson(channel: AlertChannel, url: URL, body: unknown, timeoutMs: number, secrets: readonly string[]): Promise<{ status: number }> {
  const where = origin(url);
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'backupctl' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    // No `cause`: fetch's errors may carry the full URL, and causes travel into Temporal's history.
    throw new ChannelUnavailable(channel, `cannot reach ${where}: ${networkReason(error, timeoutMs)}`);
  }
  if (response.status >= 200 && response.status < 300) {
    await response.body?.cancel();
    return { status: response.status };
  }
  const answer = await responseSnippet(response, secrets);
  const what = `${where} answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}${answer ? `: ${answer}` : ''}`;
  if (isRetryableStatus(response.status)) {
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
    const later = retryAfterMs === undefined ? '' : ` (retry after ${Math.ceil(retryAfterMs / 1000)} s)`;
    throw new ChannelUnavailable(channel, `${what}${later}`, { status: response.status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
  }
  throw new ChannelRejected(channel, what, { status: response.status });
}

/** The first line or so of an error answer (Slack says "invalid_payload", PagerDuty sends JSON). */
async function responseSnippet(response: Response, secrets: readonly string[]): Promise<string> {
  try {
    const text = await response.text();
    return truncate(oneLine(redact(text, secrets)), 300);
  } catch {
    return '';
  }
}

function networkReason(error: unknown, timeoutMs: number): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) return `no answer within ${timeoutMs / 1000} s`;
  // undici: TypeError("fetch failed") with the socket error (ECONNREFUSED, ENOTFOUND...) as cause.
  const cause = error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
  if (cause && typeof cause.code === 'string') return cause.code;
  return error instanceof Error && error.message === 'fetch failed' ? 'network error' : 'request failed';
}

// ---------------------------------------------------------------------------------------------
// E-mail

interface SmtpFailure {
  code?: string;
  responseCode?: number;
  permanent?: boolean;
  response?: string;
  message?: string;
}

async function sendEmail(channel: Extract<AlertChannel, { type: 'email' }>, notice: AlertNotice, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<void> {
  const smtpUrl = secretFromEnv(channel, env, channel.smtpUrlEnv, 'SMTP URL');
  let url: URL;
  try {
    url = new URL(smtpUrl);
  } catch {
    throw new ChannelRejected(channel, `environment variable ${channel.smtpUrlEnv} does not hold an smtp:// or smtps:// URL`, { variable: channel.smtpUrlEnv });
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') {
    throw new ChannelRejected(channel, `environment variable ${channel.smtpUrlEnv} does not hold an smtp:// or smtps:// URL`, { variable: channel.smtpUrlEnv });
  }
  if (channel.to.length === 0) throw new ChannelRejected(channel, 'it has no recipients');
  const secrets = [smtpUrl, ...urlSecrets(url)];
  if (url.password !== '') registerSecretValue(safeDecode(url.password));
  const where = origin(url);

  // nodemailer is loaded at the first e-mail: a worker without an e-mail channel never holds it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createTransport } = require('nodemailer') as typeof Nodemailer;
  const transport = createTransport({
    url: smtpUrl,
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    dnsTimeout: timeoutMs,
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('deadline'), { code: 'ETIMEDOUT' })), timeoutMs);
    });
    await Promise.race([
      transport.sendMail({ from: channel.from, to: channel.to, subject: emailSubject(notice), text: emailText(notice) }),
      deadline,
    ]);
  } catch (error) {
    throw smtpError(channel, where, (error ?? {}) as SmtpFailure, timeoutMs, secrets);
  } finally {
    clearTimeout(timer);
    transport.close();
  }
}

function smtpError(channel: AlertChannel, where: string, failure: SmtpFailure, timeoutMs: number, secrets: readonly string[]): ChannelError {
  const reply = failure.response ?? failure.message ?? '';
  const said = truncate(oneLine(redact(reply, secrets)), 300);
  if (failure.responseCode !== undefined) {
    const details = { smtpCode: failure.responseCode };
    // nodemailer sets `permanent` from the reply class (5xx except 503).
    const permanent = failure.permanent ?? (failure.responseCode >= 500 && failure.responseCode !== 503);
    const what = `${where} refused the message with SMTP ${failure.responseCode}${failure.code ? ` (${failure.code})` : ''}: ${said}`;
    return permanent ? new ChannelRejected(channel, what, details) : new ChannelUnavailable(channel, what, details);
  }
  switch (failure.code) {
    case 'ETIMEDOUT':
      return new ChannelUnavailable(channel, `${where} did not answer within ${timeoutMs / 1000} s`);
    case 'ENOAUTH':
    case 'EAUTH':
    case 'ECONFIG':
    case 'EENVELOPE':
    case 'EMESSAGE':
      return new ChannelRejected(channel, `${where}: ${failure.code}: ${said}`);
    default:
      // Connection refused, DNS, TLS, a dropped connection: the server may be back soon.
      return new ChannelUnavailable(channel, `cannot deliver through ${where}: ${failure.code ?? 'error'}: ${said}`);
  }
}
