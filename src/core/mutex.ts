import { FopError } from './errors';

/** How long anyone waits for a Mutex unless told otherwise. */
export const DEFAULT_LOCK_WAIT_MS = 30_000;

/**
 * An async mutex: `run` executes critical sections one at a time, in arrival order.
 * Whoever locks it unlocks the same object (there is no way to unlock "through" a pointer
 * someone else may have changed). Every wait for it is bounded: a waiter that does not get
 * the lock in time fails with ETIMEDOUT naming what it waited for, and leaves the queue.
 */
export class Mutex {
  private held = false;
  private readonly queue: (() => void)[] = [];

  /** `what` names the lock in the error a waiter that gives up gets. */
  constructor(readonly what = 'a lock') {}

  get locked(): boolean {
    return this.held;
  }

  /** Waiters queued behind the holder. */
  get waiting(): number {
    return this.queue.length;
  }

  async run<T>(fn: () => Promise<T>, waitMs = DEFAULT_LOCK_WAIT_MS): Promise<T> {
    if (this.held) {
      await this.acquire(waitMs);
    } else {
      this.held = true;
      // The section never starts inside the caller's own synchronous step.
      await undefined;
    }
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  private acquire(waitMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const grant = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = this.queue.indexOf(grant);
        if (i >= 0) this.queue.splice(i, 1);
        reject(new FopError('ETIMEDOUT', `waited ${waitMs} ms for ${this.what}`));
      }, waitMs);
      this.queue.push(grant);
    });
  }

  /** Hands the lock straight to the next waiter, or frees it. */
  private release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.held = false;
  }
}
