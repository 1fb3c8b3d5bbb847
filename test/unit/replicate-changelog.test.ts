// The pure parts of cluster/replicate: the changelog's format, judging copies from their
// changelogs (sources, sinks, fools, split brain, changes cut short), what a heal clears,
// which copy reads go to, and client quorum.
import { Changelog, CopyLog, DIRTY_KEY, clearing, decode, encode, judge } from '../../xlators/cluster/replicate/changelog';
import { quorumMet } from '../../xlators/cluster/replicate/children';
import { gfidHash, pickReadChild, readOrder } from '../../xlators/cluster/replicate/read-child';

/** A copy's log from per-child data counters (metadata and entry zero) and a dirty data count. */
const log = (pending: number[], dirty = 0): CopyLog => ({ dirty: [dirty, 0, 0], pending: pending.map((n) => [n, 0, 0] as const) });

describe('format', () => {
  test('three big-endian int32s; absent is zeros; another length is refused', () => {
    expect(encode([1, -2, 3]).toString('hex')).toBe('00000001fffffffe00000003');
    expect(decode(encode([1, -2, 3]))).toEqual([1, -2, 3]);
    expect(decode(Buffer.alloc(0))).toEqual([0, 0, 0]);
    expect(() => decode(Buffer.alloc(8))).toThrow('8 bytes');
  });

  test('every xattrop names the whole changelog: the dirty key and one per child, zeros where nothing changes', () => {
    const c = new Changelog(['a', 'b', 'c']);
    const add = c.add('metadata', { dirty: 1, pending: new Map([[2, 1]]) });
    expect(Object.keys(add)).toEqual([DIRTY_KEY, 'trusted.xlstack.afr.pending.a', 'trusted.xlstack.afr.pending.b', 'trusted.xlstack.afr.pending.c']);
    expect(decode(add[DIRTY_KEY])).toEqual([0, 1, 0]);
    expect(decode(add['trusted.xlstack.afr.pending.b'])).toEqual([0, 0, 0]);
    expect(decode(add['trusted.xlstack.afr.pending.c'])).toEqual([0, 1, 0]);
    const all = c.addAll(new Map([['data', { pending: new Map([[0, 1]]) }], ['entry', { pending: new Map([[0, 2]]) }]]));
    expect(decode(all['trusted.xlstack.afr.pending.a'])).toEqual([1, 0, 2]);
    expect(c.parse(all)).toEqual({ dirty: [0, 0, 0], pending: [[1, 0, 2], [0, 0, 0], [0, 0, 0]] });
  });
});

describe('judge', () => {
  test('all clear: every copy a source, nothing to heal', () => {
    expect(judge([log([0, 0]), log([0, 0])], 'data')).toEqual({ sources: [0, 1], sinks: [], splitBrain: false, needsHeal: false, cutShort: false });
  });

  test('one accuses another: the accused is the sink', () => {
    expect(judge([log([0, 1]), log([0, 0])], 'data')).toMatchObject({ sources: [0], sinks: [1], splitBrain: false, needsHeal: true });
  });

  test('the accuser away: the copy at hand cannot know, it is a source (what replica 2 without quorum risks)', () => {
    expect(judge([undefined, log([0, 0])], 'data')).toMatchObject({ sources: [1], sinks: [], needsHeal: false });
  });

  test('an accused copy away: the one at hand is a source, there is work (not a change cut short)', () => {
    expect(judge([log([0, 1]), undefined], 'data')).toMatchObject({ sources: [0], sinks: [], needsHeal: true, cutShort: false });
  });

  test('each accuses the other: split brain, every copy a sink', () => {
    expect(judge([log([0, 1]), log([1, 0])], 'data')).toMatchObject({ sources: [], sinks: [0, 1], splitBrain: true });
  });

  test('a fool (accuses itself: the change failed on it) is not believed', () => {
    // Copy 1 failed a change and was marked by everyone (itself included); its word against 0 does not count.
    expect(judge([log([0, 1]), log([1, 1])], 'data')).toMatchObject({ sources: [0], sinks: [1], splitBrain: false });
  });

  test('dirty markers only: a change cut short, all sources, heal needed', () => {
    expect(judge([log([0, 0], 1), log([0, 0], 1)], 'data')).toMatchObject({ sources: [0, 1], needsHeal: true, cutShort: true });
  });

  test('replica 3: two accuse the third', () => {
    expect(judge([log([0, 0, 1]), log([0, 0, 1]), log([0, 0, 0])], 'data')).toMatchObject({ sources: [0, 1], sinks: [2] });
  });

  test('no copy at hand (the object went meanwhile): nothing to do, and no split brain', () => {
    expect(judge([undefined, undefined], 'entry')).toEqual({ sources: [], sinks: [], splitBrain: false, needsHeal: false, cutShort: false });
  });

  test('kinds are judged apart', () => {
    const l: CopyLog = { dirty: [0, 0, 0], pending: [[0, 0, 0], [0, 3, 0]] };
    expect(judge([l, log([0, 0])], 'data').needsHeal).toBe(false);
    expect(judge([l, log([0, 0])], 'metadata')).toMatchObject({ sinks: [1], needsHeal: true });
  });
});

describe('clearing after a heal', () => {
  test('counters between copies made alike go to zero, dirty markers too', () => {
    const logs = [log([0, 2], 1), log([0, 1])];
    const d = clearing(logs, 'data', [0]);
    expect(d.get(0)).toEqual({ dirty: -1, pending: new Map([[1, -2]]) });
    expect(d.get(1)).toEqual({ dirty: -0, pending: new Map([[1, -1]]) });
  });

  test('what a source holds against a copy away is carried by the healed copies', () => {
    // 0 and 1 here, 2 away; 0 accuses 1 and 2.
    const d = clearing([log([0, 1, 1]), log([0, 0, 0]), undefined], 'data', [0]);
    expect(d.get(0)!.pending).toEqual(new Map([[1, -1]]));
    expect(d.get(1)!.pending).toEqual(new Map([[2, 1]]));
  });

  test('a sink the heal could not finish is accused by the copies made alike', () => {
    const d = clearing([log([0, 0, 0], 1), log([0, 0, 0], 1), undefined], 'data', [0], [2]);
    expect(d.get(0)).toEqual({ dirty: -1, pending: new Map([[2, 1]]) });
    expect(d.get(1)).toEqual({ dirty: -1, pending: new Map([[2, 1]]) });
  });

  test('nothing to clear: no delta', () => {
    expect(clearing([log([0, 0]), log([0, 0])], 'data', [0]).size).toBe(0);
  });
});

describe('read child', () => {
  const g = '8f1a2b3c-0000-4000-8000-000000000001';

  test('only readable copies; the preferred one when it is readable', () => {
    expect(pickReadChild([], g, { hashMode: 1 })).toBeUndefined();
    expect(pickReadChild([0, 2], g, { preferred: 2, hashMode: 1 })).toBe(2);
    expect(pickReadChild([0, 2], g, { preferred: 1, hashMode: 0 })).toBe(0);
  });

  test('by file: stable for a file, spread over files; by file and process', () => {
    const files = [...Array(64).keys()].map((i) => `8f1a2b3c-0000-4000-8000-${String(i).padStart(12, '0')}`);
    const picks = files.map((f) => pickReadChild([0, 1, 2], f, { hashMode: 1 }));
    expect(new Set(picks)).toEqual(new Set([0, 1, 2]));
    expect(files.map((f) => pickReadChild([0, 1, 2], f, { hashMode: 1 }))).toEqual(picks);
    expect(pickReadChild([0, 1, 2], g, { hashMode: 1 })).toBe([0, 1, 2][gfidHash(g) % 3]);
    const byPid = [...Array(16).keys()].map((pid) => pickReadChild([0, 1], g, { hashMode: 2 }, pid));
    expect(new Set(byPid).size).toBe(2);
  });

  test('the order to try: the chosen copy, then the other readable ones', () => {
    expect(readOrder([0, 1, 2], g, { preferred: 1, hashMode: 0 })).toEqual([1, 0, 2]);
  });
});

describe('client quorum', () => {
  test('auto: more than half, or exactly half with the first child', () => {
    const q = { type: 'auto' as const, count: 1 };
    expect(quorumMet(q, 3, [0, 1])).toBe(true);
    expect(quorumMet(q, 3, [2])).toBe(false);
    expect(quorumMet(q, 2, [0])).toBe(true);
    expect(quorumMet(q, 2, [1])).toBe(false);
    expect(quorumMet(q, 4, [1, 2])).toBe(false);
    expect(quorumMet(q, 4, [0, 3])).toBe(true);
  });

  test('none: any child; fixed: quorum-count children; nobody is never enough', () => {
    expect(quorumMet({ type: 'none', count: 1 }, 3, [2])).toBe(true);
    expect(quorumMet({ type: 'none', count: 1 }, 3, [])).toBe(false);
    expect(quorumMet({ type: 'fixed', count: 2 }, 3, [2])).toBe(false);
    expect(quorumMet({ type: 'fixed', count: 2 }, 3, [1, 2])).toBe(true);
  });
});
