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
