import type { Socket } from 'net';
import type { Logger } from '../core/log';
import { Frame, FrameError, FrameReader, Kind, encodeFrame } from './frame';

/** A call whose connection closed before its answer came. */
export class Disconnected extends Error {}

/** A call that got no answer in time. */
export class CallTimeout extends Error {}

const ANSWER: Partial<Record<Kind, Kind>> = { [Kind.REQUEST]: Kind.REPLY, [Kind.HELLO]: Kind.WELCOME, [Kind.PING]: Kind.PONG };
const ANSWERS = new Set(Object.values(ANSWER));

export interface PeerOptions {
  readonly log: Logger;
  /** Every frame that is not an answer (answers to calls given up on are dropped). */
  readonly onFrame: (peer: Peer, frame: Frame) => void;
  readonly onClose?: (peer: Peer, reason: string) => void;
}

interface Waiting {
  readonly kind: Kind;
  readonly resolve: (body: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly timer?: NodeJS.Timeout;
}

/** A call on its way: its id (to cancel it by) and its answer. */
export interface Call {
  readonly id: number;
  readonly answer: Promise<unknown>;
}

/**
 * One connection between a client and a server: frames both ways, calls matched to their
 * answers by id. A malformed frame, a socket error or a close ends it, once, with a reason
 * that is logged; every call still waiting then fails with Disconnected.
 */
export class Peer {
  private readonly reader = new FrameReader();
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private ended?: string;
  private endedWith!: (reason: string) => void;
  /** Settles with the reason once the connection has ended. */
  readonly whenClosed = new Promise<string>((r) => (this.endedWith = r));
  readonly address: string;

  constructor(
    readonly socket: Socket,
    private readonly opts: PeerOptions,
  ) {
    this.address = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (e) => this.close(`socket error: ${e.message}`));
    socket.on('close', () => this.close(this.reader.pending ? `closed in the middle of a frame (${this.reader.pending} bytes of it)` : 'closed by the peer'));
  }

  get closed(): boolean {
    return this.ended !== undefined;
  }

  get reason(): string | undefined {
    return this.ended;
  }

  /** Sends a frame and waits (at most `timeoutMs`; undefined: as long as the connection lives) for its answer's body. */
  call(kind: Kind.REQUEST | Kind.HELLO | Kind.PING, body: unknown, timeoutMs: number | undefined): Promise<unknown> {
    return this.start(kind, body, timeoutMs).answer;
  }

  /** Like call, and says the id the frame went with (a CANCEL names it). */
  start(kind: Kind.REQUEST | Kind.HELLO | Kind.PING, body: unknown, timeoutMs: number | undefined): Call {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    if (this.ended) return { id, answer: Promise.reject(new Disconnected(this.ended)) };
    const answer = new Promise((resolve, reject) => {
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.waiting.delete(id);
              reject(new CallTimeout(`no answer within ${timeoutMs} ms`));
            }, timeoutMs);
      this.waiting.set(id, { kind: ANSWER[kind]!, resolve, reject, timer });
      try {
        this.send(kind, id, body);
      } catch (e) {
        clearTimeout(timer);
        this.waiting.delete(id);
        reject(e);
      }
    });
    return { id, answer };
  }

  send(kind: Kind, id: number, body: unknown): void {
    if (this.ended) throw new Disconnected(this.ended);
    this.socket.write(encodeFrame(kind, id, body));
  }

  /** Ends the connection (the first reason given is the one logged). */
  close(reason: string): void {
    if (this.ended) return;
    this.ended = reason;
    this.opts.log.info(`connection ${this.address}: ${reason}`);
    this.socket.destroy();
    for (const [id, w] of this.waiting) {
      clearTimeout(w.timer);
      this.waiting.delete(id);
      w.reject(new Disconnected(reason));
    }
    this.endedWith(reason);
    this.opts.onClose?.(this, reason);
  }

  private receive(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch (e) {
      return this.close(e instanceof FrameError ? `bad frame: ${e.message}` : `bad frame: ${(e as Error).message}`);
    }
    for (const f of frames) {
      const w = this.waiting.get(f.id);
      if (w && w.kind === f.kind) {
        this.waiting.delete(f.id);
        clearTimeout(w.timer);
        w.resolve(f.body);
      } else if (ANSWERS.has(f.kind)) {
        // A call that timed out: its answer came late, which is no fault of the connection.
        this.opts.log.debug(`connection ${this.address}: late answer ${f.id} dropped`);
      } else if (!this.ended) {
        this.opts.onFrame(this, f);
      }
    }
  }
}
