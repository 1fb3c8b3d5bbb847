import { Mutex } from '../../src/core/mutex';
import { deferred } from '../helpers/core';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('Mutex', () => {
  it('is unlocked at first and runs a section, returning its value', async () => {
    const m = new Mutex();
    expect(m.locked).toBe(false);
    await expect(m.run(async () => 42)).resolves.toBe(42);
    expect(m.locked).toBe(false);
  });

  it('runs concurrent sections one at a time, in arrival order', async () => {
    const m = new Mutex();
    const log: string[] = [];
    let inside = 0;
    let maxInside = 0;
    const section = (id: number, awaits: number) =>
      m.run(async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        log.push(`start ${id}`);
        for (let i = 0; i < awaits; i++) await tick();
        log.push(`end ${id}`);
        inside--;
        return id;
      });
    // Later callers have shorter sections: without the lock they would finish first.
    const results = await Promise.all([section(1, 5), section(2, 3), section(3, 1), section(4, 0)]);
    expect(results).toEqual([1, 2, 3, 4]);
    expect(maxInside).toBe(1);
    expect(log).toEqual(['start 1', 'end 1', 'start 2', 'end 2', 'start 3', 'end 3', 'start 4', 'end 4']);
    expect(m.locked).toBe(false);
  });

  it('keeps FIFO order for callers arriving while a section runs', async () => {
    const m = new Mutex();
    const order: number[] = [];
    const gate = deferred();
    const first = m.run(async () => {
      await gate.promise;
      order.push(0);
    });
    const rest: Promise<void>[] = [];
    for (let i = 1; i <= 5; i++) {
      rest.push(m.run(async () => void order.push(i)));
      await tick();
    }
    expect(order).toEqual([]);
    gate.resolve();
    await Promise.all([first, ...rest]);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('`locked` reflects whether a section runs or waits', async () => {
    const m = new Mutex();
    const gate = deferred();
    const p = m.run(() => gate.promise);
    expect(m.locked).toBe(true);
    await tick();
    expect(m.locked).toBe(true);
    gate.resolve();
    await p;
    expect(m.locked).toBe(false);
  });

  it('an exception releases the lock and reaches only its caller', async () => {
    const m = new Mutex();
    const log: string[] = [];
    const bad = m.run(async () => {
      log.push('bad');
      await tick();
      throw new Error('section failed');
    });
    const good = m.run(async () => {
      log.push('good');
      return 'ok';
    });
    await expect(bad).rejects.toThrow('section failed');
    await expect(good).resolves.toBe('ok');
    expect(log).toEqual(['bad', 'good']);
    expect(m.locked).toBe(false);
    await expect(m.run(async () => 'again')).resolves.toBe('again');
  });

  it('a synchronous throw inside the section also releases the lock', async () => {
    const m = new Mutex();
    const boom = m.run(() => {
      throw new Error('sync boom');
    });
    await expect(boom).rejects.toThrow('sync boom');
    expect(m.locked).toBe(false);
    await expect(m.run(async () => 1)).resolves.toBe(1);
  });

  it('a rejected section does not stop a long queue', async () => {
    const m = new Mutex();
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        m.run(async () => {
          await tick();
          if (i % 3 === 0) throw new Error(`e${i}`);
          return i;
        }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(Array.from({ length: 10 }, (_, i) => (i % 3 === 0 ? 'rejected' : 'fulfilled')));
    expect(m.locked).toBe(false);
  });

  it('a waiter gives up after its bound with ETIMEDOUT naming the lock, and the queue goes on', async () => {
    jest.useFakeTimers();
    try {
      const m = new Mutex('handle 7');
      const gate = deferred();
      const holder = m.run(() => gate.promise);
      const impatient = m.run(async () => 'never', 100);
      const patient = m.run(async () => 'after', 10_000);
      const settled = impatient.catch((e) => e);
      jest.advanceTimersByTime(100);
      const err = await settled;
      expect(err).toMatchObject({ code: 'ETIMEDOUT' });
      expect(String(err.message)).toContain('waited 100 ms for handle 7');
      expect(m.waiting).toBe(1);
      gate.resolve();
      await holder;
      await expect(patient).resolves.toBe('after');
      expect(m.locked).toBe(false);
    } finally {
      jest.useRealTimers();
    }
  });
});
