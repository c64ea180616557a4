/** `backupctl operators list | add | remove`: the people who may sign requests, edited in the config file. */
import { Option, type Command } from 'commander';
import { loadConfig } from '../config/load';
import { addOperator, readPublicKeyFile, removeOperator } from '../operators/config-edit';
import { resolveOperators } from '../operators/directory';
import { ROLES, type Role } from '../operators/roles';
import { UsageError } from './errors';
import { renderTable } from './table';

const RESTART = 'the workers read the operators from their config file again at each request: this counts from the next one on every worker whose config file this is (copy it to the other hosts); the change is written to the audit trail';

const FIRST = 'the first operator: signed requests start when the workers restart with this config (until then they run unsigned requests). Then an admin, with BACKUP_OPERATOR_KEY set, runs backupctl schedules apply to sign the schedules; add a second recoverer too, or no recover can be approved';

export interface OperatorListing {
  signedRequests: boolean;
  operators: { name: string; roles: Role[]; keys: { fingerprint: string; type: string; comment: string; from: string }[] }[];
  problems: string[];
}

export function listOperators(configFile: string): OperatorListing {
  const config = loadConfig(configFile, { checkEnv: false });
  if (!config.operators) return { signedRequests: false, operators: [], problems: [] };
  const directory = resolveOperators(config.operators);
  return {
    signedRequests: true,
    operators: directory.operators.map((o) => ({ name: o.name, roles: o.roles, keys: o.keys.map(({ fingerprint, type, comment, from }) => ({ fingerprint, type, comment, from })) })),
    problems: directory.problems,
  };
}

export function formatOperators(listing: OperatorListing, configFile: string): string {
  if (!listing.signedRequests) {
    return `no operators in ${configFile}: every request runs unsigned (anyone who reaches Temporal can start a recover)\nadd one: backupctl operators add NAME --key ~/.ssh/id_ed25519.pub --role admin`;
  }
  const rows = listing.operators.flatMap((o) => (o.keys.length === 0 ? [[o.name, o.roles.join(', '), '- (no key)', '']] : o.keys.map((k) => [o.name, o.roles.join(', '), k.fingerprint, k.from === 'config' ? k.comment : k.from])));
  const problems = listing.problems.map((p) => `warning: ${p}`);
  return [renderTable(['operator', 'roles', 'key', 'comment / from'], rows), ...problems].join('\n');
}

export function registerOperatorCommands(program: Command, configFile: () => string): void {
  const operators = program.command('operators').description('the people who may sign requests, with their keys and roles (the config\'s operators:)');

  operators.command('list')
    .description('each operator\'s roles and key fingerprints')
    .option('--json', 'print as JSON')
    .action((options: { json?: boolean }) => {
      const listing = listOperators(configFile());
      process.stdout.write(options.json ? `${JSON.stringify(listing, null, 2)}\n` : `${formatOperators(listing, configFile())}\n`);
    });

  operators.command('add <name>')
    .description('add an operator (or replace the key and roles of one of that name) in the config file, its comments kept; for an operator whose keys are in an allowedSignersFile, the key is added to that file')
    .requiredOption('--key <file>', 'the operator\'s OpenSSH public key file (e.g. ~/.ssh/id_ed25519.pub)')
    .addOption(new Option('--role <role...>', 'a role (repeat for several)').choices(ROLES).makeOptionMandatory())
    .action((name: string, options: { key: string; role: Role[] }) => {
      if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) throw new UsageError(`operator name "${name}": expected lower-case letters, digits and dashes (at most 63), such as alice or ops-oncall`);
      const key = readPublicKeyFile(options.key);
      const first = !loadConfig(configFile(), { checkEnv: false }).operators;
      const change = addOperator(configFile(), name, key, options.role);
      process.stdout.write(`${change.action} operator ${name} (${[...new Set(options.role)].join(', ')}), key ${key.fingerprint}, in ${configFile()}\n${first ? FIRST : RESTART}\n`);
    });

  operators.command('remove <name>')
    .description('remove an operator from the config file (the workers refuse their signatures from the next request)')
    .action((name: string) => {
      const before = loadConfig(configFile(), { checkEnv: false }).operators?.[name];
      const change = removeOperator(configFile(), name);
      const file = before?.allowedSignersFile ? `; their lines in ${before.allowedSignersFile} stay: delete them there too` : '';
      process.stdout.write(`${change.action} operator ${name} from ${configFile()}${file}\n${RESTART}\n`);
    });
}
