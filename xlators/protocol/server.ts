import * as net from 'net';
import { FopError } from '../../src/core/errors';
import type { Fd } from '../../src/core/fd';
import type { FopName, Loc } from '../../src/core/fops';
import { OptionValues, opt } from '../../src/core/options';
import { defineTranslator } from '../../src/core/registry';
import { Iatt, isGfid } from '../../src/core/types';
import { Xlator } from '../../src/core/xlator';
import { Frame as WireFrame, Kind, VERSION } from '../../src/rpc/frame';
import { Peer } from '../../src/rpc/peer';
import { ArgKind, FOP_WIRE, Hello, RELEASE, Reply, Request, WireLoc, WireNewFd, checkRequest } from '../../src/rpc/wire';

const options = {
  'listen-port': opt.int({ description: 'TCP port to serve on', default: '24009', min: 1, max: 65535, aliases: ['transport.socket.listen-port'], reconfigurable: false }),
  'transport.address': opt.string({
    description: 'address to listen on (0.0.0.0: every interface)',
    default: '127.0.0.1',
    aliases: ['transport.socket.bind-address'],
    reconfigurable: false,
  }),
  'auth.allow': opt.string({ description: 'peers allowed in: comma-separated address patterns, * matches any run of characters', default: '*' }),
};

type Options = OptionValues<typeof options>;

/** How long a new connection has to say HELLO, and shutdown to let requests in flight finish. */
const HELLO_TIMEOUT_MS = 5000;
const DRAIN_TIMEOUT_MS = 5000;
/** Fops whose reply names an object the server then knows the type of. */
const LEARNS = new Set<FopName>(['lookup', 'mknod', 'mkdir', 'symlink', 'create', 'link']);

interface Client {
  readonly peer: Peer;
  name?: string;
  welcomed: boolean;
  /** Why this peer may not come in (auth.allow), told at HELLO. */
  refused?: string;
  readonly fds: Map<number, Fd>;
  nextFd: number;
  inFlight: number;
}

/** Address patterns: `*` matches any run of characters; IPv4-mapped IPv6 addresses count as IPv4. */
function allowList(spec: string): RegExp[] {
  return spec
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => new RegExp('^' + p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$'));
}

const plainAddress = (a: string | undefined) => (a ?? '').replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');

/**
 * protocol/server: serves its subvolume to protocol/client peers over TCP. A peer must pass
 * auth.allow and a handshake (protocol version, volume name) before it may send fops; every
 * request is checked against its fop's argument shapes, so nothing a peer sends reaches the
 * graph malformed. The fds a client opens are its own, and are released when it says
 * goodbye or its connection ends. Shutdown stops taking requests, lets those in flight
 * finish, then closes every connection.
 */
export class Server extends Xlator<Options> {
  private listener?: net.Server;
  private readonly clients = new Set<Client>();
  private draining = false;
  private allow: RegExp[] = [];

  override async init(): Promise<void> {
    this.allow = allowList(this.options['auth.allow']);
    const { 'listen-port': port, 'transport.address': host } = this.options;
    const listener = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      listener.once('error', (e: NodeJS.ErrnoException) =>
        reject(new Error(e.code === 'EADDRINUSE' ? `cannot listen on ${host}:${port}: the port is in use` : `cannot listen on ${host}:${port}: ${e.message}`)),
      );
      listener.listen(port, host, () => resolve());
    });
    this.listener = listener;
    this.log.info(`serving '${this.children[0].name}' on ${host}:${port}`);
  }

  override async reconfigure(o: Options): Promise<void> {
    await super.reconfigure(o);
    this.allow = allowList(o['auth.allow']);
  }

  override async fini(): Promise<void> {
    await this.stopServing();
  }

  protected override async drain(): Promise<void> {
    await this.stopServing();
  }

  override dump(): Record<string, unknown> {
    return {
      listen: `${this.options['transport.address']}:${this.options['listen-port']}`,
      clients: [...this.clients].map((c) => ({ address: c.peer.address, name: c.name, fds: c.fds.size, inFlight: c.inFlight })),
    };
  }

  /** Refuses new connections and requests, lets the ones in flight finish, then ends every connection. */
  private async stopServing(): Promise<void> {
    if (this.draining && !this.listener) return;
    this.draining = true;
    const listener = this.listener;
    this.listener = undefined;
    listener?.close();
    const end = Date.now() + DRAIN_TIMEOUT_MS;
    while ([...this.clients].some((c) => c.inFlight > 0) && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    for (const c of [...this.clients]) c.peer.close('the server is shutting down');
  }

  private accept(socket: net.Socket): void {
    // The peer's callbacks only run once the socket has events, by when `client` is set.
    let client!: Client;
    const peer = new Peer(socket, { log: this.log, onFrame: (_p, f) => this.onFrame(client, f), onClose: () => this.leave(client) });
    client = { peer, welcomed: false, fds: new Map(), nextFd: 1, inFlight: 0 };
    this.clients.add(client);
    if (this.draining) return peer.close('the server is shutting down');
    const address = plainAddress(socket.remoteAddress);
    if (!this.allow.some((re) => re.test(address))) client.refused = `${address} is not in auth.allow`;
    setTimeout(() => client.welcomed || peer.close('no handshake'), HELLO_TIMEOUT_MS).unref();
  }

  private onFrame(client: Client, f: WireFrame): void {
    const { peer } = client;
    switch (f.kind) {
      case Kind.HELLO:
        return this.hello(client, f);
      case Kind.REQUEST:
        if (!client.welcomed) return peer.close('a request before the handshake');
        // Shutting down: requests not yet taken are not answered; the client sends them again elsewhere.
        if (!this.draining) void this.serve(client, f);
        return;
      case Kind.PING:
        return peer.send(Kind.PONG, f.id, null);
      case Kind.BYE:
        return peer.close(`client ${client.name ?? '?'} said goodbye`);
      default:
        return peer.close(`unexpected frame kind ${f.kind}`);
    }
  }

  private hello(client: Client, f: WireFrame): void {
    const h = (f.body ?? {}) as Partial<Hello>;
    const volume = this.children[0].name;
    const reason =
      client.refused ??
      (client.welcomed ? 'a second handshake' : undefined) ??
      (h?.version !== VERSION ? `protocol version ${h?.version}, this server speaks ${VERSION}` : undefined) ??
      (h.volume !== volume ? `no volume '${h.volume}' here (this server serves '${volume}')` : undefined);
    if (reason) {
      this.log.warn(`refused ${client.peer.address}: ${reason}`);
      client.peer.send(Kind.WELCOME, f.id, { ok: false, reason });
      return client.peer.close(`refused: ${reason}`);
    }
    client.welcomed = true;
    client.name = typeof h.client === 'string' ? h.client.slice(0, 200) : undefined;
    client.peer.send(Kind.WELCOME, f.id, { ok: true });
    this.log.info(`client ${client.name} connected from ${client.peer.address}`);
  }

  private async serve(client: Client, f: WireFrame): Promise<void> {
    client.inFlight++;
    let reply: Reply;
    try {
      const bad = checkRequest(f.body);
      if (bad) throw new FopError('EINVAL', bad);
      reply = await this.dispatch(client, f.body as Request);
    } catch (e) {
      const err = FopError.from(e);
      reply = { ok: false, errno: err.code, message: err.detail };
    } finally {
      client.inFlight--;
    }
    if (client.peer.closed) return;
    try {
      client.peer.send(Kind.REPLY, f.id, reply);
    } catch (e) {
      client.peer.send(Kind.REPLY, f.id, { ok: false, errno: 'EIO', message: (e as Error).message });
    }
  }

  private async dispatch(client: Client, req: Request): Promise<Reply> {
    if (req.op === RELEASE) {
      const fd = client.fds.get(req.args[0] as number);
      client.fds.delete(req.args[0] as number);
      await fd?.unref();
      return { ok: true };
    }
    const op = req.op;
    const kinds = FOP_WIRE[op].args;
    // A fop holds the fd it works on: a release or a departure meanwhile must not close it under it.
    const held: Fd[] = [];
    const frame = this.host.frame(op, req.caller);
    let opened: Fd | undefined;
    try {
      const args = kinds.map((kind, i) => this.fromWire(client, kind, req.args[i], op, req.args[0], held));
      opened = kinds.includes('newfd') ? (args[kinds.indexOf('newfd')] as Fd) : undefined;
      const value = await (this.children[0][op] as (...a: unknown[]) => Promise<unknown>).apply(this.children[0], [frame, ...args]);
      if (LEARNS.has(op)) this.learn(value as Iatt, args[kinds.lastIndexOf('loc')] as Loc);
      if (!opened) return { ok: true, value };
      if (!this.clients.has(client)) throw new FopError('ENOTCONN', 'the client left while this was open');
      const n = client.nextFd++;
      client.fds.set(n, opened);
      return { ok: true, value, fd: n };
    } catch (e) {
      await opened?.unref();
      throw e;
    } finally {
      frame.done();
      for (const fd of held) await fd.unref();
    }
  }

  /** What a reply says about an object's type stays in the inode table (storage need not look again). */
  private learn(iatt: Iatt, loc: Loc): void {
    this.host.itable.link(iatt, loc.parent, loc.name);
  }

  private fromWire(client: Client, kind: ArgKind, v: unknown, op: FopName, first: unknown, held: Fd[]): unknown {
    switch (kind) {
      case 'loc':
        return this.loc(v as WireLoc);
      case 'fd': {
        const fd = client.fds.get(v as number);
        if (!fd) throw new FopError('EBADF', `no fd ${v} open for this client`);
        held.push(fd.ref());
        return fd;
      }
      case 'newfd': {
        const loc = this.loc(first as WireLoc);
        if (!loc.inode) throw new FopError('EINVAL', `${op} needs the GFID of what it opens`);
        return this.host.newFd(loc.inode, (v as WireNewFd).flags, op === 'opendir');
      }
      default:
        return v;
    }
  }

  /** The server's own inodes for the GFIDs a client names; anything that is not a GFID is refused. */
  private loc(w: WireLoc): Loc {
    for (const g of [w.gfid, w.parent]) if (g !== undefined && !isGfid(g)) throw new FopError('EINVAL', `bad GFID ${JSON.stringify(g)}`);
    const t = this.host.itable;
    return { path: w.path, gfid: w.gfid, inode: w.gfid ? t.get(w.gfid) : undefined, parent: w.parent ? t.get(w.parent) : undefined, name: w.name };
  }

  /** A client left (goodbye, a closed or dead connection): what it held goes. */
  private leave(client: Client): void {
    this.clients.delete(client);
    const fds = [...client.fds.values()];
    client.fds.clear();
    for (const fd of fds) void fd.unref();
    if (client.welcomed) this.log.info(`client ${client.name} left; released ${fds.length} fd(s)`);
  }
}

export default defineTranslator({
  type: 'protocol/server',
  description: 'serves its subvolume to protocol/client peers over TCP',
  options,
  subvolumes: { min: 1, max: 1 },
  create: (init) => new Server(init),
});
