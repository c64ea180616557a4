/**
 * A drill started from the Temporal Web UI, as an operator does it: headless Chromium (Debian's
 * `chromium`, driven by playwright-core, which downloads no browser) opens the namespace's
 * workflows page, clicks "Start Workflow", types the workflow id, the task queue
 * `<deployment>.shared`, the type `disasterRecoveryWorkflow` and the small request
 * `{"deployment":"<name>","mode":"drill"}` on the keyboard, and submits. The drill waits for its
 * manual `dns` step, which is approved from the workflow page's "More Actions" → "Send an Update"
 * form with `{"step":"dns","approver":...,"note":...}`.
 *
 * What the Web UI of the `temporal` CLI 1.5.1 (ui-server 2.42.1) offers, as checked here: Start
 * Workflow and Send an Update are on by default (its /api/v1/settings answers
 * StartWorkflowDisabled and WorkflowUpdateDisabled false; `temporal server start-dev` has no
 * option for them, so the dev server only needs `--ui-port` instead of `--headless`). The start
 * form: workflow id (or a random UUID), task queue (it says whether a worker polls it), workflow
 * type as free text (no list to pick from), one JSON payload (so one argument: our requests are
 * one object), json/plain or json/protobuf; "More options" adds search attributes, a start delay
 * and a summary and details, but no timeouts, retry policy or memo. The update form lists the
 * updates the workflow declares (the SDK's metadata query: `approveStep`, or "Custom" to type a
 * name), an update id, and one JSON payload; on success it closes with "Update successful" (a
 * refusal by the workflow's validator, e.g. an approval without an approver, stays in the form as
 * an error), and the answer ("step dns approved by ...") is in the history's Update Completed
 * event. What it does not offer: any check of the request before the run starts (a wrong
 * request fails the run, with the worker's message in its history), the drill's progress outside
 * the Queries tab (`recoveryProgress`), and any identity: the approver is whatever the operator
 * types, as with the `temporal` CLI.
 *
 * Screenshots go to a temporary folder, removed afterwards; with UPDATE_SCREENSHOTS=1 into
 * docs/screenshots/: web-ui-start-drill.png (the filled form), web-ui-approve-dns.png (the update
 * form over the running drill), web-ui-drill-completed.png (the completed drill).
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { initRepositories } from '../src/cli/init';
import { openAuditStore } from '../src/audit/store';
import { auditLocation } from '../src/config/operations-plan';
import { applyOperationsPlan } from '../src/schedules/operations';
import type { RecoveryReport } from '../src/shared/recovery-types';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow } from '../src/workflows';
import { recoveryProgressQuery } from '../src/workflows/recovery';
import { startDeployment, tempDir, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';

const servers = testServers();
/** The dev server's Web UI: scripts/run-tests.ts always starts it (no skipping: a check that does not run is not a check). */
const uiUrl = process.env.TEST_TEMPORAL_UI ?? '';
const chromiumPath = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const keepScreenshots = process.env.UPDATE_SCREENSHOTS === '1';
const docsScreenshots = resolve(__dirname, '..', 'docs', 'screenshots');
/** Where screenshots go: docs/screenshots/ with UPDATE_SCREENSHOTS=1, else a temporary folder (set in before()). */
let screenshots: string | undefined;

/**
 * Types into the UI's JSON editor (CodeMirror) key by key, leaves it (the UI pretty-prints it
 * then, which moves the buttons below), and reads back what it holds: its auto-closed brackets
 * must not double.
 */
async function typeJson(page: Page, editor: Locator, json: string): Promise<void> {
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type(json, { delay: 10 });
  await editor.blur();
  const typed = await waitFor('the editor to take the typed JSON', async () => {
    const text = (await editor.innerText()).trim();
    return text.includes('\n') ? text : undefined;
  }, 5_000, 100).catch(async () => (await editor.innerText()).trim());
  assert.deepEqual(JSON.parse(typed), JSON.parse(json), `the editor holds ${typed}`);
}

async function screenshot(page: Page, name: string): Promise<string> {
  assert.ok(screenshots !== undefined);
  mkdirSync(screenshots, { recursive: true });
  const path = join(screenshots, name);
  writeFileSync(path, await page.screenshot({ type: 'png', scale: 'css' }));
  assert.ok(statSync(path).size > 10_000, `${path} holds a picture`);
  return path;
}

describe('the Temporal Web UI: a drill started from its Start Workflow form, its manual step approved from its update form', () => {
  before(() => assert.ok(uiUrl, 'TEST_TEMPORAL_UI is not set: run through `npm test` (scripts/run-tests.ts starts the dev server with its Web UI)'));
  const work = tempDir('web-ui');
  const app = join(work, 'app');
  let deployment: TestDeployment;
  let browser: Browser;

  before(async () => {
    mkdirSync(join(app, 'applications', 'Acme'), { recursive: true });
    for (let i = 0; i < 10; i += 1) writeFileSync(join(app, 'applications', 'Acme', `cv-${i}.md`), `# CV ${i}\n${'x'.repeat(i * 100)}\n`);
    writeFileSync(join(app, '.env'), 'API_KEY=web-ui-only\n', { mode: 0o600 });
    const passwordEnv = `WEB_UI_TEST_PASSWORD_${uniqueName('p').slice(2).toUpperCase()}`;
    deployment = await startDeployment(`deployment: ${uniqueName('webui')}
staging: { directory: ${join(work, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications] }
  secrets: { type: secrets, root: ${app}, paths: [.env] }
repositories:
  local: { type: local, path: ${join(work, 'repository')}, passwordEnv: ${passwordEnv} }
policies:
  files: { sources: [artifacts, secrets], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 5 }, rpo: 26h, tier: critical }
recovery:
  steps:
    - { name: dns, tier: critical, manual: "point DNS at the new host", deadline: 10m, reminder: 1m }
drills:
  schedule: { cron: "0 6 1 * *" }
  scratchDirectory: ${join(work, 'scratch')}
  rtoTarget: 1h
`, { [passwordEnv]: `pw-${uniqueName('p')}` }, { cleanup: [work] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    await applyOperationsPlan(deployment.client, deployment.config, 'web-ui-test');
    await deployment.client.workflow.execute(backupWorkflow, { taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('backup-files'), args: [{ deployment: deployment.config.deployment, policy: 'files' }] });
    browser = await chromium.launch({ executablePath: chromiumPath });
    screenshots = keepScreenshots ? docsScreenshots : tempDir('web-ui-screenshots');
  });

  after(async () => {
    await browser?.close();
    if (screenshots !== undefined && screenshots !== docsScreenshots) rmSync(screenshots, { recursive: true, force: true });
    await deployment?.close();
    rmSync(work, { recursive: true, force: true });
  });

  test('a drill typed into the Start Workflow form runs from that request, waits for dns, and completes once dns is approved in the update form', async () => {
    const name = deployment.config.deployment;
    const workflowId = uniqueName(`dr-web-${name}`);
    const request = `{"deployment":"${name}","mode":"drill"}`;
    const namespace = encodeURIComponent(servers.namespace);
    const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
    try {
      // The namespace's workflows page, then its Start Workflow button.
      await page.goto(`${uiUrl}/namespaces/${namespace}/workflows`);
      await page.getByRole('button', { name: 'Start Workflow' }).first().click();
      await page.getByTestId('start-workflow').waitFor();
      await page.locator('#workflowId').pressSequentially(workflowId);
      await page.locator('#taskQueue').pressSequentially(sharedTaskQueue(name));
      await page.locator('#workflowType').pressSequentially('disasterRecoveryWorkflow');
      await typeJson(page, page.locator('.cm-content').first(), request);
      await screenshot(page, 'web-ui-start-drill.png');
      await page.getByTestId('start-workflow-button').click();

      // Started from exactly that input, on the deployment's shared queue.
      const handle = deployment.client.workflow.getHandle(workflowId);
      const description = await waitFor('the workflow started from the form', () => handle.describe().catch(() => undefined), 30_000);
      assert.equal(description.type, 'disasterRecoveryWorkflow');
      assert.equal(description.taskQueue, sharedTaskQueue(name));
      const history = await handle.fetchHistory();
      const input = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads ?? [];
      assert.equal(input.length, 1, 'one payload: the request');
      assert.deepEqual(defaultPayloadConverter.fromPayload(input[0]!), { deployment: name, mode: 'drill' });
      const waiting = await waitFor('the drill to wait for the dns step', async () => {
        const progress = await handle.query(recoveryProgressQuery);
        return progress.waitingForApproval.includes('dns') ? progress : undefined;
      }, 120_000);
      assert.equal(waiting.mode, 'drill');
      assert.ok(waiting.done.includes('restore artifacts') && waiting.done.includes('restore secrets'), 'the critical tier is restored before its manual step');

      // The workflow page (the UI redirects to the run's history), then "Send an Update" from its actions menu.
      await page.goto(`${uiUrl}/namespaces/${namespace}/workflows/${encodeURIComponent(workflowId)}`);
      await page.getByText(workflowId).first().waitFor();
      const modal = page.getByRole('dialog', { name: 'Send an Update' });
      const openUpdateForm = async (approval: string): Promise<void> => {
        await page.getByRole('button', { name: 'More Actions' }).click();
        // The menu is rendered twice (wide and narrow layouts): the visible one.
        await page.getByTestId('update-button').filter({ visible: true }).click();
        await modal.waitFor();
        // The update's name from the updates the workflow declares (the SDK's metadata query).
        await modal.getByTestId('update-select-button').click();
        await modal.getByRole('option', { name: 'approveStep' }).click();
        await typeJson(page, modal.locator('.cm-content').first(), approval);
      };
      // An approval without an approver: the workflow's validator refuses it, and the form says why.
      await openUpdateForm('{"step":"dns"}');
      await modal.getByRole('button', { name: 'Submit' }).click();
      await modal.getByText(/name the step and who approves/).first().waitFor();
      await modal.getByText('Cancel', { exact: true }).click();
      await modal.waitFor({ state: 'hidden' });
      assert.deepEqual((await handle.query(recoveryProgressQuery)).waitingForApproval, ['dns'], 'still waiting after the refusal');

      await openUpdateForm('{"step":"dns","approver":"alice@ops","note":"DNS points at vps-2 (Web UI)"}');
      await screenshot(page, 'web-ui-approve-dns.png');
      await modal.getByRole('button', { name: 'Submit' }).click();
      await page.getByText('Update successful').first().waitFor();

      const report = (await handle.result()) as RecoveryReport;
      assert.equal(report.ok, true, report.error);
      assert.equal(report.mode, 'drill');
      assert.deepEqual(report.sources.map((s) => s.source).sort(), ['artifacts', 'secrets']);
      assert.equal(report.timeline.find((e) => e.step === 'dns' && e.event === 'approved')?.detail, 'by alice@ops: DNS points at vps-2 (Web UI)');
      assert.ok(report.cleanup.length > 0 && report.cleanup.every((c) => c.ok), 'the drill removed what it restored');

      // The page shows the run completed, and the update's answer in its history; the approval is in the audit trail with its approver.
      await page.reload();
      await page.getByText('Completed', { exact: true }).first().waitFor({ timeout: 30_000 });
      await page.getByText('"step dns approved by alice@ops"').first().waitFor({ timeout: 30_000 });
      await screenshot(page, 'web-ui-drill-completed.png');
      const store = openAuditStore(auditLocation(deployment.config)!, process.env);
      try {
        const approval = await waitFor('the approval in the audit trail', async () => (await store.list()).find((e) => e.kind === 'approval' && e.workflowId === workflowId), 30_000);
        assert.equal(approval.actor, 'alice@ops');
        assert.equal(approval.details?.step, 'dns');
      } finally {
        store.close();
      }
    } catch (error) {
      // What the browser showed when it went wrong, for whoever reads the failure.
      const dir = tempDir('web-ui-failure');
      await page.screenshot({ path: join(dir, 'page.png'), fullPage: true }).catch(() => undefined);
      writeFileSync(join(dir, 'page.html'), await page.content().catch(() => ''));
      throw Object.assign(error as Error, { message: `${(error as Error).message}\n(the page at ${page.url()}: ${dir}/page.png, page.html)` });
    } finally {
      await page.close();
    }
  });
});
