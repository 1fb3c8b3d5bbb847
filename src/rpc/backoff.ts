/** How long to wait between attempts: doubling from `initialMs` up to `maxMs`, each wait ±`jitter`. */
export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly multiplier?: number;
  /** The fraction each wait may be off its nominal value, either way (grpc-js: 0.2). */
  readonly jitter?: number;
  /** Uniform in [0, 1): tests inject their own to know every wait. */
  readonly random?: () => number;
}

/**
 * Reconnection backoff with jitter, as grpc-js does it: clients of a brick that restarted
 * spread their reconnections instead of arriving in lockstep.
 */
export class Backoff {
  private nominal: number;
  private readonly multiplier: number;
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(private readonly o: BackoffOptions) {
    this.nominal = o.initialMs;
    this.multiplier = o.multiplier ?? 2;
    this.jitter = o.jitter ?? 0.2;
    this.random = o.random ?? Math.random;
  }

  /** The wait before the next attempt; the one after it is longer (up to maxMs). */
  next(): number {
    const wait = this.nominal * (1 + this.jitter * (2 * this.random() - 1));
    this.nominal = Math.min(this.nominal * this.multiplier, this.o.maxMs);
    return Math.max(0, Math.round(wait));
  }

  /** An attempt succeeded: start from initialMs again. */
  reset(): void {
    this.nominal = this.o.initialMs;
  }
}
