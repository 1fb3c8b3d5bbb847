/** Resolves after `ms` (the timer does not keep the process alive). */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

/** A wait that ran out: `what` says what was waited for. */
export class Expired extends Error {
  constructor(
    readonly what: string,
    readonly ms: number,
  ) {
    super(`${what}: no answer within ${ms} ms`);
    this.name = 'Expired';
  }
}

/**
 * Waits for `p` at most `ms`; rejects with Expired after that. `p` itself goes on (a
 * promise cannot be cancelled): whoever started it must not depend on it any more.
 */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Expired(what, ms)), ms);
  });
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}

/** A pending timer of a Clock. */
export interface Timer {
  /** Stops it; nothing happens if it already fired. */
  cancel(): void;
}

/**
 * Where a translator gets the time and its timers: the system's, or a test's clock that the
 * test moves by hand (so no test depends on how fast a machine is).
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` once, `ms` from now. A timer never keeps the process alive. */
  timer(ms: number, fn: () => void): Timer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  timer(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};
