// Where a name goes: a 32-bit hash of its bytes, the same in every client and after restarts.
import type { Name } from '../../../src/core/index';

/** The whole hash space is [0, HASH_SPACE). */
export const HASH_SPACE = 2 ** 32;

/**
 * MurmurHash3 (x86, 32-bit) of a byte string (one char per byte): well spread for short,
 * similar names (file1, file2...), cheap, and fixed for ever, since it decides where files are.
 */
export function murmur3(bytes: Name, seed = 0): number {
  let h = seed >>> 0;
  const n = bytes.length;
  const tail = n & ~3;
  for (let i = 0; i < tail; i += 4) {
    let k = (bytes.charCodeAt(i) & 0xff) | ((bytes.charCodeAt(i + 1) & 0xff) << 8) | ((bytes.charCodeAt(i + 2) & 0xff) << 16) | ((bytes.charCodeAt(i + 3) & 0xff) << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = n & 3;
  if (rest > 0) {
    let k = 0;
    for (let j = rest - 1; j >= 0; j--) k = (k << 8) | (bytes.charCodeAt(tail + j) & 0xff);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Hashes names for placement. A name the regex matches is hashed by its first group:
 * GlusterFS's default makes rsync's temporary `.name.XXXXXX` land where `name` will, so the
 * rename that ends each copy does not leave the file away from its hashed child.
 */
export class NameHasher {
  private readonly re?: RegExp;

  constructor(regex: string) {
    // 's': a name may hold any byte but '/' and NUL, newlines included.
    this.re = regex === '' ? undefined : new RegExp(regex, 's');
  }

  hash(name: Name): number {
    const m = this.re?.exec(name);
    return murmur3(m?.[1] !== undefined && m[1] !== '' ? m[1] : name);
  }
}

/** GlusterFS's rsync-hash-regex default. */
export const RSYNC_HASH_REGEX = '^\\.(.+)\\.[^.]+$';
