// A file's bytes in MemFs: 1 MiB chunks, taken from and given back to a shared pool, so a
// file written after another was deleted reuses memory already touched (on this kind of VM a
// page touched for the first time costs ~10 us per 4 KiB, which would swamp a measurement of
// the transport). A chunk starts as small as its data and doubles up to 1 MiB, so small files
// stay small. Bytes never written read as zeros.
const CHUNK = 1 << 20;
/** Chunks kept for reuse across files. */
const POOL_MAX = 512;
const pool: Buffer[] = [];

export class FileData {
  private chunks: (Buffer | undefined)[] = [];
  size = 0;

  /** Bytes [off, off + len) clipped to the size; a view when they lie in one chunk. */
  read(off: number, len: number): Buffer {
    const end = Math.min(this.size, off + len);
    if (off >= end) return Buffer.alloc(0);
    const first = Math.floor(off / CHUNK);
    if (first === Math.floor((end - 1) / CHUNK)) {
      const c = this.chunks[first];
      const a = off - first * CHUNK;
      const b = end - first * CHUNK;
      if (c && b <= c.length) return c.subarray(a, b);
      const out = Buffer.alloc(end - off);
      if (c && a < c.length) c.copy(out, 0, a, Math.min(b, c.length));
      return out;
    }
    const out = Buffer.alloc(end - off);
    for (let p = off; p < end; ) {
      const i = Math.floor(p / CHUNK);
      const n = Math.min(end, (i + 1) * CHUNK) - p;
      const c = this.chunks[i];
      const from = p - i * CHUNK;
      if (c && from < c.length) c.copy(out, p - off, from, Math.min(c.length, from + n));
      p += n;
    }
    return out;
  }

  write(off: number, data: Buffer): void {
    for (let p = 0; p < data.length; ) {
      const at = off + p;
      const i = Math.floor(at / CHUNK);
      const inChunk = at - i * CHUNK;
      const n = Math.min(data.length - p, CHUNK - inChunk);
      let c = this.chunks[i];
      if (!c || c.length < inChunk + n) c = this.chunks[i] = grow(c, inChunk + n, n === CHUNK);
      data.copy(c, inChunk, p, p + n);
      p += n;
    }
    this.size = Math.max(this.size, off + data.length);
  }

  truncate(size: number): void {
    if (size < this.size) {
      const keep = Math.ceil(size / CHUNK);
      for (let i = keep; i < this.chunks.length; i++) give(this.chunks[i]);
      this.chunks.length = Math.min(this.chunks.length, keep);
      const c = this.chunks[keep - 1];
      if (c && size % CHUNK) c.fill(0, Math.min(c.length, size % CHUNK));
    }
    this.size = size;
  }

  /** Gives the memory back to the pool. */
  free(): void {
    for (const c of this.chunks) give(c);
    this.chunks = [];
    this.size = 0;
  }
}

/** A chunk holding at least `need` bytes, with what `c` held; `whole`: the caller fills all of it. */
function grow(c: Buffer | undefined, need: number, whole: boolean): Buffer {
  const size = Math.min(CHUNK, Math.max(need, 2 * (c?.length ?? 0), 4096));
  let out: Buffer;
  if (size === CHUNK) {
    out = pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
    if (!whole) out.fill(0);
  } else {
    out = Buffer.alloc(size);
  }
  if (c) {
    c.copy(out);
    give(c);
  }
  return out;
}

function give(c: Buffer | undefined): void {
  if (c && c.length === CHUNK && pool.length < POOL_MAX) pool.push(c);
}
