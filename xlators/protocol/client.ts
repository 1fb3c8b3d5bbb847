import { Fd, FdContext, FopError, FopName, Frame, Loc, ROOT_CALLER, processIdentity, UPCALL_ALL, Xlator, XlEvent, defineTranslator, isErrnoCode, opt, reopenFlags, withDeadline } from '../../src/core/index';
import type { Caller, Flock, OptionValues, XlatorInit } from '../../src/core/index';
import { isNonce, login, loginKey, proofMatches, serverProof } from '../../src/rpc/auth';
import { Connection, ConnectionOptions, Refused } from '../../src/rpc/connection';
import { FrameError, Kind, VERSION } from '../../src/rpc/frame';
import { CallTimeout, Disconnected, Peer } from '../../src/rpc/peer';
import { TlsMaterial, dial, loadTls } from '../../src/rpc/transport';
import { ArgKind, Challenge, FOP_WIRE, Hello, RELEASE, Reply, Welcome, WireLoc, WireNewFd, checkUpcall } from '../../src/rpc/wire';
import { randomBytes } from 'crypto';
import { needsRequestId } from './replay';

/**
 * Request ids: this run's prefix (a process-uuid may be given again to a later process, whose
 * ids must not meet this one's in the brick's reply cache) and a counter shared by every graph.
 */
const RUN = randomBytes(8).toString('hex');
let lastRid = 0;
const nextRid = () => `${RUN}.${(++lastRid).toString(36)}`;

const options = {
  'remote-host': opt.string({ description: 'the brick to connect to', default: '127.0.0.1', reconfigurable: false }),
  'remote-port': opt.int({ description: "the brick's port", default: '24009', min: 1, max: 65535, reconfigurable: false }),
  'remote-subvolume': opt.string({ description: 'the volume the brick serves (the subvolume of its protocol/server)', reconfigurable: false }),
  'ping-timeout': opt.time({ description: 'a connection whose pings go unanswered this long is declared dead (CHILD_DOWN)', default: '42', min: 0.05 }),
  'frame-timeout': opt.time({ description: 'a fop that gets no answer this long, reconnections included, fails with ENOTCONN', default: '30', min: 0.05 }),
  username: opt.string({ description: "the login the brick knows this client by (its auth.login.<volume>.allow)", reconfigurable: false }),
  password: opt.string({ description: "that login's password (auth.login.<user>.password on the brick); it never travels", reconfigurable: false }),
  'process-uuid': opt.string({
    description: "who this client is to the brick, across its connections (its locks and open files carry over a reconnection); default: this process's own, the same for all its graphs",
    reconfigurable: false,
  }),
  'transport.socket.ssl-enabled': opt.bool({ description: 'talk to the brick over mutual TLS', default: 'off', aliases: ['ssl-enabled', 'client.ssl'], reconfigurable: false }),
  'transport.socket.ssl-own-cert': opt.path({ description: "this client's certificate (PEM)", default: '/etc/ssl/glusterfs.pem', aliases: ['ssl.own-cert', 'ssl-own-cert'], reconfigurable: false }),
  'transport.socket.ssl-private-key': opt.path({ description: "this client's private key (PEM)", default: '/etc/ssl/glusterfs.key', aliases: ['ssl.private-key', 'ssl-private-key'], reconfigurable: false }),
  'transport.socket.ssl-ca-list': opt.path({ description: "the CA certificates the brick's certificate must chain to (PEM)", default: '/etc/ssl/glusterfs.ca', aliases: ['ssl.ca-list', 'ssl-ca-list'], reconfigurable: false }),
};

type Options = OptionValues<typeof options>;

const RELEASE_TIMEOUT_MS = 2000;

/** What the client keeps for each fd it opened on the server. */
interface FdCtx {
  /** The server's number for it, valid on the connection of `epoch`. */
  remote: number;
  epoch: number;
  /** Who opened it: a reopen on a new connection runs with the same credentials. */
  caller: Caller;
  /** OPEN -> REOPENING -> OPEN: fops on an fd being reopened wait for this. */
  reopening?: Promise<number>;
  /** Locks were taken through it: on a new connection it goes on only if the brick kept them. */
  locked?: boolean;
  /** The brick kept its open file (and locks) for this client across the last connection change. */
  continued?: boolean;
  /** Its locks were lost with a connection: every fop on it fails with EIO. */
  lost?: boolean;
}

/** What tests may replace in a client's connection: its backoff and how it waits. */
export type ConnectionDeps = Pick<ConnectionOptions, 'backoff' | 'sleep'>;

const ms = (seconds: number) => Math.round(seconds * 1000);
/** A caller as it travels: plain values (a transport may read the groups only when asked). */
const wireCaller = (c: Caller): Caller => ({ uid: c.uid, gid: c.gid, pid: c.pid, groups: c.groups });

/**
 * protocol/client: the far side of a protocol/server, as a leaf of the client's graph. Its
 * Connection dials (over TLS if asked), answers the brick's challenge with the login, pings,
 * and reconnects with jittered backoff (CHILD_DOWN while the brick is away, CHILD_UP when
 * back). Each connection is an epoch: an fd opened under an older one is reopened by GFID on
 * its next use, once, with its opener's credentials, while its other fops wait. A fop whose
 * connection breaks is sent again on the next one: as it was when that is harmless (reads,
 * stats, lookups, writes at explicit offsets...), with the same request id when it is not
 * (create, unlink, rename, an append...: the brick answers it as it answered the first
 * sending, see replay.ts); locks and xattrop fail with ENOTCONN. No fop waits longer than
 * frame-timeout, except a blocking lock, which waits while its connection lives (an
 * interrupt cancels it on the brick).
 */
export class Client extends Xlator<Options> {
  private conn?: Connection;
  private key?: Buffer;
  private tls?: TlsMaterial;
  private readonly fds = new FdContext<FdCtx>(this);

  constructor(
    init: XlatorInit<Options>,
    private readonly deps: ConnectionDeps = {},
  ) {
    super(init);
  }

  private get target(): string {
    return `${this.options['remote-host']}:${this.options['remote-port']}/${this.options['remote-subvolume']}`;
  }

  private get connection(): Connection {
    return (this.conn ??= new Connection({
      log: this.log,
      target: this.target,
      dial: () => this.dial(),
      pingTimeoutMs: () => ms(this.options['ping-timeout']),
      onChange: (up) => this.changed(up),
      ...this.deps,
    }));
  }

  /**
   * The brick became reachable or not. Whatever changed there while this client was not
   * connected was not told: caches above drop everything (an upcall for everything, before
   * CHILD_UP lets fops through again), and so does the mount's kernel.
   */
  private changed(up: boolean): void {
    if (!up || this.connection.epoch > 1) this.sendUpcall(UPCALL_ALL);
    this.up(up ? XlEvent.CHILD_UP : XlEvent.CHILD_DOWN);
  }

  override async init(): Promise<void> {
    const o = this.options;
    if (!o['remote-subvolume']) throw new Error(`option 'remote-subvolume' is required`);
    if ((o.username === undefined) !== (o.password === undefined)) throw new Error(`options 'username' and 'password' go together`);
    if (o.username !== undefined) this.key = await loginKey(o.username, o.password!);
    if (o['transport.socket.ssl-enabled']) {
      this.tls = loadTls({ ownCert: o['transport.socket.ssl-own-cert'], privateKey: o['transport.socket.ssl-private-key'], caList: o['transport.socket.ssl-ca-list'] });
    }
  }

  override notify(event: XlEvent, from?: Xlator): void {
    if (event !== XlEvent.PARENT_UP) return super.notify(event, from);
    this.connection.start();
  }

  /** The graph goes down: its fds were released; say goodbye and stop reconnecting. */
  protected override async drain(): Promise<void> {
    await this.conn?.stop();
  }

  override async fini(): Promise<void> {
    await this.conn?.stop();
  }

  override dump(): Record<string, unknown> {
    return { target: this.target, tls: !!this.tls, login: this.options.username, ...this.connection.dump() };
  }

  // --- the handshake ---------------------------------------------------------------------

  /** Connects, waits for the brick's challenge, and says HELLO with the login it answers it with. */
  private async dial(): Promise<Peer> {
    const timeout = ms(this.options['ping-timeout']);
    const socket = await dial({ host: this.options['remote-host'], port: this.options['remote-port'], tls: this.tls, timeoutMs: timeout });
    let challenged!: (c: unknown) => void;
    const challenge = new Promise<unknown>((r) => (challenged = r));
    let handshaking = true;
    const peer = new Peer(socket, {
      log: this.log,
      onFrame: (p, f) => {
        if (handshaking && f.kind === Kind.CHALLENGE) return challenged(f.body);
        if (!handshaking && f.kind === Kind.UPCALL) return this.received(p, f.body);
        p.close(`unexpected frame kind ${f.kind}`);
      },
    });
    try {
      const closed = peer.whenClosed.then((why) => Promise.reject(new Error(`the connection ended before the handshake: ${why}`)));
      const c = (await withDeadline(Promise.race([challenge, closed]), timeout, `the challenge of ${this.target}`)) as Partial<Challenge> | null;
      handshaking = false;
      if (!isNonce(c?.nonce)) throw new Error('the brick sent a malformed challenge');
      const volume = this.options['remote-subvolume']!;
      const user = this.options.username;
      const answer = this.key && user !== undefined ? login(this.key, user, volume, c.nonce) : undefined;
      const hello: Hello = { version: VERSION, volume, client: processIdentity().name, process: this.options['process-uuid'] ?? processIdentity().uuid, login: answer?.login, upcalls: true };
      const welcome = (await peer.call(Kind.HELLO, hello, timeout)) as Welcome | null;
      if (!welcome?.ok) throw new Refused(welcome?.reason ?? 'no welcome');
      // The brick proves it knows the password too: a look-alike cannot collect this client's data.
      if (answer && !proofMatches(serverProof(this.key!, answer.exchange), welcome.proof)) {
        throw new Refused('authentication failed: the brick did not prove it knows the password (is it set up with auth.login?)');
      }
      return peer;
    } catch (e) {
      peer.close(e instanceof Refused ? `refused: ${(e as Error).message}` : (e as Error).message);
      throw e;
    }
  }

  /** An UPCALL from the brick: up the graph it goes, to the caches and the mount. */
  private received(peer: Peer, body: unknown): void {
    const u = checkUpcall(body);
    if (!u) return peer.close('a malformed upcall');
    this.sendUpcall(u);
  }

  // --- fops -------------------------------------------------------------------------

  /**
   * Sends a fop, again on the next connection if it broke and sending again is harmless.
   * Everything it waits for (a connection, a reopen, the answer) counts against one deadline.
   * If its frame is interrupted while it is on the brick, the brick is told (CANCEL).
   */
  async call(op: FopName, args: unknown[], deadline = Date.now() + ms(this.options['frame-timeout'])): Promise<unknown> {
    const [frame, ...rest] = args as [Frame, ...unknown[]];
    const wire = FOP_WIRE[op];
    const rid = needsRequestId(op, op === 'write' ? (rest[0] as Fd) : undefined) ? nextRid() : undefined;
    const resend = rid !== undefined || wire.resend;
    // A blocking lock waits as long as its connection lives (an interrupt cancels it on the
    // brick): given up on here by a deadline, a grant coming later would hold it for nobody.
    const blocking = (op === 'lk' && rest[1] === 'wait') || (op === 'inodelk' && rest[2] === 'wait') || (op === 'entrylk' && rest[3] === 'lock');
    const conn = this.connection;
    for (let again = false; ; again = true) {
      const peer = await conn.wait(deadline, op, frame);
      const epoch = conn.epoch;
      const wireArgs = await Promise.all(wire.args.map((kind, i) => this.toWire(kind, rest[i], deadline)));
      const left = deadline - Date.now();
      if (left <= 0) throw new FopError('ENOTCONN', `${op}: no answer from ${this.target} within frame-timeout`);
      if (again && rid !== undefined) this.log.info(`sending ${op} (request ${rid}) again, on connection ${epoch}`);
      const sent = peer.start(Kind.REQUEST, { op, caller: wireCaller(frame.caller), lkOwner: frame.lkOwner || undefined, args: wireArgs, rid, again: again || undefined }, blocking ? undefined : left);
      const stopListening = frame.onInterrupt(() => {
        if (!peer.closed) peer.send(Kind.CANCEL, sent.id, null);
      });
      let reply: Reply;
      try {
        reply = (await sent.answer) as Reply;
      } catch (e) {
        if (e instanceof FrameError) throw new FopError('E2BIG', `${op}: ${e.message}`);
        if (e instanceof CallTimeout) throw new FopError('ENOTCONN', `${op}: no answer from ${this.target} within frame-timeout`);
        if (!(e instanceof Disconnected)) throw e;
        if (!resend) throw new FopError('ENOTCONN', `${op}: the connection to ${this.target} broke before the answer; not safe to send again`);
        continue;
      } finally {
        stopListening();
      }
      if (!reply.ok) throw new FopError(isErrnoCode(reply.errno) ? reply.errno : 'EIO', reply.message);
      if (op === 'lk' && rest[1] !== 'get' && (rest[2] as Flock).type !== 'unlock') this.fds.get(rest[0] as Fd)!.locked = true;
      if (reply.fd !== undefined) this.opened(rest[wire.args.indexOf('newfd')] as Fd, reply.fd, epoch, frame.caller, reply.continued === true);
      return reply.value;
    }
  }

  private opened(fd: Fd, remote: number, epoch: number, caller: Caller, continued: boolean): void {
    const ctx = this.fds.get(fd);
    if (ctx) Object.assign(ctx, { remote, epoch, continued });
    else this.fds.set(fd, { remote, epoch, caller, continued });
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
        // Every other flag (O_APPEND, O_SYNC, O_DSYNC, O_DIRECT, O_NOATIME...) goes as opened.
        return { flags: this.fds.get(fd) ? reopenFlags(fd.flags) : fd.flags, openId: fd.openId } satisfies WireNewFd;
      }
      default:
        return v;
    }
  }

  /** The server's number for an fd, reopening it first if it was opened on another connection. */
  private async remoteFd(fd: Fd, deadline: number): Promise<number> {
    const ctx = this.fds.get(fd);
    if (!ctx) throw new FopError('EBADF', `fd ${fd.id} was never opened on ${this.target}`);
    if (ctx.lost) throw this.locksLost(fd);
    if (ctx.epoch === this.connection.epoch) return ctx.remote;
    ctx.reopening ??= this.reopen(fd, ctx, deadline).finally(() => (ctx.reopening = undefined));
    // A reopen started by a fop with a later deadline must not hold this one past its own.
    try {
      return await withDeadline(ctx.reopening, Math.max(0, deadline - Date.now()), `reopening fd ${fd.id}`);
    } catch (e) {
      if ((e as Error).name === 'Expired') throw new FopError('ENOTCONN', `fd ${fd.id}: not reopened on ${this.target} within frame-timeout`);
      throw e;
    }
  }

  private async reopen(fd: Fd, ctx: FdCtx, deadline: number): Promise<number> {
    const gfid = fd.inode.gfid;
    const frame = this.host.frame('reopen', ctx.caller);
    try {
      await this.call(fd.isDir ? 'opendir' : 'open', [frame, { path: `<gfid:${gfid}>`, gfid, inode: fd.inode }, fd], deadline);
      this.log.debug(`reopened fd ${fd.id} (${gfid}) on connection ${ctx.epoch}${ctx.continued ? ' (the brick had kept it)' : ''}`);
      // The brick let this open file's locks go (it restarted, or the grace period ended): going
      // on would let the application believe it still holds them (GlusterFS fails such fds too).
      if (ctx.locked && !ctx.continued) {
        ctx.lost = true;
        void this.releaseRemote(ctx);
        throw this.locksLost(fd);
      }
      return ctx.remote;
    } finally {
      frame.done();
    }
  }

  private locksLost(fd: Fd): FopError {
    return new FopError('EIO', `fd ${fd.id}: its locks were lost with the connection to ${this.target}; close and open the file again`);
  }

  override async release(fd: Fd): Promise<void> {
    const ctx = this.fds.take(fd);
    if (ctx) await this.releaseRemote(ctx);
  }

  private async releaseRemote(ctx: FdCtx): Promise<void> {
    const peer = this.conn?.current;
    // On another connection the server already let it go.
    if (ctx.epoch !== this.conn?.epoch || !peer) return;
    await peer.call(Kind.REQUEST, { op: RELEASE, caller: ROOT_CALLER, args: [ctx.remote] }, RELEASE_TIMEOUT_MS).catch(() => undefined);
  }
}

Xlator.interceptAll(Client, (xl, op, args) => xl.call(op, args));

export default defineTranslator({
  type: 'protocol/client',
  description: 'the far side of a protocol/server, over TCP or TLS, with login, reconnection and fd reopening',
  options,
  subvolumes: { min: 0, max: 0 },
  create: (init) => new Client(init),
});
