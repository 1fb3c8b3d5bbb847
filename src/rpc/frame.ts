// The wire format between protocol/client and protocol/server.
//
//   offset  size  field
//   0       4     length of everything after this field (big-endian), at most MAX_FRAME
//   4       1     protocol version (VERSION)
//   5       1     kind (Kind)
//   6       4     id: a request and its reply share it (big-endian)
//   10      4     header length H (big-endian)
//   14      H     header: UTF-8 JSON
//   14+H    ...   payload: raw bytes that header values point into
//
// The header is JSON (built in, maintained, debuggable); every Buffer in it travels raw in
// the payload as {"$buf":[start,length]}, so file data is never encoded. A frame that is
// too large, truncated, of another version or malformed is a FrameError: the connection
// that sent it is closed with that reason.

/** 2: the server challenges every connection (CHALLENGE), requests carry lock owners and can be cancelled. */
export const VERSION = 2;
/** Largest frame: a 16 MiB payload and room for its header. */
export const MAX_FRAME = 16 * 1024 * 1024 + 64 * 1024;
const PREFIX = 4;
const FIXED = 10;

export enum Kind {
  /** client -> server: { op, args } */
  REQUEST = 1,
  /** server -> client: { ok, value } or { ok: false, errno, message } */
  REPLY = 2,
  /** client -> server, once the challenge came: { version, volume, client, login? } */
  HELLO = 3,
  /** server -> client: { ok, proof? } or { ok: false, reason } */
  WELCOME = 4,
  PING = 5,
  PONG = 6,
  /** client -> server: the client is leaving; release what it holds. */
  BYE = 7,
  /** server -> client, the first frame of every connection: { nonce } (fresh for each one). */
  CHALLENGE = 8,
  /** client -> server: the caller of request `id` gave up (interrupted); no answer. */
  CANCEL = 9,
  /**
   * server -> client, only to a client that asked for them in its HELLO: something it may
   * cache changed (a WireUpcall); no answer.
   */
  UPCALL = 10,
}

const KINDS = new Set<number>(Object.values(Kind).filter((v): v is number => typeof v === 'number'));

export interface Frame {
  readonly kind: Kind;
  readonly id: number;
  readonly body: unknown;
}

export class FrameError extends Error {}

/**
 * Encodes one frame: the body as JSON, with its Buffers moved into the payload. They are
 * lifted out before JSON.stringify, which would first turn each into an array of numbers.
 * (So an object with a `$buf` key cannot travel: none of the bodies has one.)
 */
export function encodeFrame(kind: Kind, id: number, body: unknown): Buffer {
  const payloads: Buffer[] = [];
  let at = 0;
  const lift = (v: unknown): unknown => {
    if (Buffer.isBuffer(v)) {
      payloads.push(v);
      at += v.length;
      if (at > MAX_FRAME) throw new FrameError(`payload of over ${MAX_FRAME} bytes`);
      return { $buf: [at - v.length, v.length] };
    }
    if (Array.isArray(v)) return v.map(lift);
    if (typeof v !== 'object' || v === null) return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = lift(x);
    return out;
  };
  const header = Buffer.from(JSON.stringify(lift(body)) ?? 'null');
  const length = FIXED + header.length + at;
  if (length > MAX_FRAME) throw new FrameError(`frame of ${length} bytes is over the ${MAX_FRAME} byte limit`);
  const head = Buffer.allocUnsafe(PREFIX + FIXED);
  head.writeUInt32BE(length, 0);
  head.writeUInt8(VERSION, 4);
  head.writeUInt8(kind, 5);
  head.writeUInt32BE(id >>> 0, 6);
  head.writeUInt32BE(header.length, 10);
  return Buffer.concat([head, header, ...payloads]);
}

/** Decodes what follows the length prefix of one frame. Throws FrameError on anything malformed. */
export function decodeFrame(frame: Buffer): Frame {
  if (frame.length < FIXED) throw new FrameError(`truncated frame: ${frame.length} bytes`);
  const version = frame.readUInt8(0);
  if (version !== VERSION) throw new FrameError(`protocol version ${version}, this side speaks ${VERSION}`);
  const kind = frame.readUInt8(1);
  if (!KINDS.has(kind)) throw new FrameError(`unknown frame kind ${kind}`);
  const id = frame.readUInt32BE(2);
  const h = frame.readUInt32BE(6);
  if (h > frame.length - FIXED) throw new FrameError(`header of ${h} bytes in a frame of ${frame.length}`);
  const payload = frame.subarray(FIXED + h);
  let body: unknown;
  try {
    body = JSON.parse(frame.toString('utf8', FIXED, FIXED + h), (_key, value) => {
      const ref = (value as { $buf?: unknown } | null)?.$buf;
      if (!Array.isArray(ref)) return value;
      const [start, len] = ref as number[];
      if (!Number.isInteger(start) || !Number.isInteger(len) || start < 0 || len < 0 || start + len > payload.length) {
        throw new FrameError(`buffer [${start}, ${len}] outside the ${payload.length} byte payload`);
      }
      return payload.subarray(start, start + len);
    });
  } catch (e) {
    throw e instanceof FrameError ? e : new FrameError(`malformed header: ${(e as Error).message}`);
  }
  return { kind: kind as Kind, id, body };
}

/**
 * Cuts a byte stream into frames. `push` returns the frames completed by a chunk; it throws
 * FrameError at the first frame announcing more than MAX_FRAME bytes (before buffering it).
 * Each frame's bytes are joined once, when all of them have arrived.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes (prefix included) of the frame being received, once its prefix arrived. */
  private need?: number;

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Frame[] = [];
    while (this.buffered >= PREFIX) {
      if (this.need === undefined) {
        const length = this.take(PREFIX, false).readUInt32BE(0);
        if (length > MAX_FRAME) throw new FrameError(`frame of ${length} bytes announced; the limit is ${MAX_FRAME}`);
        this.need = PREFIX + length;
      }
      if (this.buffered < this.need) break;
      const data = this.take(this.need, true);
      this.need = undefined;
      out.push(decodeFrame(data.subarray(PREFIX)));
    }
    return out;
  }

  /** Bytes of an incomplete frame still buffered (a peer that stops mid-frame). */
  get pending(): number {
    return this.buffered;
  }

  /** The first `n` buffered bytes, as one buffer; removed from the buffer if `consume`. */
  private take(n: number, consume: boolean): Buffer {
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    const first = this.chunks[0];
    if (!consume) return first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    return first.subarray(0, n);
  }
}
