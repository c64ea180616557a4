/**
 * The secrets the config names, read and registered for scrubbing when a worker (or a CLI command
 * that uses them) starts: a value is hidden from logs, failures, hook output, the timeline and
 * the history before any activity has touched it, not from the moment one first reads it.
 */
import { registerSecretValue } from '../logging/logger';
import type { Config } from './schema';

/**
 * The names of every variable the config points at: each field ending in `Env` (passwordEnv,
 * accessKeyIdEnv, uriEnv, webhookUrlEnv, heartbeatUrlEnv...) and each `env: [NAME, ...]` list
 * (the variables a recovery step is handed), wherever they sit.
 */
export function configuredSecretVariables(config: Config): string[] {
  const found = new Set<string>();
  const walk = (value: unknown, depth: number): void => {
    if (depth > 10 || value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) {
      for (const item of value) walk(item, depth + 1);
      return;
    }
    for (const [key, child] of Object.entries(value)) {
      if (key.endsWith('Env') && typeof child === 'string') found.add(child);
      else if (key === 'env' && Array.isArray(child)) {
        for (const name of child) if (typeof name === 'string') found.add(name);
      } else walk(child, depth + 1);
    }
  };
  walk(config, 0);
  return [...found].sort();
}

/** The password inside a URL value (mongodb://user:pass@host), raw and decoded: an error may quote either. */
function embeddedPasswords(value: string): string[] {
  let password = '';
  try {
    password = new URL(value).password;
  } catch {
    return [];
  }
  if (!password) return [];
  try {
    return [password, decodeURIComponent(password)];
  } catch {
    return [password];
  }
}

/** Registers the value of every variable the config names that is set; returns their names. */
export function registerConfiguredSecrets(config: Config, env: NodeJS.ProcessEnv = process.env): string[] {
  const registered: string[] = [];
  for (const variable of configuredSecretVariables(config)) {
    const value = env[variable];
    if (!value) continue;
    registerSecretValue(value);
    for (const password of embeddedPasswords(value)) registerSecretValue(password);
    registered.push(variable);
  }
  return registered;
}
