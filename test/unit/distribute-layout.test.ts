// cluster/distribute's pure parts: the name hash, layouts (their xattr format, new layouts,
// rebalanced layouts that move as little as they can) and merged readdir cookies.
import { decodeCookie, encodeCookie, MAX_CHILDREN } from '../../xlators/cluster/distribute/cookies';
import { HASH_SPACE, NameHasher, RSYNC_HASH_REGEX, murmur3 } from '../../xlators/cluster/distribute/hash';
import { Layout, decodeRange, encodeRange, freshLayout, hashedChild, isComplete, movedShare, rebalancedLayout, sameLayout, spanOf } from '../../xlators/cluster/distribute/layout';
import { nameFromBytes } from '../../src/core/types';

describe('hash', () => {
  test('is MurmurHash3 x86_32 (reference vectors)', () => {
    expect(murmur3('')).toBe(0);
    expect(murmur3('hello')).toBe(0x248bfa47);
    expect(murmur3('abc')).toBe(0xb3dd93fa);
    expect(murmur3('abcd')).toBe(0x43ed676a);
    expect(murmur3('The quick brown fox jumps over the lazy dog')).toBe(0x2e4ff723);
  });

  test('hashes bytes: a name that is not UTF-8 has its own hash, the same every time', () => {
    const a = nameFromBytes(Buffer.from([0x66, 0xff, 0xfe]));
    const b = nameFromBytes(Buffer.from([0x66, 0xfe, 0xff]));
    expect(murmur3(a)).not.toBe(murmur3(b));
    expect(murmur3(a)).toBe(murmur3(nameFromBytes(Buffer.from([0x66, 0xff, 0xfe]))));
  });

  test("rsync's temporary names hash as the name they become; '' turns that off", () => {
    const h = new NameHasher(RSYNC_HASH_REGEX);
    expect(h.hash('.report.pdf.Xa9b3c')).toBe(h.hash('report.pdf'));
    expect(h.hash('report.pdf')).toBe(murmur3('report.pdf'));
    expect(h.hash('.hidden')).toBe(murmur3('.hidden'));
    expect(new NameHasher('').hash('.report.pdf.Xa9b3c')).toBe(murmur3('.report.pdf.Xa9b3c'));
    expect(() => new NameHasher('(')).toThrow();
  });

  test('2,000 names over 3 equal ranges land within 15% of even', () => {
    const layout = freshLayout(3, [0, 1, 2], 7);
    const counts = [0, 0, 0];
    for (let i = 0; i < 2000; i++) counts[hashedChild(layout, murmur3(`file-${i}.dat`))!]++;
    for (const c of counts) expect(Math.abs(c - 2000 / 3) / (2000 / 3)).toBeLessThan(0.15);
  });
});

describe('layout', () => {
  test('a range round-trips through its xattr value, with the span of its layout; none and garbage are told apart', () => {
    const r = { start: 0x40000000, stop: 0x7fffffff };
    expect(decodeRange(encodeRange(r, 3))).toEqual({ range: r, spans: 3 });
    expect(decodeRange(encodeRange(undefined, 3))).toEqual({ spans: 3 });
    expect(decodeRange(Buffer.alloc(0))).toBeUndefined();
    expect(decodeRange(Buffer.from('not a layout'))).toBe('bad');
    const wrongVersion = encodeRange(r, 1);
    wrongVersion.writeUInt32BE(9, 0);
    expect(decodeRange(wrongVersion)).toBe('bad');
    expect(decodeRange(encodeRange({ start: 10, stop: 5 }, 1))).toBe('bad');
    expect(spanOf(freshLayout(5, [0, 2, 4], 1))).toBe(3);
  });

  test('a fresh layout covers the space once, over the eligible children only, rotated by the seed', () => {
    const a = freshLayout(4, [0, 1, 3], 0);
    expect(isComplete(a)).toBe(true);
    expect(a[2]).toBeUndefined();
    expect(hashedChild(a, 0)).toBe(0);
    const b = freshLayout(4, [0, 1, 3], 1);
    expect(hashedChild(b, 0)).toBe(1);
    expect(hashedChild(b, HASH_SPACE - 1)).toBe(0);
    expect(sameLayout(freshLayout(4, [0, 1, 3], 5), freshLayout(4, [0, 1, 3], 5))).toBe(true);
  });

  test('holes and overlaps make a layout incomplete', () => {
    const full = freshLayout(2, [0, 1], 0);
    expect(isComplete(full)).toBe(true);
    expect(isComplete([full[0], undefined])).toBe(false);
    expect(isComplete([{ start: 0, stop: 100 }, { start: 100, stop: HASH_SPACE - 1 }])).toBe(false);
    expect(isComplete([])).toBe(false);
  });

  test('a layout already even over the same children comes back unchanged', () => {
    const cur = freshLayout(3, [0, 1, 2], 2);
    expect(sameLayout(rebalancedLayout(cur, [0, 1, 2]), cur)).toBe(true);
    expect(movedShare(cur, rebalancedLayout(cur, [0, 1, 2]))).toBe(0);
  });

  test('adding a child: every child keeps the slot that overlaps its old range most, the new one takes what is left', () => {
    const cur: Layout = [...freshLayout(3, [0, 1, 2], 0), undefined];
    const next = rebalancedLayout(cur, [0, 1, 2, 3]);
    expect(isComplete(next)).toBe(true);
    expect(next.every((r) => r !== undefined)).toBe(true);
    // Equal quarters can keep at most what equal thirds and quarters share: 2/3 of the names stay.
    expect(movedShare(cur, next)).toBeCloseTo(1 / 3, 2);
    // Naively handing slots out in order would move more.
    expect(movedShare(cur, freshLayout(4, [0, 1, 2, 3], 0))).toBeGreaterThan(movedShare(cur, next));
  });

  test('removing a child: it gets nothing, the others keep as much as they can', () => {
    const cur = freshLayout(3, [0, 1, 2], 0);
    const next = rebalancedLayout(cur, [0, 2]);
    expect(next[1]).toBeUndefined();
    expect(isComplete(next)).toBe(true);
    expect(movedShare(cur, next)).toBeLessThan(0.5);
    expect(rebalancedLayout(cur, []).every((r) => r === undefined)).toBe(true);
  });
});

describe('merged readdir cookies', () => {
  test('say which child and where in it, and round-trip', () => {
    for (const p of [
      { child: 0, cookie: 1 },
      { child: 3, cookie: 0 },
      { child: MAX_CHILDREN - 1, cookie: 123456789 },
    ]) {
      expect(decodeCookie(encodeCookie(p))).toEqual(p);
    }
    expect(decodeCookie(0)).toEqual({ child: 0, cookie: 0 });
  });

  test('no entry has cookie 0 (the start), and cookies grow within a child', () => {
    expect(encodeCookie({ child: 0, cookie: 1 })).toBeGreaterThan(0);
    expect(encodeCookie({ child: 2, cookie: 5 })).toBeLessThan(encodeCookie({ child: 2, cookie: 6 }));
  });

  test('what does not fit is refused, not wrapped', () => {
    expect(() => encodeCookie({ child: 1, cookie: 2 ** 52 })).toThrow(RangeError);
    expect(() => decodeCookie(-1)).toThrow(RangeError);
    expect(() => decodeCookie(1.5)).toThrow(RangeError);
  });
});
