/** An "Example:" block under each command's --help: real invocations against examples/vps.yaml. */
import type { Command } from 'commander';
import { ENVIRONMENT_VARIABLES } from '../config/environment';

const CONFIG = 'BACKUP_CONFIG=examples/vps.yaml';

/** Command path (without "backupctl") → example lines. */
export const EXAMPLES: Record<string, string[]> = {
  doctor: [`${CONFIG} backupctl doctor --worker-wait 30`],
  init: [`${CONFIG} backupctl init --repository offsite`],
  schedules: [`${CONFIG} backupctl schedules list --json`],
  'schedules apply': [`${CONFIG} backupctl schedules apply`],
  'schedules list': [`${CONFIG} backupctl schedules list --json`],
  'schedules trigger': [`${CONFIG} backupctl schedules trigger artifacts --wait`],
  'schedules pause': [`${CONFIG} backupctl schedules pause database --note "migration tonight"`],
  'schedules resume': [`${CONFIG} backupctl schedules resume database`],
  backup: [`${CONFIG} backupctl backup --policy artifacts --wait`],
  verify: [`${CONFIG} backupctl verify --wait`],
  drill: [`${CONFIG} backupctl drill start --source mongodb --source master-cv --wait`],
  'drill start': [`${CONFIG} backupctl drill start --source mongodb --source master-cv --wait`],
  'drill list': [`${CONFIG} backupctl drill list --limit 5`, `${CONFIG} backupctl drill list --json`],
  'drill status': [`${CONFIG} backupctl drill status job-pipeline-drill-2026-12-05-a1b2c3`],
  'drill approve': [`${CONFIG} backupctl drill approve job-pipeline-drill-2026-12-05-a1b2c3 dns --note "DNS now points at vps-2"`],
  'drill cancel': [`${CONFIG} backupctl drill cancel job-pipeline-drill-2026-12-05-a1b2c3`],
  'drill report': [`${CONFIG} backupctl drill report job-pipeline-drill-2026-12-05-a1b2c3`],
  recover: [`${CONFIG} backupctl recover --yes --source mongodb --wait`],
  'recover approve': [
    `BACKUP_OPERATOR_KEY=~/.ssh/id_ed25519 ${CONFIG} backupctl recover approve job-pipeline-recover-2026-12-05-a1b2c3`,
    `temporal workflow update execute --workflow-id job-pipeline-recover-2026-12-05-a1b2c3 --name approveRecover --input "$(${CONFIG} backupctl recover approve job-pipeline-recover-2026-12-05-a1b2c3 --print)"`,
  ],
  audit: [`${CONFIG} backupctl audit --since 7d --json`, `${CONFIG} backupctl audit --operator alice`],
  'audit verify': [`${CONFIG} backupctl audit verify`],
  status: [`${CONFIG} backupctl status --json`],
  usage: [`${CONFIG} backupctl usage --repository offsite`, `${CONFIG} backupctl usage --dedup --json`],
  ledger: [`${CONFIG} backupctl ledger rebuild`],
  'ledger rebuild': [`${CONFIG} backupctl ledger rebuild`],
  snapshots: [`${CONFIG} backupctl snapshots --source mongodb --json`],
  restore: [
    `${CONFIG} backupctl restore --source mongodb --target jobs_drill --database jobs`,
    `${CONFIG} backupctl restore --source artifacts --in-place --yes`,
  ],
  rewind: [`${CONFIG} backupctl rewind --repository offsite --to 2026-12-05T06:00:00Z`, `${CONFIG} backupctl rewind --repository offsite --to 2h --add-to-config`],
  archive: [`${CONFIG} backupctl archive --source artifacts`, `${CONFIG} backupctl archive --source mongodb --repository offsite --prefix archives/monthly --json`],
  'archive url': [`curl -fsS "$(${CONFIG} backupctl archive url --source artifacts --hours 2)" | zstd -d | tar -x -C /restore/artifacts`],
  runbook: [`${CONFIG} backupctl runbook --output RUNBOOK.md`],
  operators: [`${CONFIG} backupctl operators list`],
  'operators list': [`${CONFIG} backupctl operators list --json`],
  'operators add': [`${CONFIG} backupctl operators add alice --key ~/.ssh/id_ed25519.pub --role operator --role recoverer`],
  'operators remove': [`${CONFIG} backupctl operators remove alice`],
  worker: [`${CONFIG} BACKUP_HOST=vps-1 backupctl worker`],
  dev: ['backupctl dev --data .data --ui-port 8233'],
};

function path(command: Command): string {
  const names: string[] = [];
  for (let current: Command | null = command; current?.parent; current = current.parent) names.unshift(current.name());
  return names.join(' ');
}

function walk(command: Command, visit: (command: Command) => void): void {
  visit(command);
  for (const sub of command.commands) walk(sub, visit);
}

/** Adds the examples (and the worker's environment variables) to every command's help; a command without one is a programming error. */
export function addExamples(program: Command): void {
  program.addHelpText('after', '\nExample:\n  BACKUP_CONFIG=examples/vps.yaml backupctl doctor\n  backupctl <command> --help   (each command shows an example)');
  walk(program, (command) => {
    if (command === program) return;
    const lines = EXAMPLES[path(command)];
    if (!lines) throw new Error(`no example for "backupctl ${path(command)}": add one to src/cli/examples.ts`);
    command.addHelpText('after', `\nExample:\n${lines.map((line) => `  ${line}`).join('\n')}`);
  });
}

/** The environment variables the worker reads, from src/config/environment.ts. */
export function environmentHelp(): string {
  const names = Object.keys(ENVIRONMENT_VARIABLES) as (keyof typeof ENVIRONMENT_VARIABLES)[];
  const width = Math.max(...names.map((name) => name.length));
  return `\nEnvironment variables:\n${names.map((name) => `  ${name.padEnd(width)}  ${ENVIRONMENT_VARIABLES[name]}`).join('\n')}`;
}
