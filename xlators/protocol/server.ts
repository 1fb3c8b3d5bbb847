import { createHash } from 'crypto';
import type * as net from 'net';
import * as path from 'path';
import { Fd, FopError, FopName, Frame, Iatt, Loc, Xlator, defineTranslator, isGfid, opt, reopenFlags, systemClock } from '../../src/core/index';
import type { Caller, Clock, DirentPlus, OptionValues, Timer, Upcall, XlatorInit } from '../../src/core/index';
import { Exchange, isNonce, loginKey, newNonce, proofMatches, clientProof, serverProof } from '../../src/rpc/auth';
import { Frame as WireFrame, Kind, VERSION } from '../../src/rpc/frame';
import { Peer } from '../../src/rpc/peer';
import { TlsMaterial, listen, loadTls, peerCertName } from '../../src/rpc/transport';
import { ArgKind, FOP_WIRE, Hello, MAX_IDENTITY, RELEASE, Reply, Request, WireLoc, WireNewFd, WireUpcall, checkRequest } from '../../src/rpc/wire';
import { ReplyCache } from './reply-cache';
import { Replays } from './replay';

const options = {
  'listen-port': opt.int({ description: 'TCP port to serve on', default: '24009', min: 1, max: 65535, aliases: ['transport.socket.listen-port'], reconfigurable: false }),
  'transport.address': opt.string({
    description: 'address to listen on (0.0.0.0: every interface)',
    default: '127.0.0.1',
    aliases: ['transport.socket.bind-address'],
    reconfigurable: false,
  }),
  'auth.allow': opt.string({ description: 'peers allowed in: comma-separated address patterns, * matches any run of characters', default: '*' }),
  'auth.login.*.allow': opt.family({
    description: 'auth.login.<volume>.allow: the users (comma-separated) who may log in to the volume this server serves',
    each: opt.string({ description: 'users' }),
  }),
  'auth.login.*.password': opt.family({ description: "auth.login.<user>.password: that user's password", each: opt.string({ description: 'a password' }) }),
  'auth.insecure-open': opt.bool({
    description: 'serve without a login or TLS: anyone who can connect may act as any user (a brick refuses to start that way unless this is on)',
    default: 'off',
  }),
  'transport.socket.ssl-enabled': opt.bool({ description: 'serve over mutual TLS: clients need a certificate the CA list signed', default: 'off', aliases: ['ssl-enabled', 'server.ssl'], reconfigurable: false }),
  'transport.socket.ssl-own-cert': opt.path({ description: "this server's certificate (PEM)", default: '/etc/ssl/glusterfs.pem', aliases: ['ssl.own-cert', 'ssl-own-cert'], reconfigurable: false }),
  'transport.socket.ssl-private-key': opt.path({ description: "this server's private key (PEM)", default: '/etc/ssl/glusterfs.key', aliases: ['ssl.private-key', 'ssl-private-key'], reconfigurable: false }),
  'transport.socket.ssl-ca-list': opt.path({ description: "the CA certificates clients' certificates must chain to (PEM)", default: '/etc/ssl/glusterfs.ca', aliases: ['ssl.ca-list', 'ssl-ca-list'], reconfigurable: false }),
  'auth.ssl-allow': opt.string({ description: 'with TLS: the certificate common names (CN) allowed in, comma-separated, * matches any run of characters', default: '*' }),
  'root-squash': opt.bool({ description: "treat callers with uid or gid 0 as anonuid/anongid: a client's root is not the brick's root", default: 'off', aliases: ['server.root-squash'] }),
  anonuid: opt.int({ description: 'the uid root-squash maps uid 0 to', default: '65534', min: 0, max: 4294967294, aliases: ['server.anonuid'] }),
  anongid: opt.int({ description: 'the gid root-squash maps gid 0 to', default: '65534', min: 0, max: 4294967294, aliases: ['server.anongid'] }),
  'grace-timeout': opt.time({
    description:
      "how long the open files (and with them the POSIX and flock locks) of a client whose connection broke without a goodbye are kept for it: " +
      'a client that comes back within it (reconnected, or a mount\'s new worker) continues them, and nobody else can take its locks meanwhile; 0: released at once',
    default: '10',
    min: 0,
    max: 3600,
    aliases: ['server.grace-timeout'],
  }),
  'reply-cache-directory': opt.path({
    description:
      "where the replies to requests not safe to carry out twice are kept, for clients that send them again after a crash (default: the .xlstack folder of the storage directory below, if there is one; else in memory)",
    reconfigurable: false,
  }),
};

type Options = OptionValues<typeof options>;

/** How long a new connection has to finish TLS and say HELLO, and shutdown to let requests in flight finish. */
const HELLO_TIMEOUT_MS = 5000;
const DRAIN_TIMEOUT_MS = 5000;
/** Fops whose reply names an object the server then knows the type of. */
const LEARNS = new Set<FopName>(['lookup', 'mknod', 'mkdir', 'symlink', 'create', 'link']);
/** What a client is told when its login fails (the log says why; a guesser learns nothing). */
const AUTH_FAILED = 'authentication failed';

interface Client {
  /** Unique among this server's connections. */
  readonly id: string;
  /**
   * Whose locks and open files these are: the client process (Hello.process) under its
   * login, the same across its connections; the connection's id when it names none.
   */
  identity: string;
  readonly peer: Peer;
  readonly nonce: string;
  name?: string;
  user?: string;
  welcomed: boolean;
  /** Why this peer may not come in (auth.allow, auth.ssl-allow), told at HELLO. */
  refused?: string;
  readonly fds: Map<number, Fd>;
  nextFd: number;
  /** Frames of the requests being served, by request id (a CANCEL interrupts one). */
  readonly inFlight: Map<number, Frame>;
  /** It takes UPCALL frames (said so in its HELLO). */
  upcalls: boolean;
  /** It said goodbye: what it held goes at once. */
  bye?: boolean;
}

/** What a client that left without a goodbye held, kept for it until the grace period ends. */
interface Departed {
  /** By the open file they continue (Fd.openId). */
  readonly fds: Map<string, Fd>;
  timer?: Timer;
  /** Open files a returning client continued (told so in the open's reply). */
  reclaimed: number;
}

/** Who may log in to the volume, with their keys. */
type Logins = ReadonlyMap<string, Buffer>;

/** Address or name patterns: `*` matches any run of characters. */
function patterns(spec: string): RegExp[] {
  return spec
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => new RegExp('^' + p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$'));
}

/**
 * The listening sockets of this process, by address. A brick's graph switch builds a new
 * protocol/server on the same port while the old one still serves: the new one takes the
 * listening socket over (when its TLS material is the same), so no client is ever refused;
 * the old one keeps only the connections it has, until its graph lets them go.
 */
interface Listening {
  readonly server: net.Server;
  /** What TLS it speaks: a server with other material listens anew. */
  readonly tlsKey: string;
  owner: Server;
}

const LISTENING = new Map<string, Listening>();

const tlsKeyOf = (t: TlsMaterial | undefined): string =>
  t ? createHash('sha256').update(t.cert).update(t.key).update(t.ca).digest('hex') : 'plain';

const plainAddress = (a: string | undefined) => (a ?? '').replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');

/**
 * protocol/server: serves its subvolume to protocol/client peers, over TCP or mutual TLS.
 * Every connection is challenged with a fresh nonce; a client must pass auth.allow (and
 * auth.ssl-allow over TLS), name the volume and protocol version, and log in by answering
 * the challenge (auth.login.*) before it may send fops. A server with neither logins nor TLS
 * refuses to start unless auth.insecure-open says so. Every request is checked against its
 * fop's argument shapes, so nothing a peer sends reaches the graph malformed; its caller may
 * be squashed (root-squash) and its lock owner is prefixed with the client's identity. The
 * fds a client opens are its own, and are released (and with them its locks) when it says
 * goodbye or its connection ends. Shutdown stops taking requests, lets those in flight
 * finish, then closes every connection.
 */
export class Server extends Xlator<Options> {
  private listening?: Listening;
  /** The server this one took the listening socket from (it gets it back if this one never serves). */
  private tookFrom?: Server;
  private readonly clients = new Set<Client>();
  private draining = false;
  private allow: RegExp[] = [];
  private sslAllow: RegExp[] = [];
  private logins: Logins = new Map();
  private tls?: TlsMaterial;
  private nextClient = 1;
  private inFlight = 0;
  /** Requests that came while shutting down, left for the client to send elsewhere. */
  private notTaken = 0;
  private idle?: () => void;
  private replays?: Replays;
  /** Departed clients' open files, by client identity, during their grace period. */
  private readonly departed = new Map<string, Departed>();

  constructor(
    init: XlatorInit<Options>,
    private readonly clock: Clock = systemClock,
  ) {
    super(init);
  }

  private get volume(): string {
    return this.children[0].name;
  }

  override async init(): Promise<void> {
    const o = this.options;
    if (o['transport.socket.ssl-enabled']) {
      this.tls = loadTls({ ownCert: o['transport.socket.ssl-own-cert'], privateKey: o['transport.socket.ssl-private-key'], caList: o['transport.socket.ssl-ca-list'] });
    }
    await this.applyAuth(o);
    this.replays = new Replays(ReplyCache.acquire(this.replyCacheFile(), this.log), this.log);
    try {
      await this.takeListener();
    } catch (e) {
      this.replays.cache.release();
      throw e;
    }
    const { 'listen-port': port, 'transport.address': host } = o;
    const how = [this.tls && 'TLS', this.logins.size && `logins for ${[...this.logins.keys()].join(', ')}`].filter(Boolean).join(' and ') || 'no authentication';
    this.log.info(`serving '${this.volume}' on ${host}:${port} (${how})`);
  }

  /** Listens on the address, or takes over the socket a server of an older graph listens on. */
  private async takeListener(): Promise<void> {
    const { 'listen-port': port, 'transport.address': host } = this.options;
    const key = `${host}:${port}`;
    const tlsKey = tlsKeyOf(this.tls);
    const prior = LISTENING.get(key);
    if (prior && prior.tlsKey === tlsKey) {
      this.log.info(`taking over ${key} from ${prior.owner.name}-${prior.owner.host.id}`);
      this.tookFrom = prior.owner;
      prior.owner = this;
      this.listening = prior;
      return;
    }
    // Other TLS material: the old socket goes, and this one listens with its own.
    if (prior) {
      LISTENING.delete(key);
      await new Promise((r) => prior.server.close(r));
    }
    const entry: Listening = { tlsKey, owner: this, server: undefined as unknown as net.Server };
    const server = await listen({ host, port, tls: this.tls, handshakeTimeoutMs: HELLO_TIMEOUT_MS, log: this.log }, (socket) => entry.owner.accept(socket));
    (entry as { server: net.Server }).server = server;
    LISTENING.set(key, entry);
    this.listening = entry;
  }

  /**
   * Stops listening, unless a newer server took the socket over; a server that took it from
   * one still serving (its graph did not start, or was abandoned) gives it back.
   */
  private releaseListener(): void {
    const l = this.listening;
    this.listening = undefined;
    if (!l || l.owner !== this) return;
    const back = this.tookFrom;
    if (back && !back.draining) {
      l.owner = back;
      back.listening = l;
      return;
    }
    for (const [key, v] of LISTENING) if (v === l) LISTENING.delete(key);
    l.server.close();
  }

  override async reconfigure(o: Options): Promise<void> {
    await this.applyAuth(o);
    await super.reconfigure(o);
  }

  /**
   * Checks and takes in the access options: the logins of this volume (each with a
   * password), TLS, or auth.insecure-open. Safe by default: none of them is an error.
   */
  private async applyAuth(o: Options): Promise<void> {
    const allow = o['auth.login.*.allow'];
    const passwords = o['auth.login.*.password'];
    for (const other of allow.keys()) {
      if (other !== this.volume) this.log.warn(`auth.login.${other}.allow: this server serves '${this.volume}', not '${other}'; ignored`);
    }
    const users = (allow.get(this.volume) ?? '')
      .split(',')
      .map((u) => u.trim())
      .filter(Boolean);
    const missing = users.filter((u) => !passwords.has(u));
    if (missing.length) throw new Error(`auth.login.${this.volume}.allow names ${missing.join(', ')}, with no auth.login.<user>.password`);
    if (!users.length && !o['transport.socket.ssl-enabled']) {
      if (!o['auth.insecure-open']) {
        throw new Error(
          `refusing to serve '${this.volume}' to anyone who can connect, as any user: set auth.login.${this.volume}.allow and auth.login.<user>.password ` +
            `(the clients' username and password), or transport.socket.ssl-enabled, or say so with 'option auth.insecure-open on'`,
        );
      }
      this.log.warn(`auth.insecure-open: '${this.volume}' is open to anyone who can connect, acting as any user they claim (root included)`);
    }
    const keys = await Promise.all(users.map(async (u) => [u, await loginKey(u, passwords.get(u)!)] as const));
    this.logins = new Map(keys);
    this.allow = patterns(o['auth.allow']);
    this.sslAllow = patterns(o['auth.ssl-allow']);
  }

  override async fini(): Promise<void> {
    await this.stopServing();
    this.replays?.cache.release();
    this.replays = undefined;
  }

  /**
   * Where the reply cache lives: the option, or the .xlstack folder of the directory the leaf
   * below serves (storage/posix's `directory`), so a restarted brick finds it.
   */
  private replyCacheFile(): string | undefined {
    let leaf: Xlator = this.children[0];
    while (leaf.children.length) leaf = leaf.children[0];
    const storage = (leaf.options as { directory?: unknown }).directory;
    const dir = this.options['reply-cache-directory'] ?? (typeof storage === 'string' ? path.join(storage, '.xlstack', 'replies') : undefined);
    if (!dir) this.log.info('no reply-cache-directory and no storage directory below: replies to resent requests are kept in memory only');
    return dir && path.join(dir, `${this.volume}.log`);
  }

  protected override async drain(): Promise<void> {
    await this.stopServing();
  }

  override dump(): Record<string, unknown> {
    return {
      listen: `${this.options['transport.address']}:${this.options['listen-port']}`,
      tls: !!this.tls,
      logins: [...this.logins.keys()],
      draining: this.draining,
      inFlight: this.inFlight,
      notTaken: this.notTaken,
      replies: this.replays?.dump(),
      clients: [...this.clients].map((c) => ({ id: c.id, address: c.peer.address, name: c.name, user: c.user, fds: c.fds.size, inFlight: c.inFlight.size })),
      departed: [...this.departed].map(([identity, d]) => ({ identity, fds: d.fds.size, continued: d.reclaimed })),
    };
  }

  /** Refuses new connections and requests, lets the ones in flight finish (bounded), then ends every connection. */
  private async stopServing(): Promise<void> {
    if (this.draining && !this.listening) return;
    this.draining = true;
    this.releaseDeparted();
    this.releaseListener();
    if (this.inFlight > 0) {
      const drained = new Promise<boolean>((r) => (this.idle = () => r(true)));
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), DRAIN_TIMEOUT_MS)));
      if (!(await Promise.race([drained, expired]))) this.log.warn(`${this.inFlight} request(s) still in flight after ${DRAIN_TIMEOUT_MS} ms; closing anyway`);
      clearTimeout(timer);
    }
    for (const c of [...this.clients]) c.peer.close('the server is shutting down');
  }

  private accept(socket: net.Socket): void {
    // The peer's callbacks only run once the socket has events, by when `client` is set.
    let client!: Client;
    const peer = new Peer(socket, { log: this.log, onFrame: (_p, f) => this.onFrame(client, f), onClose: () => this.leave(client) });
    const id = `c${this.nextClient++}`;
    client = { id, identity: id, peer, nonce: newNonce(), welcomed: false, fds: new Map(), nextFd: 1, inFlight: new Map(), upcalls: false };
    this.clients.add(client);
    if (this.draining) return peer.close('the server is shutting down');
    const address = plainAddress(socket.remoteAddress);
    if (!this.allow.some((re) => re.test(address))) client.refused = `${address} is not in auth.allow`;
    else if (this.tls) {
      const cn = peerCertName(socket);
      if (cn === undefined || !this.sslAllow.some((re) => re.test(cn))) client.refused = `certificate name ${JSON.stringify(cn ?? '')} is not in auth.ssl-allow`;
    }
    peer.send(Kind.CHALLENGE, 0, { nonce: client.nonce });
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
        if (this.draining) this.notTaken++;
        else void this.serve(client, f);
        return;
      case Kind.CANCEL:
        if (!client.welcomed) return peer.close('a cancel before the handshake');
        client.inFlight.get(f.id)?.interrupt();
        return;
      case Kind.PING:
        return peer.send(Kind.PONG, f.id, null);
      case Kind.BYE:
        client.bye = true;
        return peer.close(`client ${client.name ?? '?'} said goodbye`);
      default:
        return peer.close(`unexpected frame kind ${f.kind}`);
    }
  }

  private hello(client: Client, f: WireFrame): void {
    const h = (typeof f.body === 'object' && f.body !== null && !Buffer.isBuffer(f.body) ? f.body : {}) as Partial<Hello>;
    const reason =
      client.refused ??
      (client.welcomed ? 'a second handshake' : undefined) ??
      (h.version !== VERSION ? `protocol version ${h.version}, this server speaks ${VERSION}` : undefined) ??
      (h.volume !== this.volume ? `no volume '${h.volume}' here (this server serves '${this.volume}')` : undefined);
    if (reason) return this.refuse(client, f.id, reason, reason);
    const login = this.checkLogin(client, h);
    if (!login.ok) return this.refuse(client, f.id, login.why, AUTH_FAILED);
    client.welcomed = true;
    client.name = typeof h.client === 'string' ? h.client.slice(0, 200) : undefined;
    client.user = login.user;
    const proc = typeof h.process === 'string' && h.process.length <= MAX_IDENTITY && /^[\w.:-]+$/.test(h.process) ? h.process : client.id;
    client.identity = `${login.user ?? ''}/${proc}`;
    client.upcalls = h.upcalls === true;
    client.peer.send(Kind.WELCOME, f.id, { ok: true, proof: login.proof });
    this.log.info(`client ${client.name} connected from ${client.peer.address}${login.user ? ` as ${login.user}` : ''} (${client.id})`);
  }

  /** Answers a HELLO with a refusal (`told`: what the client learns) and ends the connection. */
  private refuse(client: Client, id: number, why: string, told: string): void {
    this.log.warn(`refused ${client.peer.address}: ${why}`);
    client.peer.send(Kind.WELCOME, id, { ok: false, reason: told });
    client.peer.close(`refused: ${told}`);
  }

  /** Whether the HELLO's login answers this connection's challenge; why not, for the log. */
  private checkLogin(client: Client, h: Partial<Hello>): { ok: true; user?: string; proof?: string } | { ok: false; why: string } {
    if (this.logins.size === 0) return { ok: true };
    const l = h.login as Partial<NonNullable<Hello['login']>> | undefined;
    if (typeof l !== 'object' || l === null) return { ok: false, why: `${AUTH_FAILED}: no login (volume '${this.volume}' needs one: username and password on protocol/client)` };
    if (typeof l.user !== 'string' || !isNonce(l.nonce)) return { ok: false, why: `${AUTH_FAILED}: a malformed login` };
    const key = this.logins.get(l.user);
    const user = JSON.stringify(l.user.slice(0, 100));
    if (!key) return { ok: false, why: `${AUTH_FAILED}: user ${user} may not log in to '${this.volume}'` };
    const x: Exchange = { volume: this.volume, user: l.user, serverNonce: client.nonce, clientNonce: l.nonce };
    if (!proofMatches(clientProof(key, x), l.proof)) return { ok: false, why: `${AUTH_FAILED}: wrong password for user ${user} (or an answer to another connection's challenge)` };
    return { ok: true, user: l.user, proof: serverProof(key, x) };
  }

  private async serve(client: Client, f: WireFrame): Promise<void> {
    this.inFlight++;
    let reply: Reply;
    try {
      const bad = checkRequest(f.body);
      if (bad) throw new FopError('EINVAL', bad);
      reply = await this.dispatch(client, f.id, f.body as Request);
    } catch (e) {
      const err = FopError.from(e);
      reply = { ok: false, errno: err.code, message: err.detail };
    } finally {
      if (--this.inFlight === 0) this.idle?.();
    }
    if (client.peer.closed) return;
    try {
      client.peer.send(Kind.REPLY, f.id, reply);
    } catch (e) {
      client.peer.send(Kind.REPLY, f.id, { ok: false, errno: 'EIO', message: (e as Error).message });
    }
  }

  /** The credentials a request runs with: as sent, or with root squashed. */
  private caller(c: Caller): Caller {
    if (!this.options['root-squash']) return c;
    const { anonuid, anongid } = this.options;
    return { uid: c.uid === 0 ? anonuid : c.uid, gid: c.gid === 0 ? anongid : c.gid, groups: c.groups.map((g) => (g === 0 ? anongid : g)), pid: c.pid };
  }

  private async dispatch(client: Client, id: number, req: Request): Promise<Reply> {
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
    // Lock owners are the client's own: two clients' owners never meet.
    const frame = this.host.frame(op, { caller: this.caller(req.caller), lkOwner: `${client.identity}:${req.lkOwner ?? ''}`, client: client.identity });
    client.inFlight.set(id, frame);
    let opened: Fd | undefined;
    try {
      const args = kinds.map((kind, i) => this.fromWire(client, kind, req.args[i], op, req.args[0], held, req.again));
      opened = kinds.includes('newfd') ? (args[kinds.indexOf('newfd')] as Fd) : undefined;
      const child = this.children[0];
      const exec = () => (child[op] as (...a: unknown[]) => Promise<unknown>).apply(child, [frame, ...args]);
      // Not safe twice: carried out once whatever the number of sendings (replay.ts).
      const value = req.rid === undefined ? await exec() : await this.replays!.run({ key: `${client.identity} ${req.rid}`, again: !!req.again, op, args, frame, child }, exec);
      if (LEARNS.has(op)) this.learn(value as Iatt, args[kinds.lastIndexOf('loc')] as Loc);
      if (op === 'readdirp') this.learnEntries(value as DirentPlus[], args[0] as Fd);
      if (!opened) return { ok: true, value };
      if (!this.clients.has(client)) throw new FopError('ENOTCONN', 'the client left while this was open');
      const n = client.nextFd++;
      client.fds.set(n, opened);
      return this.continues(client.identity, opened.openId) ? { ok: true, value, fd: n, continued: true } : { ok: true, value, fd: n };
    } catch (e) {
      await opened?.unref();
      throw e;
    } finally {
      client.inFlight.delete(id);
      frame.done();
      for (const fd of held) await fd.unref();
    }
  }

  /** What a reply says about an object's type stays in the inode table (storage need not look again). */
  private learn(iatt: Iatt, loc: Loc): void {
    this.host.itable.link(iatt, loc.parent, loc.name);
  }

  private learnEntries(entries: DirentPlus[], dir: Fd): void {
    for (const e of entries) if (e.iatt && e.name !== '.' && e.name !== '..') this.host.itable.link(e.iatt, dir.inode, e.name);
  }

  private fromWire(client: Client, kind: ArgKind, v: unknown, op: FopName, first: unknown, held: Fd[], again?: boolean): unknown {
    switch (kind) {
      case 'loc':
        return this.loc(v as WireLoc);
      case 'fd': {
        const fd = client.fds.get(v as number);
        if (!fd) throw new FopError('EBADF', `no fd ${v} open for this client`);
        held.push(fd.ref());
        return fd;
      }
      case 'maybename':
        return v ?? undefined;
      case 'newfd': {
        const loc = this.loc(first as WireLoc);
        if (!loc.inode) throw new FopError('EINVAL', `${op} needs the GFID of what it opens`);
        const nf = v as WireNewFd;
        // A create sent again may find its file made by the first sending: then it opens it as it is.
        const flags = op === 'create' && again ? reopenFlags(nf.flags) : nf.flags;
        return this.host.newFd(loc.inode, flags, op === 'opendir', nf.openId === undefined ? undefined : `${client.identity}:${nf.openId}`);
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

  /**
   * An upcall from below (features/upcall) for one client: sent over each of its connections
   * that takes upcalls. The top of a brick's graph: it goes no further.
   */
  override upcall(u: Upcall): void {
    if (u.client === undefined) return;
    const body: WireUpcall = { gfid: u.gfid, attrs: u.attrs, data: u.data, xattrs: u.xattrs, entries: u.entries };
    for (const c of this.clients) {
      if (!c.welcomed || !c.upcalls || c.identity !== u.client || c.peer.closed) continue;
      try {
        c.peer.send(Kind.UPCALL, 0, body);
      } catch (e) {
        this.log.debug(`upcall to ${c.name}: ${(e as Error).message}`);
      }
    }
  }

  /**
   * A client left (goodbye, a closed or dead connection). Its internal locks go at once; its
   * open files (and the locks they carry) too after a goodbye, else at the end of the grace
   * period, unless it comes back and continues them first.
   */
  private leave(client: Client): void {
    this.clients.delete(client);
    // Nobody waits for these any more: a blocked lock stops waiting (and is not granted to a ghost).
    for (const frame of client.inFlight.values()) frame.interrupt();
    const fds = [...client.fds.values()];
    client.fds.clear();
    const graceMs = Math.round(this.options['grace-timeout'] * 1000);
    if (client.welcomed && !client.bye && !this.draining && graceMs > 0 && fds.length) this.keep(client, fds, graceMs);
    else for (const fd of fds) void fd.unref();
    if (client.welcomed) this.log.info(`client ${client.name} left; ${client.bye || !graceMs || this.draining ? 'released' : `keeps for ${graceMs / 1000} s`} ${fds.length} fd(s)`);
    // Its last connection: what it holds that no fd carries (internal locks) goes too.
    if (client.welcomed && ![...this.clients].some((c) => c.identity === client.identity)) this.children[0].clientGone(`${client.identity}:`);
  }

  /** Keeps a departed client's open files for `ms`, to be continued by its next connection. */
  private keep(client: Client, fds: Fd[], ms: number): void {
    const d: Departed = this.departed.get(client.identity) ?? { fds: new Map(), reclaimed: 0 };
    // Each departure has its whole grace period (a client may come back and leave again).
    d.timer?.cancel();
    d.timer = this.clock.timer(ms, () => this.expire(client.identity, ms));
    this.departed.set(client.identity, d);
    for (const fd of fds) {
      // Two fds of one open file (a reopen raced the departure): one carries it.
      const had = d.fds.get(fd.openId);
      d.fds.set(fd.openId, fd);
      void had?.unref();
    }
  }

  private expire(identity: string, ms: number): void {
    const d = this.departed.get(identity);
    if (!d) return;
    this.departed.delete(identity);
    const left = d.fds.size;
    if (left) this.log.info(`grace period of ${identity} over (${ms / 1000} s): released ${left} fd(s) it did not continue, ${d.reclaimed} continued`);
    for (const fd of d.fds.values()) void fd.unref();
  }

  /** Whether a departed client of `identity` left open file `openId` here (its new fd continues it). */
  private continues(identity: string, openId: string): boolean {
    const d = this.departed.get(identity);
    if (!d?.fds.has(openId)) return false;
    d.reclaimed++;
    return true;
  }

  private releaseDeparted(): void {
    for (const [identity, d] of this.departed) {
      d.timer?.cancel();
      this.departed.delete(identity);
      for (const fd of d.fds.values()) void fd.unref();
    }
  }
}

export default defineTranslator({
  type: 'protocol/server',
  description: 'serves its subvolume to protocol/client peers over TCP or TLS, to clients that log in',
  options,
  subvolumes: { min: 1, max: 1 },
  create: (init) => new Server(init),
});
