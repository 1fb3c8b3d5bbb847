// The addon's poll (src/fuse/kernel/dev.c) on a socketpair: after a readable event, and after
// pollSpin, the event loop keeps turning for spinUs instead of sleeping in epoll_wait, and
// meanwhile serves everything else (timers, the thread pool); with spinUs 0 it sleeps.
// "Sleeping" is measured with the loop's own idle time (performance.eventLoopUtilization:
// time spent waiting in epoll), not with wall-clock guesses.
import * as fs from 'fs';
import { performance } from 'perf_hooks';
import { SOCK_STREAM, dev } from '../../src/fuse/kernel/dev';
import type { PollHandle } from '../../src/fuse/kernel/dev';

interface Pair {
  events(): number;
  /** Makes the polled end readable once. */
  poke(): void;
  /** What the server does once it answered everything. */
  spin(): void;
  close(): void;
}

/** A poll on one end of a socketpair; its callback reads what came. */
function pair(spinUs: number): Pair {
  const fds = dev.socketpair(SOCK_STREAM);
  if (typeof fds === 'number') throw new Error(`socketpair: ${fds}`);
  const [a, b] = fds;
  dev.setNonblock(a);
  let events = 0;
  const drain = Buffer.alloc(64);
  const h = dev.pollStart(
    a,
    () => {
      events++;
      dev.read(a, drain);
    },
    spinUs,
  ) as PollHandle;
  return {
    events: () => events,
    poke: () => void fs.writeSync(b, 'x'),
    spin: () => dev.pollSpin(h),
    close: () => {
      dev.pollStop(h);
      fs.closeSync(a);
      fs.closeSync(b);
    },
  };
}

const nextTurns = (n: number) => new Promise<void>((resolve) => {
  const turn = (left: number) => (left === 0 ? resolve() : setImmediate(() => turn(left - 1)));
  turn(n);
});

/** Share of `ms` the loop spent waiting for events (1: slept throughout). */
async function idleShare(ms: number): Promise<number> {
  const before = performance.eventLoopUtilization();
  await new Promise((r) => setTimeout(r, ms));
  const d = performance.eventLoopUtilization(before);
  return d.idle / (d.idle + d.active);
}

/**
 * Whether the loop slept through most of a 50 ms window, or spun through most of it. A loaded
 * machine can take the CPU from the test for part of one window either way, so each is judged
 * on the clearest of three windows.
 */
async function sleeping(): Promise<boolean> {
  const shares = [await idleShare(50), await idleShare(50), await idleShare(50)];
  return Math.max(...shares) > 0.5;
}

async function spinning(): Promise<boolean> {
  const shares = [await idleShare(50), await idleShare(50), await idleShare(50)];
  return Math.min(...shares) < 0.5;
}

async function untilEvents(p: { events: () => number }, n: number): Promise<void> {
  for (let i = 0; p.events() < n; i++) {
    if (i > 10_000) throw new Error('no readable event');
    await nextTurns(1);
  }
}

describe('busy polling after a request', () => {
  test('with spinUs, the loop does not sleep after an event, and timers and the thread pool are served meanwhile', async () => {
    // A window far longer than the test: whatever the machine's load, the checks land inside it.
    const p = pair(30_000_000);
    try {
      p.poke();
      await untilEvents(p, 1);
      expect(await spinning()).toBe(true);
      // A timer and a thread-pool read complete while the loop spins.
      const read = fs.promises.readFile(__filename);
      await new Promise((r) => setTimeout(r, 5));
      expect((await read).length).toBeGreaterThan(0);
      // More events are still seen.
      p.poke();
      await untilEvents(p, 2);
    } finally {
      p.close();
    }
  });

  test('with spinUs 0, the loop sleeps between events', async () => {
    const p = pair(0);
    try {
      p.poke();
      await untilEvents(p, 1);
      expect(await sleeping()).toBe(true);
    } finally {
      p.close();
    }
  });

  test('pollSpin opens the window without an event; the window closes when its time is up', async () => {
    const p = pair(30_000_000);
    try {
      p.spin();
      expect(await spinning()).toBe(true);
    } finally {
      p.close();
    }
    // A window of 1 µs has closed by the time the loop turns again.
    const short = pair(1);
    try {
      short.poke();
      await untilEvents(short, 1);
      expect(await sleeping()).toBe(true);
    } finally {
      short.close();
    }
  });

  test('stopping the poll ends the busy window: the loop sleeps again', async () => {
    const p = pair(30_000_000);
    p.poke();
    await untilEvents(p, 1);
    p.close();
    await nextTurns(3);
    expect(await sleeping()).toBe(true);
  });

  test('a negative or missing spinUs is refused', () => {
    const fds = dev.socketpair(SOCK_STREAM) as [number, number];
    try {
      expect(() => dev.pollStart(fds[0], () => undefined, -1)).toThrow(/pollStart\(fd, callback, spinUs\)/);
      expect(() => (dev.pollStart as unknown as (fd: number, cb: () => void) => unknown)(fds[0], () => undefined)).toThrow(/missing arguments/);
    } finally {
      fs.closeSync(fds[0]);
      fs.closeSync(fds[1]);
    }
  });
});
