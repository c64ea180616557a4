/** Parsers for commander's argParser: a wrong value stops the command with a clear message (exit 2). */
import { InvalidArgumentError } from 'commander';
import { parseDuration } from '../config/units';

/** A number of seconds ("15", "2.5") or a duration ("30s", "2m", "1h30m") → milliseconds. */
export function secondsOption(value: string): number {
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const ms = parseDuration(text);
  if (ms === undefined) throw new InvalidArgumentError(`expected a number of seconds or a duration such as 30s or 2m, got "${value}"`);
  return ms;
}

/** A duration ("30s", "6h", "7d") → milliseconds. */
export function durationOption(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new InvalidArgumentError(`expected a duration such as 30s, 15m, 6h or 7d, got "${value}"`);
  return ms;
}

/** A TCP port, 1-65535. */
export function portOption(value: string): number {
  const port = /^\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new InvalidArgumentError(`expected a port number from 1 to 65535, got "${value}"`);
  return port;
}

/** A whole number ≥ min. */
export function integerOption(min = 0): (value: string) => number {
  return (value) => {
    const number = /^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(number) || number < min) throw new InvalidArgumentError(`expected a whole number of at least ${min}, got "${value}"`);
    return number;
  };
}
