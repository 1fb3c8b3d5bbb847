// Reconnection backoff: doubling waits with ±20% jitter (grpc-js's), so the clients of a
// restarted brick do not reconnect in lockstep. The random source and the waits are
// injected: every wait is known in advance, nothing depends on a clock.
import { Logger } from '../../src/core/log';
import { Backoff } from '../../src/rpc/backoff';
import { BACKOFF_MAX_MS, BACKOFF_MIN_MS, Connection, Refused } from '../../src/rpc/connection';
import type { Peer } from '../../src/rpc/peer';
import { Rng } from '../helpers/rng';
import { waitFor as until } from '../helpers/mount';

/** A random source that returns `values` in turn. */
const sequence = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length];
};

describe('Backoff', () => {
  test('without jitter: doubles from the initial wait up to the maximum, and starts over after reset', () => {
    const b = new Backoff({ initialMs: 50, maxMs: 2000, jitter: 0 });
    expect(Array.from({ length: 8 }, () => b.next())).toEqual([50, 100, 200, 400, 800, 1600, 2000, 2000]);
    b.reset();
    expect(b.next()).toBe(50);
  });

  test('each wait is off its nominal value by up to ±20%, as the random source says', () => {
    // random 0 -> -20%, 0.5 -> exact, 1 (the open end, approached) -> +20%
    const b = new Backoff({ initialMs: 100, maxMs: 10_000, random: sequence(0, 0.5, 0.999999, 0.25) });
    expect([b.next(), b.next(), b.next(), b.next()]).toEqual([80, 200, 480, 720]);
  });

  test('at the cap the waits still spread: 2 s ± 20%', () => {
    const rng = new Rng(7);
    const b = new Backoff({ initialMs: BACKOFF_MIN_MS, maxMs: BACKOFF_MAX_MS, random: () => rng.next() });
    const waits = Array.from({ length: 200 }, () => b.next()).slice(10);
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(1600);
    expect(Math.max(...waits)).toBeLessThanOrEqual(2400);
    expect(new Set(waits).size).toBeGreaterThan(50);
  });

  test('two clients with their own random sources do not wait in lockstep', () => {
    const a = new Backoff({ initialMs: 50, maxMs: 2000, random: sequence(0.1, 0.7, 0.3) });
    const b = new Backoff({ initialMs: 50, maxMs: 2000, random: sequence(0.9, 0.2, 0.6) });
    const wa = Array.from({ length: 6 }, () => a.next());
    const wb = Array.from({ length: 6 }, () => b.next());
    expect(wa.every((w, i) => w !== wb[i])).toBe(true);
  });
});

describe('Connection: the reconnect loop waits as the backoff says', () => {
  test('every failed attempt waits the next jittered backoff; a refusal is logged once while it repeats; CHILD_DOWN once', async () => {
    const waits: number[] = [];
    const changes: boolean[] = [];
    const logs: string[] = [];
    let attempts = 0;
    const conn = new Connection({
      log: Logger.create('debug', (l) => logs.push(l)),
      target: 'brick:1/vol',
      dial: async (): Promise<Peer> => {
        attempts++;
        throw attempts % 2 ? new Refused('authentication failed') : new Error('connect ECONNREFUSED');
      },
      pingTimeoutMs: () => 1000,
      onChange: (up) => changes.push(up),
      backoff: new Backoff({ initialMs: 50, maxMs: 2000, random: sequence(0, 1 - 1e-9, 0.5) }),
      sleep: (ms) => (waits.push(ms), waits.length < 8 ? Promise.resolve() : new Promise<void>(() => undefined)),
    });
    conn.start();
    await until(() => waits.length === 8, 5000, 'eight waits');
    // nominal 50, 100, 200, ... 2000; random 0, ~1, 0.5 in turn: -20%, +20%, exact
    expect(waits).toEqual([40, 120, 200, 320, 960, 1600, 1600, 2400]);
    expect(changes).toEqual([false]);
    expect(logs.filter((l) => l.includes('ERROR'))).toEqual([expect.stringMatching(/brick:1\/vol refused this client: authentication failed$/)]);
    expect(conn.dump()).toMatchObject({ connected: false, failedAttempts: 8, lastBackoffMs: 2400 });
    await conn.stop();
  });
});
