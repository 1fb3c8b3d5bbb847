import { constants } from 'fs';
import * as net from 'net';
import * as os from 'os';
import { FopError, isErrnoCode } from '../../src/core/errors';
import { XlEvent } from '../../src/core/events';
import { Fd, reopenFlags } from '../../src/core/fd';
import type { FopName, Loc } from '../../src/core/fops';
import type { Frame } from '../../src/core/frame';
import { OptionValues, opt } from '../../src/core/options';
import { defineTranslator } from '../../src/core/registry';
import { ROOT_CALLER } from '../../src/core/types';
import { Xlator } from '../../src/core/xlator';
import { FrameError, Kind, VERSION } from '../../src/rpc/frame';
import { CallTimeout, Disconnected, Peer } from '../../src/rpc/peer';
import { ArgKind, FOP_WIRE, RELEASE, Reply, Welcome, WireLoc } from '../../src/rpc/wire';

const options = {
  'remote-host': opt.string({ description: 'the brick to connect to', default: '127.0.0.1', reconfigurable: false }),
  'remote-port': opt.int({ description: "the brick's port", default: '24009', min: 1, max: 65535, reconfigurable: false }),
  'remote-subvolume': opt.string({ description: 'the volume the brick serves (the subvolume of its protocol/server)', reconfigurable: false }),
  'ping-timeout': opt.time({ description: 'a connection whose pings go unanswered this long is declared dead (CHILD_DOWN)', default: '42', min: 0.05 }),
  'frame-timeout': opt.time({ description: 'a fop that gets no answer this long, reconnections included, fails with ENOTCONN', default: '30', min: 0.05 }),
};

type Options = OptionValues<typeof options>;

const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 2000;
const RELEASE_TIMEOUT_MS = 2000;

/** What the client keeps for each fd it opened on the server. */
interface FdCtx {
  /** The server's number for it, valid on the connection of `epoch`. */
  remote: number;
  epoch: number;
  /** OPEN -> REOPENING -> OPEN: fops on an fd being reopened wait for this. */
  reopening?: Promise<number>;
}

const ms = (seconds: number) => Math.round(seconds * 1000);
const sleep = (t: number) => new Promise<void>((r) => setTimeout(r, t).unref());

/**
 * protocol/client: the far side of a protocol/server, as a leaf of the client's graph. It
 * keeps one connection, pings it, and reconnects with backoff (CHILD_DOWN while it is away,
 * CHILD_UP when back). Each connection is an epoch: an fd opened under an older one is
 * reopened by GFID on its next use, once, while its other fops wait. A fop whose connection
 * breaks is sent again on the next one when that is harmless (reads, stats, lookups, writes
 * at explicit offsets...), else fails with ENOTCONN; no fop waits longer than frame-timeout.
 */
export class Client extends Xlator<Options> {
  private peer?: Peer;
  private epoch = 0;
  private isUp?: boolean;
  private stopped = false;
  private waiters: (() => void)[] = [];
  private loop?: Promise<void>;
  private readonly me = `${os.hostname()}:${process.pid}`;

  private get target(): string {
    return `${this.options['remote-host']}:${this.options['remote-port']}/${this.options['remote-subvolume']}`;
  }

  override async init(): Promise<void> {
    if (!this.options['remote-subvolume']) throw new Error(`option 'remote-subvolume' is required`);
  }

  override notify(event: XlEvent, from?: Xlator): void {
    if (event !== XlEvent.PARENT_UP) return super.notify(event, from);
    this.loop ??= this.connectLoop();
  }

  /** The graph goes down: its fds were released; say goodbye and stop reconnecting. */
  protected override async drain(): Promise<void> {
    await this.stop();
  }

  override async fini(): Promise<void> {
    await this.stop();
  }

  override dump(): Record<string, unknown> {
    return { target: this.target, connected: !!this.peer && !this.peer.closed, epoch: this.epoch, waiting: this.waiters.length };
  }

  private async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const peer = this.peer;
    if (peer && !peer.closed) {
      try {
        peer.send(Kind.BYE, 0, null);
      } catch {
        // gone already
      }
      peer.socket.end();
      peer.close('goodbye');
    }
    this.wake();
    await this.loop;
  }

  // --- the connection -----------------------------------------------------------------

  private async connectLoop(): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    while (!this.stopped) {
      try {
        const closed = await this.connect();
        backoff = BACKOFF_MIN_MS;
        await closed;
      } catch (e) {
        this.log.debug(`connecting to ${this.target}: ${(e as Error).message}`);
      }
      if (this.stopped) break;
      this.setUp(false);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  /** Connects and shakes hands; resolves to a promise that settles when the connection ends. */
  private async connect(): Promise<Promise<void>> {
    const timeout = ms(this.options['ping-timeout']);
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: this.options['remote-host'], port: this.options['remote-port'] });
      const timer = setTimeout(() => s.destroy(new Error(`no connection within ${timeout} ms`)), timeout);
      s.once('connect', () => (clearTimeout(timer), resolve(s)));
      s.once('error', (e) => (clearTimeout(timer), reject(e)));
    });
    let ended!: () => void;
    const closed = new Promise<void>((r) => (ended = r));
    const peer = new Peer(socket, { log: this.log, onFrame: (p, f) => p.close(`unexpected frame kind ${f.kind}`), onClose: () => ended() });
    const welcome = (await peer.call(Kind.HELLO, { version: VERSION, volume: this.options['remote-subvolume'], client: this.me }, timeout)) as Welcome;
    if (!welcome?.ok) {
      const reason = welcome?.reason ?? 'no welcome';
      this.log.error(`${this.target} refused this client: ${reason}`);
      peer.close(`refused: ${reason}`);
      throw new Error(reason);
    }
    if (this.stopped) {
      peer.close('the client is stopping');
      return closed;
    }
    this.epoch++;
    this.peer = peer;
    this.log.info(`connected to ${this.target} (connection ${this.epoch})`);
    this.ping(peer);
    this.setUp(true);
    this.wake();
    return closed;
  }

  /** A connection whose pings go unanswered for ping-timeout is dead. */
  private ping(peer: Peer): void {
    const timeout = ms(this.options['ping-timeout']);
    const every = Math.min(1000, timeout / 2);
    const timer = setInterval(() => {
      if (peer.closed) return clearInterval(timer);
      peer.call(Kind.PING, null, timeout).catch((e) => {
        if (e instanceof CallTimeout) peer.close(`no answer to pings for ${this.options['ping-timeout']} s`);
      });
    }, every).unref();
  }

  private setUp(up: boolean): void {
    if (this.isUp === up) return;
    this.isUp = up;
    if (!up) this.log.warn(`${this.target} is unreachable; reconnecting`);
    this.up(up ? XlEvent.CHILD_UP : XlEvent.CHILD_DOWN);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The live connection, waiting for one until `deadline`. */
  private async connected(deadline: number, op: string): Promise<Peer> {
    while (!this.peer || this.peer.closed) {
      const left = deadline - Date.now();
      if (this.stopped || left <= 0) throw new FopError('ENOTCONN', `${op}: ${this.target} is not connected`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => (clearTimeout(timer), resolve()));
      });
    }
    return this.peer;
  }

  // --- fops -------------------------------------------------------------------------

  /**
   * Sends a fop, again on the next connection if it broke and sending again is harmless.
   * Everything it waits for (a connection, a reopen, the answer) counts against one deadline.
   */
  async call(op: FopName, args: unknown[], deadline = Date.now() + ms(this.options['frame-timeout'])): Promise<unknown> {
    const [frame, ...rest] = args as [Frame, ...unknown[]];
    const wire = FOP_WIRE[op];
    const resend = wire.resend && !(op === 'write' && ((rest[0] as Fd).flags & constants.O_APPEND) !== 0);
    for (;;) {
      const peer = await this.connected(deadline, op);
      const epoch = this.epoch;
      const wireArgs = await Promise.all(wire.args.map((kind, i) => this.toWire(kind, rest[i], deadline)));
      let reply: Reply;
      try {
        const left = deadline - Date.now();
        if (left <= 0) throw new CallTimeout('frame-timeout passed');
        reply = (await peer.call(Kind.REQUEST, { op, caller: frame.caller, args: wireArgs }, left)) as Reply;
      } catch (e) {
        if (e instanceof FrameError) throw new FopError('E2BIG', `${op}: ${e.message}`);
        if (e instanceof CallTimeout) throw new FopError('ENOTCONN', `${op}: no answer from ${this.target} within frame-timeout`);
        if (!(e instanceof Disconnected)) throw e;
        if (!resend) throw new FopError('ENOTCONN', `${op}: the connection to ${this.target} broke before the answer; not safe to send again`);
        continue;
      }
      if (!reply.ok) throw new FopError(isErrnoCode(reply.errno) ? reply.errno : 'EIO', reply.message);
      if (reply.fd !== undefined) this.opened(rest[wire.args.indexOf('newfd')] as Fd, reply.fd, epoch);
      return reply.value;
    }
  }

  private opened(fd: Fd, remote: number, epoch: number): void {
    const ctx = fd.ctx.get(this) as FdCtx | undefined;
    if (ctx) Object.assign(ctx, { remote, epoch });
    else fd.ctx.set(this, { remote, epoch } satisfies FdCtx);
  }

  private async toWire(kind: ArgKind, v: unknown, deadline: number): Promise<unknown> {
    switch (kind) {
      case 'loc': {
        const l = v as Loc;
        return { path: l.path, gfid: l.inode?.gfid ?? l.gfid, parent: l.parent?.gfid, name: l.name } satisfies WireLoc;
      }
      case 'fd':
        return this.remoteFd(v as Fd, deadline);
      case 'newfd': {
        const fd = v as Fd;
        // An fd this client already knows is being reopened: never create or truncate twice.
        return { flags: fd.ctx.has(this) ? reopenFlags(fd.flags) : fd.flags };
      }
      default:
        return v;
    }
  }

  /** The server's number for an fd, reopening it first if it was opened on another connection. */
  private async remoteFd(fd: Fd, deadline: number): Promise<number> {
    const ctx = fd.ctx.get(this) as FdCtx | undefined;
    if (!ctx) throw new FopError('EBADF', `fd ${fd.id} was never opened on ${this.target}`);
    if (ctx.epoch === this.epoch) return ctx.remote;
    ctx.reopening ??= this.reopen(fd, ctx, deadline).finally(() => (ctx.reopening = undefined));
    // A reopen started by a fop with a later deadline must not hold this one past its own.
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new FopError('ENOTCONN', `fd ${fd.id}: not reopened on ${this.target} within frame-timeout`)), Math.max(0, deadline - Date.now()));
    });
    try {
      return await Promise.race([ctx.reopening, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async reopen(fd: Fd, ctx: FdCtx, deadline: number): Promise<number> {
    const gfid = fd.inode.gfid;
    const frame = this.host.frame('reopen');
    try {
      await this.call(fd.isDir ? 'opendir' : 'open', [frame, { path: `<gfid:${gfid}>`, gfid, inode: fd.inode }, fd], deadline);
      this.log.debug(`reopened fd ${fd.id} (${gfid}) on connection ${ctx.epoch}`);
      return ctx.remote;
    } finally {
      frame.done();
    }
  }

  override async release(fd: Fd): Promise<void> {
    const ctx = fd.ctx.get(this) as FdCtx | undefined;
    fd.ctx.delete(this);
    const peer = this.peer;
    // On another connection the server already let it go.
    if (!ctx || ctx.epoch !== this.epoch || !peer || peer.closed) return;
    await peer.call(Kind.REQUEST, { op: RELEASE, caller: ROOT_CALLER, args: [ctx.remote] }, RELEASE_TIMEOUT_MS).catch(() => undefined);
  }
}

Xlator.interceptAll(Client, (xl, op, args) => xl.call(op, args));

export default defineTranslator({
  type: 'protocol/client',
  description: 'the far side of a protocol/server, over TCP, with reconnection and fd reopening',
  options,
  subvolumes: { min: 0, max: 0 },
  create: (init) => new Client(init),
});
