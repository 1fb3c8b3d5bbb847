/**
 * An async mutex: `run` executes critical sections one at a time, in arrival order.
 * Whoever locks it unlocks the same object (there is no way to unlock "through" a pointer
 * someone else may have changed).
 */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private holders = 0;

  get locked(): boolean {
    return this.holders > 0;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    let release!: () => void;
    const prev = this.tail;
    this.tail = new Promise<void>((r) => (release = r));
    this.holders++;
    await prev;
    try {
      return await fn();
    } finally {
      this.holders--;
      release();
    }
  }
}
