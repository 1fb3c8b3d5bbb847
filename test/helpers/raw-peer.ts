// A raw protocol peer for tests: a plain TCP socket that speaks (or mangles) the xlstack
// wire format by hand, so tests can send what protocol/client never would. Every wait is
// bounded; every connection opened here is destroyed by closeRawConns().
import * as net from 'net';
import { login, loginKey } from '../../src/rpc/auth';
import { Frame, FrameError, FrameReader, Kind, VERSION, encodeFrame } from '../../src/rpc/frame';
import type { Challenge, Hello, Reply, Welcome } from '../../src/rpc/wire';
import { TEST_PASSWORD, TEST_USER } from './brick';

export { ROOT_GFID } from '../../src/core/types';
const ROOT_CALLER = { uid: 0, gid: 0, groups: [] as number[], pid: 1 };

const live = new Set<RawConn>();

export interface RawConnectOptions {
  readonly host?: string;
  readonly localAddress?: string;
  readonly timeoutMs?: number;
}

/** Credentials to answer the challenge with, or null to send a HELLO without a login. */
export type Creds = { readonly user: string; readonly password: string } | null;
export const TEST_CREDS: Creds = { user: TEST_USER, password: TEST_PASSWORD };

/** One raw connection. Frames the other side sends are parsed; answers are matched by id. */
export class RawConn {
  private readonly reader = new FrameReader();
  private readonly waiting = new Map<number, (f: Frame) => void>();
  private nextId = 1;
  private ended?: string;
  private readonly endedP: Promise<string>;
  /** Frames that answered no call of ours (the server's CHALLENGE excepted). */
  readonly unsolicited: Frame[] = [];
  private challenged!: (nonce: string | undefined) => void;
  /** The nonce of the server's challenge (undefined if the connection ended first). */
  readonly challenge = new Promise<string | undefined>((r) => (this.challenged = r));
  /** Set if the other side sent something that is not a frame. */
  badFrame?: string;

  private constructor(readonly socket: net.Socket) {
    let done!: (r: string) => void;
    this.endedP = new Promise((r) => (done = r));
    const end = (why: string) => {
      if (this.ended !== undefined) return;
      this.ended = why;
      live.delete(this);
      done(why);
      this.challenged(undefined);
    };
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.reader.push(chunk);
      } catch (e) {
        this.badFrame = e instanceof FrameError ? e.message : String(e);
        socket.destroy();
        return;
      }
      for (const f of frames) {
        const w = this.waiting.get(f.id);
        if (w) {
          this.waiting.delete(f.id);
          w(f);
        } else if (f.kind === Kind.CHALLENGE) this.challenged((f.body as Challenge).nonce);
        else this.unsolicited.push(f);
      }
    });
    socket.on('error', (e) => end(`error: ${e.message}`));
    socket.on('close', () => end('closed'));
  }

  static open(port: number, opts: RawConnectOptions = {}): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: opts.host ?? '127.0.0.1', port, localAddress: opts.localAddress });
      const timer = setTimeout(() => s.destroy(new Error(`no connection within ${opts.timeoutMs ?? 5000} ms`)), opts.timeoutMs ?? 5000);
      s.once('error', (e) => (clearTimeout(timer), reject(e)));
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        s.setNoDelay(true);
        const c = new RawConn(s);
        live.add(c);
        resolve(c);
      });
    });
  }

  get closed(): boolean {
    return this.ended !== undefined;
  }

  get localPort(): number {
    return this.socket.localPort ?? -1;
  }

  /** Raw bytes, as they are. False if the connection is gone. */
  write(bytes: Buffer): boolean {
    if (this.ended !== undefined || this.socket.destroyed) return false;
    this.socket.write(bytes);
    return true;
  }

  /** One frame. */
  sendFrame(kind: Kind, id: number, body: unknown): boolean {
    return this.write(encodeFrame(kind, id, body));
  }

  /** Sends a frame and waits (bounded) for the frame with its id; undefined if none came. */
  async call(kind: Kind, body: unknown, timeoutMs = 5000): Promise<Frame | undefined> {
    const id = this.nextId++;
    let timer: NodeJS.Timeout | undefined;
    const answer = new Promise<Frame | undefined>((resolve) => {
      this.waiting.set(id, resolve);
      timer = setTimeout(() => resolve(undefined), timeoutMs);
      // 'close' comes after every 'data': no answer can follow it.
      void this.endedP.then(() => resolve(undefined));
    });
    if (!this.sendFrame(kind, id, body)) {
      clearTimeout(timer);
      this.waiting.delete(id);
      return undefined;
    }
    try {
      return await answer;
    } finally {
      clearTimeout(timer);
      this.waiting.delete(id);
    }
  }

  /** A HELLO body answering this connection's challenge with `creds` (the test login by default). */
  async helloBody(volume = 'brick-posix', version: unknown = VERSION, creds: Creds = TEST_CREDS, timeoutMs = 5000): Promise<Hello> {
    const body = { version, volume, client: 'raw-test-peer' } as Hello;
    if (!creds) return body;
    let timer: NodeJS.Timeout | undefined;
    const nonce = await Promise.race([this.challenge, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), timeoutMs)))]).finally(() => clearTimeout(timer));
    if (nonce === undefined) return body;
    return { ...body, login: login(await loginKey(creds.user, creds.password), creds.user, volume, nonce).login };
  }

  async hello(volume = 'brick-posix', timeoutMs = 5000, version: unknown = VERSION, creds: Creds = TEST_CREDS): Promise<Welcome | undefined> {
    const f = await this.call(Kind.HELLO, await this.helloBody(volume, version, creds, timeoutMs), timeoutMs);
    const w = f?.body as Welcome | undefined;
    // What tests compare is the verdict: the server's proof differs every time.
    if (w?.ok) return { ok: true };
    return w;
  }

  /** A REQUEST; the reply's body, or undefined if no reply came (in time). */
  async request(op: string, args: unknown[], timeoutMs = 5000, caller: unknown = ROOT_CALLER): Promise<Reply | undefined> {
    const f = await this.call(Kind.REQUEST, { op, caller, args }, timeoutMs);
    return f?.body as Reply | undefined;
  }

  /** Waits (at most `ms`) for the connection to end; true if it did. */
  async waitClosed(ms: number): Promise<boolean> {
    if (this.ended !== undefined) return true;
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.endedP.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
    clearTimeout(timer);
    return r;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** For afterAll/afterEach: destroys every raw connection still open. */
export function closeRawConns(): void {
  for (const c of [...live]) c.destroy();
}

/** A frame with its fields as given (any version, kind, header length), for mangling. */
export function rawFrame(fields: { version?: number; kind?: number; id?: number; header?: Buffer | string; headerLength?: number; payload?: Buffer; length?: number }): Buffer {
  const header = typeof fields.header === 'string' ? Buffer.from(fields.header) : fields.header ?? Buffer.from('null');
  const payload = fields.payload ?? Buffer.alloc(0);
  const head = Buffer.alloc(14);
  head.writeUInt32BE(fields.length ?? 10 + header.length + payload.length, 0);
  head.writeUInt8(fields.version ?? VERSION, 4);
  head.writeUInt8(fields.kind ?? Kind.REQUEST, 5);
  head.writeUInt32BE(fields.id ?? 1, 6);
  head.writeUInt32BE(fields.headerLength ?? header.length, 10);
  return Buffer.concat([head, header, payload]);
}

/** What a reply says, in short: 'OK' or its errno; 'NO REPLY' if none came. */
export function outcome(r: Reply | undefined): string {
  if (!r) return 'NO REPLY';
  return r.ok ? 'OK' : r.errno;
}
