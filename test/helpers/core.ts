// Small helpers shared by the tests of src/core.

/** A promise and the function that resolves it, for gating a step of a test. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Identity check for objects that point at each other (jest could not print or serialise them). */
export function expectSame(actual: unknown, expected: unknown, what: string): void {
  if (actual !== expected) throw new Error(`${what}: expected the very same object`);
}

/** Joins lines so a test reads like the file, with line N at index N-1. */
export function vol(...lines: string[]): string {
  return lines.join('\n') + '\n';
}

/** Lets every pending microtask and immediate run, `rounds` times over. */
export async function flush(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}
