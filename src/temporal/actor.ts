/** Who is acting, for the audit trail: the operating-system user and the machine ("alice@vps-1"). */
import { hostname, userInfo } from 'node:os';

export function currentActor(): string {
  let user = process.env.USER ?? 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // A uid without a passwd entry (some containers): the environment's USER, or unknown.
  }
  return `${user}@${hostname()}`;
}
