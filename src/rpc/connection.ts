// A client's connection to a server, kept alive: dial and shake hands, ping, notice the
// end, wait (with jittered backoff) and dial again. protocol/client sends its fops over
// whatever connection this holds; each new one is a new epoch.
import { FopError } from '../core/errors';
import type { Frame } from '../core/frame';
import type { Logger } from '../core/log';
import { Backoff } from './backoff';
import { Kind } from './frame';
import { CallTimeout, Peer } from './peer';

/** Reconnection waits: 50 ms doubling to 2 s, each ±20%. */
export const BACKOFF_MIN_MS = 50;
export const BACKOFF_MAX_MS = 2000;
/** The longest interval between pings (shorter when ping-timeout is short). */
const PING_EVERY_MAX_MS = 1000;

/** The server said no (a wrong volume, a failed login, an address it does not admit): the reason is its. */
export class Refused extends Error {}

export interface ConnectionOptions {
  readonly log: Logger;
  /** host:port/volume, for messages. */
  readonly target: string;
  /** Opens a connection and shakes hands; resolves to a peer the server welcomed. */
  readonly dial: () => Promise<Peer>;
  /** ping-timeout in ms, read at each connection (it can be reconfigured). */
  readonly pingTimeoutMs: () => number;
  /** The server became reachable (true) or not (false); called on changes only, first with either. */
  readonly onChange: (up: boolean) => void;
  readonly backoff?: Backoff;
  /** Waits between attempts; tests inject one that records each wait. */
  readonly sleep?: (ms: number) => Promise<void>;
}

const timerSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export class Connection {
  private peer?: Peer;
  private epochs = 0;
  private isUp?: boolean;
  private stopped = false;
  private loop?: Promise<void>;
  private readonly waiters = new Set<() => void>();
  private wakeStop!: () => void;
  private readonly stopping = new Promise<void>((r) => (this.wakeStop = r));
  private readonly backoff: Backoff;
  private failures = 0;
  private lastFailure?: string;
  /** The last refusal logged as an error (a refusal repeating between unreachable spells is not news). */
  private lastRefusal?: string;
  private lastWaitMs?: number;

  constructor(private readonly o: ConnectionOptions) {
    this.backoff = o.backoff ?? new Backoff({ initialMs: BACKOFF_MIN_MS, maxMs: BACKOFF_MAX_MS });
  }

  /** Starts connecting (once). */
  start(): void {
    this.loop ??= this.run();
  }

  /** Which connection this is (1 for the first); an fd opened on another one must be reopened. */
  get epoch(): number {
    return this.epochs;
  }

  /** The live connection, if there is one. */
  get current(): Peer | undefined {
    return this.peer && !this.peer.closed ? this.peer : undefined;
  }

  /** Says goodbye on the live connection, if any, and stops reconnecting. */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.wakeStop();
      const peer = this.current;
      if (peer) {
        try {
          peer.send(Kind.BYE, 0, null);
        } catch {
          // gone already
        }
        peer.socket.end();
        peer.close('goodbye');
      }
      this.wake();
    }
    await this.loop;
  }

  /**
   * The live connection, waiting for one until `deadline`: ENOTCONN after that (or once
   * stopped), EINTR if `frame` is interrupted meanwhile.
   */
  async wait(deadline: number, what: string, frame?: Frame): Promise<Peer> {
    for (;;) {
      const peer = this.current;
      if (peer) return peer;
      if (frame?.interrupted) throw new FopError('EINTR', `${what}: interrupted while waiting for ${this.o.target}`);
      const left = deadline - Date.now();
      if (this.stopped || left <= 0) throw new FopError('ENOTCONN', `${what}: ${this.o.target} is not connected`);
      await new Promise<void>((resolve) => {
        let off: (() => void) | undefined;
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          off?.();
          resolve();
        };
        const timer = setTimeout(done, left);
        this.waiters.add(done);
        off = frame?.onInterrupt(done);
      });
    }
  }

  dump(): Record<string, unknown> {
    return {
      connected: !!this.current,
      epoch: this.epochs,
      waiting: this.waiters.size,
      failedAttempts: this.failures,
      lastFailure: this.lastFailure,
      lastBackoffMs: this.lastWaitMs,
    };
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        const peer = await this.o.dial();
        if (this.stopped) {
          peer.close('the client is stopping');
          break;
        }
        this.backoff.reset();
        this.connected(peer);
        await peer.whenClosed;
      } catch (e) {
        this.failed(e as Error);
      }
      if (this.stopped) break;
      this.setUp(false);
      const ms = this.backoff.next();
      this.lastWaitMs = ms;
      await Promise.race([(this.o.sleep ?? timerSleep)(ms), this.stopping]);
    }
  }

  private connected(peer: Peer): void {
    this.epochs++;
    this.peer = peer;
    this.lastFailure = undefined;
    this.lastRefusal = undefined;
    this.o.log.info(`connected to ${this.o.target} (connection ${this.epochs})`);
    this.ping(peer);
    this.setUp(true);
    this.wake();
  }

  /** A refusal is logged once as an error (then quietly while it repeats): backoff, not a log storm. */
  private failed(e: Error): void {
    this.failures++;
    const reason = e.message;
    this.lastFailure = reason;
    if (!(e instanceof Refused)) return this.o.log.debug(`connecting to ${this.o.target}: ${reason}`);
    const line = `${this.o.target} refused this client: ${reason}`;
    if (reason === this.lastRefusal) return this.o.log.debug(line);
    this.lastRefusal = reason;
    this.o.log.error(line);
  }

  /** A connection whose pings go unanswered for ping-timeout is dead. */
  private ping(peer: Peer): void {
    const timeout = this.o.pingTimeoutMs();
    const timer = setInterval(
      () => {
        if (peer.closed) return clearInterval(timer);
        peer.call(Kind.PING, null, timeout).catch((e) => {
          if (e instanceof CallTimeout) peer.close(`no answer to pings for ${timeout / 1000} s`);
        });
      },
      Math.min(PING_EVERY_MAX_MS, timeout / 2),
    ).unref();
    void peer.whenClosed.then(() => clearInterval(timer));
  }

  private setUp(up: boolean): void {
    if (this.isUp === up) return;
    this.isUp = up;
    if (!up) this.o.log.warn(`${this.o.target} is unreachable; reconnecting`);
    this.o.onChange(up);
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
