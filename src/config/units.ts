/** Parsers for the human units the config accepts: durations ("26h", "30d") and sizes ("10GB"). */

const DURATION_UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "90m", "26h", "30d", "1h30m" → milliseconds; undefined when not a duration. */
export function parseDuration(text: string): number | undefined {
  const match = /^(?:\d+[smhdw])+$/.exec(text.trim());
  if (!match) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.trim().matchAll(/(\d+)([smhdw])/g)) total += Number(amount) * DURATION_UNITS[unit!]!;
  return total > 0 ? total : undefined;
}

const SIZE_UNITS: Record<string, number> = {
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, pb: 1e15,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40, pib: 2 ** 50,
};

/** "500MiB", "10GB", "1.5TB" → bytes; undefined when not a size. */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgtp]i?b|b)?$/i.exec(text.trim());
  if (!match) return undefined;
  return Math.round(Number(match[1]) * SIZE_UNITS[(match[2] ?? 'b').toLowerCase()]!);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

const CRON_FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  { name: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
] as const;

/** Checks a five-field cron expression; returns what is wrong, or undefined when it is valid. */
export function cronProblem(expression: string): string | undefined {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5) return `a cron expression has 5 fields (minute hour day-of-month month day-of-week), this one has ${fields.length}`;
  for (const [index, field] of fields.entries()) {
    const spec = CRON_FIELDS[index]!;
    const names: readonly string[] = 'names' in spec ? spec.names : [];
    const toNumber = (part: string): number | undefined => {
      if (/^\d+$/.test(part)) return Number(part);
      const named = names.indexOf(part.toLowerCase());
      return named >= 0 ? named + spec.min : undefined;
    };
    for (const item of field.split(',')) {
      const [range, step] = item.split('/');
      if (step !== undefined && !/^[1-9]\d*$/.test(step)) return `${spec.name} field "${field}": step "${step}" is not a positive number`;
      if (range === '*' || range === '?') continue;
      const bounds = (range ?? '').split('-');
      if (bounds.length > 2) return `${spec.name} field "${field}" is not a value, range or list`;
      for (const bound of bounds) {
        const value = toNumber(bound);
        if (value === undefined || value < spec.min || value > spec.max) {
          return `${spec.name} field "${field}": "${bound}" is outside ${spec.min}-${spec.max}`;
        }
      }
    }
  }
  return undefined;
}
