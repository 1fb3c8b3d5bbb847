// The test filesystem's file data (test/helpers/filedata.ts) against a plain buffer: the
// kernel transport's integration tests and measurements rely on it holding what was written.
import { FileData } from '../helpers/filedata';
import { Rng } from '../helpers/rng';

const M = 1 << 20;

it('random writes, truncates and reads across 1 MiB chunks agree with a plain buffer', () => {
  const seed = Date.now() >>> 0;
  const rng = new Rng(seed);
  for (let trial = 0; trial < 40; trial++) {
    const f = new FileData();
    const ref = Buffer.alloc(4 * M);
    let size = 0;
    for (let k = 0; k < 20; k++) {
      const op = rng.int(3);
      if (op < 2) {
        const off = rng.int(3 * M);
        const b = Buffer.alloc(rng.int(op ? M + 10 : 5000) + 1, rng.int(255) + 1);
        f.write(off, b);
        b.copy(ref, off);
        size = Math.max(size, off + b.length);
      } else {
        const t = rng.int(3 * M);
        if (t < size) ref.fill(0, t);
        size = t;
        f.truncate(t);
      }
      expect(f.size).toBe(size);
      for (let q = 0; q < 4; q++) {
        const o = rng.int(size + 1);
        const l = rng.int(2 * M);
        const ok = f.read(o, l).equals(ref.subarray(o, Math.min(size, o + l)));
        if (!ok) throw new Error(`seed ${seed}: trial ${trial} step ${k}: read(${o}, ${l}) differs`);
      }
    }
    f.free();
  }
});

it('a small file stays small', () => {
  const f = new FileData();
  f.write(0, Buffer.alloc(1024, 1));
  expect(f.read(0, 2048).length).toBe(1024);
  expect(f.read(0, 1024).buffer.byteLength).toBeLessThan(M);
});
