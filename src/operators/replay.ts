/**
 * Request ids already used. A signed request is good for `signatures.maxAge` (plus the clock
 * skew), so an id need only be remembered that long: older ones are refused as expired anyway.
 *
 * `owner` is the workflow run that used the id (`workflowId/runId`): the verifying activity's
 * own retry claims it again and passes; the same signature on another run is a replay.
 *
 * In memory, one worker remembers only its own requests and forgets them when it restarts. The
 * durable store belongs with the deployment's ledger workflow (one per deployment, shared by its
 * workers): an Update `claimRequest(requestId, owner, expiresAt)` that answers from the ids it
 * holds for the window, so a replay sent to another worker, or after a restart, is refused too.
 */
export interface ReplayStore {
  /** True when the id is new (now claimed by `owner`) or already `owner`'s; false when another run used it. */
  claim(requestId: string, owner: string, expiresAt: Date): Promise<boolean>;
}

export class MemoryReplayStore implements ReplayStore {
  private readonly used = new Map<string, { owner: string; expiresAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  claim(requestId: string, owner: string, expiresAt: Date): Promise<boolean> {
    const now = this.now();
    for (const [id, entry] of this.used) if (entry.expiresAt < now) this.used.delete(id);
    const seen = this.used.get(requestId);
    if (seen) return Promise.resolve(seen.owner === owner);
    this.used.set(requestId, { owner, expiresAt: expiresAt.getTime() });
    return Promise.resolve(true);
  }
}
