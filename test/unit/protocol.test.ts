// protocol/client and protocol/server, both in this process: a brick graph (storage/posix,
// debug/gate, protocol/server on a free port) and a client graph (protocol/client) with a
// Bridge over it. Requests are held at chosen points with the brick's gate instead of
// sleeping; "restarting the brick" stops its graph and starts a new one (a new server: the
// old fds are gone there) on the same port and directory. Every wait is bounded.

import { spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { filter, firstValueFrom, throwError, timeout } from 'rxjs';
import { buildGraph } from '../../src/core/builder';
import type { Graph, TopStatus } from '../../src/core/graph';
import { Logger } from '../../src/core/log';
import { Registry, TranslatorDef, defineTranslator } from '../../src/core/registry';
import { ROOT_CALLER as CALLER, ROOT_GFID } from '../../src/core/types';
import { parseVolfile } from '../../src/core/volfile';
import { Bridge } from '../../src/fuse/bridge';
import { login, loginKey } from '../../src/rpc/auth';
import { Backoff } from '../../src/rpc/backoff';
import { Frame as WireFrame, FrameReader, Kind, VERSION, encodeFrame } from '../../src/rpc/frame';
import type { Challenge, Reply, Welcome } from '../../src/rpc/wire';
import { Gate } from '../../xlators/debug/gate';
import clientDef, { Client as ClientXlator } from '../../xlators/protocol/client';
import { sys } from '../../xlators/storage/posix/sys';
import { TEST_PASSWORD, TEST_USER, clientLogin, freePort, serverLogin } from '../helpers/brick';
import { cleanupGraphs, errCode, tempDir, within, writeFile } from '../helpers/graphs';
import { waitFor as until } from '../helpers/mount';

const { O_RDWR, O_RDONLY, O_WRONLY, O_TRUNC, O_APPEND } = fs.constants;

// --- graphs ---------------------------------------------------------------------------------

let nextId = 1;
/** Graphs started here, stopped in afterEach: clients first (they say goodbye), then bricks. */
const clientGraphs: Graph[] = [];
const brickGraphs: Graph[] = [];
const gates: Gate[] = [];
const cleanups: (() => void)[] = [];

function build(text: string, logs: string[], registry = new Registry()): Graph {
  return buildGraph(parseVolfile(text, 'protocol-test.vol'), {
    id: nextId++,
    registry,
    log: Logger.create('info', (l) => logs.push(l)),
  });
}

/** A registry whose protocol/client retries every 10 ms while its brick is away (no backoff to wait out). */
function fastReconnect(): Registry {
  const r = new Registry();
  const def = defineTranslator({ ...clientDef, create: (init) => new ClientXlator(init, { backoff: new Backoff({ initialMs: 10, maxMs: 10, jitter: 0 }) }) });
  r.register(def as unknown as TranslatorDef);
  return r;
}

/** Resolves when the graph's top reports `want` (at once if it already does). */
function status(g: Graph, want: TopStatus, ms = 5000): Promise<TopStatus> {
  return firstValueFrom(
    g.status$.pipe(
      filter((s) => s === want),
      timeout({ first: ms, with: () => throwError(() => new Error(`graph ${g.id} did not report '${want}' within ${ms} ms (it says '${g.status$.value}')`)) }),
    ),
  );
}

/** 'OK' or the code a fop failed with, plus its message and how long it took. */
async function outcome(p: Promise<unknown>, ms = 20_000): Promise<{ code: string; message: string; elapsed: number }> {
  const t = Date.now();
  try {
    await within(p, ms);
    return { code: 'OK', message: '', elapsed: Date.now() - t };
  } catch (e) {
    return { code: String((e as { code?: unknown }).code ?? 'NO-CODE'), message: (e as Error).message, elapsed: Date.now() - t };
  }
}

interface Brick {
  readonly dir: string;
  readonly port: number;
  readonly serverOptions: string;
  readonly graph: Graph;
  readonly gate: Gate;
  readonly logs: string[];
}

/** storage/posix, debug/gate over it, protocol/server over the gate (the client asks for 'gate'). */
const brickText = (dir: string, port: number, serverOptions: string, gateOptions = '') => `volume brick-posix
    type storage/posix
    option directory ${dir}
end-volume
volume gate
    type debug/gate
${gateOptions}    subvolumes brick-posix
end-volume
volume brick-server
    type protocol/server
    option listen-port ${port}
${serverLogin('gate')}${serverOptions}    subvolumes gate
end-volume
`;

async function startBrick(dir: string, port: number, serverOptions = '', gateOptions = ''): Promise<Brick> {
  const logs: string[] = [];
  const graph = build(brickText(dir, port, serverOptions, gateOptions), logs);
  brickGraphs.push(graph);
  expect(await within(graph.start(5000))).toBe('up');
  const gate = graph.xlators.get('gate') as Gate;
  expect(gate).toBeInstanceOf(Gate);
  gates.push(gate);
  return { dir, port, serverOptions, graph, gate, logs };
}

async function newBrick(serverOptions = ''): Promise<Brick> {
  return startBrick(tempDir('xlstack-proto-'), await freePort(), serverOptions);
}

/** Stops the brick's graph (bounded: the server gives requests in flight 5 s). */
async function stopBrick(b: Brick): Promise<void> {
  await within(b.graph.stop(10_000), 15_000);
  expect(b.graph.state).toBe('dead');
}

/** A new brick graph (a new server) on the same port and directory. */
async function restartBrick(b: Brick): Promise<Brick> {
  await stopBrick(b);
  return startBrick(b.dir, b.port, b.serverOptions);
}

interface ServerDump {
  clients: { name?: string; user?: string; fds: number; inFlight: number }[];
  draining: boolean;
  inFlight: number;
  notTaken: number;
}
const serverDump = (b: Brick) => b.graph.xlators.get('brick-server')!.dump() as unknown as ServerDump;

/** The brick is shutting down and waiting for `n` request(s) in flight (its graph not down yet). */
async function drainingWith(b: Brick, n: number): Promise<void> {
  await until(() => serverDump(b).draining && serverDump(b).inFlight === n, 5000, `the brick to drain with ${n} request(s) in flight`);
  expect(b.graph.state).toBe('stopping');
}
const opens = (b: Brick, op = 'open') => b.gate.calls.get(op) ?? 0;

interface Client {
  readonly graph: Graph;
  readonly bridge: Bridge;
  readonly logs: string[];
  /** Every status the client graph's top reported, from 'unknown' on. */
  readonly statuses: TopStatus[];
  readonly started: TopStatus;
  dump(): { connected: boolean; epoch: number; waiting: number; failedAttempts: number; lastBackoffMs?: number };
}

interface ClientOptions {
  readonly ping?: number;
  readonly frame?: number;
  readonly subvolume?: string;
  /** protocol/client options replacing the test login. */
  readonly login?: string;
  /** Retry every 10 ms while the brick is away. */
  readonly fastReconnect?: boolean;
}

async function startClient(port: number, o: ClientOptions = {}): Promise<Client> {
  const logs: string[] = [];
  const graph = build(
    `volume remote
    type protocol/client
    option remote-host 127.0.0.1
    option remote-port ${port}
    option remote-subvolume ${o.subvolume ?? 'gate'}
${o.login ?? clientLogin()}    option ping-timeout ${o.ping ?? 2}
    option frame-timeout ${o.frame ?? 10}
end-volume
`,
    logs,
    o.fastReconnect ? fastReconnect() : undefined,
  );
  clientGraphs.push(graph);
  const statuses: TopStatus[] = [];
  graph.status$.subscribe((s) => statuses.push(s));
  const started = await within(graph.start(3000));
  const bridge = new Bridge(graph, Logger.create('error', (l) => logs.push(l)));
  const dump = () => graph.xlators.get('remote')!.dump() as unknown as ReturnType<Client['dump']>;
  return { graph, bridge, logs, statuses, started, dump };
}

async function connectClient(port: number, o: ClientOptions = {}): Promise<Client> {
  const c = await startClient(port, o);
  expect(c.started).toBe('up');
  return c;
}

const inBrick = (b: Brick, p: string) => path.join(b.dir, p);
const content = (b: Brick, p: string) => fs.readFileSync(inBrick(b, p), 'utf8');

const put = (c: { readonly bridge: Bridge }, p: string, data: string) => writeFile(c.bridge, p, data);

// --- raw protocol peers -----------------------------------------------------------------------

/** A hand-driven connection to a server: frames as the test writes them. */
class Raw {
  private readonly reader = new FrameReader();
  private readonly queue: WireFrame[] = [];
  private wake?: () => void;
  private id = 1;
  isClosed = false;
  readonly closed: Promise<void>;
  private challenged!: (nonce: string) => void;
  /** The nonce of the server's challenge, the first frame it sends. */
  readonly challenge = new Promise<string>((r) => (this.challenged = r));

  private constructor(readonly socket: net.Socket) {
    this.closed = new Promise((r) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake?.();
        r();
      }),
    );
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      try {
        for (const f of this.reader.push(d)) {
          if (f.kind === Kind.CHALLENGE) this.challenged((f.body as Challenge).nonce);
          else this.queue.push(f);
        }
      } catch {
        socket.destroy();
      }
      this.wake?.();
    });
  }

  static async connect(port: number): Promise<Raw> {
    const s = net.connect({ host: '127.0.0.1', port });
    cleanups.push(() => s.destroy());
    await within(new Promise<void>((res, rej) => (s.once('connect', res), s.once('error', rej))), 5000);
    return new Raw(s);
  }

  send(kind: Kind, body: unknown): number {
    const id = this.id++;
    this.socket.write(encodeFrame(kind, id, body));
    return id;
  }

  /** The next frame from the server, or 'closed' when the connection ended first. */
  async next(ms = 3000): Promise<WireFrame | 'closed'> {
    const end = Date.now() + ms;
    while (this.queue.length === 0) {
      if (this.isClosed) return 'closed';
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no frame from the server within ${ms} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => (clearTimeout(t), r());
      });
    }
    return this.queue.shift()!;
  }

  async call(kind: Kind, body: unknown): Promise<WireFrame> {
    const id = this.send(kind, body);
    const f = await this.next();
    if (f === 'closed') throw new Error('the server closed the connection instead of answering');
    expect(f.id).toBe(id);
    return f;
  }

  /** A HELLO answering this connection's challenge with the test login (`user`: null for none). */
  async hello(volume = 'gate', version = VERSION, user: string | null = TEST_USER, password = TEST_PASSWORD): Promise<Welcome> {
    const nonce = await within(this.challenge, 3000);
    const answer = user === null ? undefined : login(await loginKey(user, password), user, volume, nonce).login;
    const f = await this.call(Kind.HELLO, { version, volume, client: 'raw-test', login: answer });
    expect(f.kind).toBe(Kind.WELCOME);
    return f.body as Welcome;
  }

  async request(op: string, args: unknown[]): Promise<Reply> {
    const f = await this.call(Kind.REQUEST, { op, caller: CALLER, args });
    expect(f.kind).toBe(Kind.REPLY);
    return f.body as Reply;
  }

  /** The connection ends (bounded). */
  async ends(ms = 3000): Promise<void> {
    await within(this.closed, ms);
  }
}

/** A server that challenges, welcomes any HELLO (it checks no login) and then ignores everything (pings included). */
async function deafServer(): Promise<{ port: number; hellos: () => number; requests: () => number }> {
  let hellos = 0;
  let requests = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.write(encodeFrame(Kind.CHALLENGE, 0, { nonce: 'n'.repeat(32) }));
    const reader = new FrameReader();
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.on('data', (d: Buffer) => {
      for (const f of reader.push(d)) {
        if (f.kind === Kind.HELLO) {
          hellos++;
          s.write(encodeFrame(Kind.WELCOME, f.id, { ok: true }));
        } else if (f.kind === Kind.REQUEST) requests++;
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, hellos: () => hellos, requests: () => requests };
}

afterEach(async () => {
  // Held requests would make a brick's shutdown wait for them.
  for (const g of gates.splice(0)) for (const h of g.holds) h.release();
  for (const g of clientGraphs.splice(0)) await within(g.stop(5000), 10_000).catch(() => undefined);
  for (const g of brickGraphs.splice(0)) await within(g.stop(10_000), 15_000).catch(() => undefined);
  for (const c of cleanups.splice(0)) c();
  await cleanupGraphs();
}, 60_000);

// --- fops through the wire ---------------------------------------------------------------------

describe('protocol: fops through the wire equal what storage has', () => {
  test('mkdir, create, write, read, getattr, readdir, rename, unlink, rmdir', async () => {
    const b = await newBrick();
    const { bridge } = await connectClient(b.port);

    await bridge.mkdir('/d', 0o750);
    const dst = fs.statSync(inBrick(b, 'd'));
    expect(dst.isDirectory()).toBe(true);
    expect(dst.mode & 0o7777).toBe(0o750);

    const fh = await bridge.create('/d/f', 0o640, O_RDWR);
    expect(fs.existsSync(inBrick(b, 'd/f'))).toBe(true);
    expect(await bridge.write('/d/f', fh, Buffer.from('hello world'), 0)).toBe(11);
    expect(content(b, 'd/f')).toBe('hello world');
    expect((await bridge.read('/d/f', fh, 100, 6)).toString()).toBe('world');
    expect((await bridge.read('/d/f', fh, 100, 11)).length).toBe(0);
    // Binary data travels raw, every byte value intact.
    const bin = Buffer.from(Array.from({ length: 512 }, (_, i) => i % 256));
    expect(await bridge.write('/d/f', fh, bin, 11)).toBe(512);
    expect(Buffer.compare(fs.readFileSync(inBrick(b, 'd/f')).subarray(11), bin)).toBe(0);
    expect(Buffer.compare(await bridge.read('/d/f', fh, 512, 11), bin)).toBe(0);

    const a = await bridge.getattr('/d/f');
    const s = fs.statSync(inBrick(b, 'd/f'));
    expect(a.size).toBe(s.size);
    expect(a.ino).toBe(s.ino);
    expect(a.mode).toBe(s.mode);
    expect(a.mode & 0o7777).toBe(0o640);
    expect(a.nlink).toBe(1);
    await bridge.release('/d/f', fh);

    await put({ bridge }, '/d/g', 'second');
    const names = (await bridge.readdir('/d')).map((e) => e.name).sort();
    expect(names).toEqual(['.', '..', 'f', 'g']);
    expect(fs.readdirSync(inBrick(b, 'd')).sort()).toEqual(['f', 'g']);
    // The root listing hides the brick's own metadata folder.
    expect((await bridge.readdir('/')).map((e) => e.name).sort()).toEqual(['.', '..', 'd']);

    await bridge.rename('/d/f', '/d/renamed');
    expect(fs.existsSync(inBrick(b, 'd/f'))).toBe(false);
    expect(content(b, 'd/renamed').startsWith('hello world')).toBe(true);
    expect((await bridge.getattr('/d/renamed')).ino).toBe(s.ino);
    expect(await errCode(bridge.getattr('/d/f'))).toBe('ENOENT');

    await bridge.unlink('/d/g');
    expect(fs.existsSync(inBrick(b, 'd/g'))).toBe(false);
    expect(await errCode(bridge.rmdir('/d'))).toBe('ENOTEMPTY');
    await bridge.unlink('/d/renamed');
    await bridge.rmdir('/d');
    expect(fs.existsSync(inBrick(b, 'd'))).toBe(false);
  });

  test('symlink, readlink, link, xattrs, truncate, ftruncate, setattr, statfs, access, fsync', async () => {
    const b = await newBrick();
    const c = await connectClient(b.port);
    const { bridge } = c;
    await put(c, '/f', '0123456789');

    await bridge.symlink('f', '/s');
    expect(fs.readlinkSync(inBrick(b, 's'))).toBe('f');
    expect(await bridge.readlink('/s')).toBe('f');
    expect(fs.lstatSync(inBrick(b, 's')).isSymbolicLink()).toBe(true);

    await bridge.link('/f', '/h');
    expect(fs.statSync(inBrick(b, 'h')).ino).toBe(fs.statSync(inBrick(b, 'f')).ino);
    expect((await bridge.getattr('/h')).nlink).toBe(2);
    expect((await bridge.getattr('/f')).nlink).toBe(2);

    await bridge.setxattr('/f', 'user.color', Buffer.from('blue\0raw'), 0);
    expect(sys.getxattr(inBrick(b, 'f'), 'user.color').toString('latin1')).toBe('blue\0raw');
    expect((await bridge.getxattr('/f', 'user.color')).toString('latin1')).toBe('blue\0raw');
    expect(await bridge.listxattr('/f')).toContain('user.color');
    expect(await errCode(bridge.getxattr('/f', 'user.none'))).toBe('ENODATA');
    await bridge.removexattr('/f', 'user.color');
    expect(sys.listxattr(inBrick(b, 'f'))).not.toContain('user.color');
    expect(await bridge.listxattr('/f')).not.toContain('user.color');

    await bridge.truncate('/f', 4);
    expect(content(b, 'f')).toBe('0123');
    const fh = await bridge.open('/f', O_RDWR);
    await bridge.ftruncate('/f', fh, 2);
    expect(content(b, 'f')).toBe('01');
    await bridge.flush('/f', fh);
    await bridge.fsync('/f', fh, false);
    await bridge.release('/f', fh);

    await bridge.chmod('/f', 0o604);
    expect(fs.statSync(inBrick(b, 'f')).mode & 0o7777).toBe(0o604);
    await bridge.chown('/f', 1234, 5678);
    expect(fs.statSync(inBrick(b, 'f')).uid).toBe(1234);
    expect(fs.statSync(inBrick(b, 'f')).gid).toBe(5678);
    await bridge.utimens('/f', { sec: 1_000_000, nsec: 5 }, { sec: 2_000_000, nsec: 7 });
    const st = fs.statSync(inBrick(b, 'f'), { bigint: true });
    expect(st.mtimeNs).toBe(2_000_000n * 1_000_000_000n + 7n);
    expect(st.atimeNs).toBe(1_000_000n * 1_000_000_000n + 5n);
    const a = await bridge.getattr('/f');
    expect(a.mtime).toEqual({ sec: 2_000_000, nsec: 7 });
    expect(a.uid).toBe(1234);

    const sf = await bridge.statfs('/');
    expect(sf.bsize).toBe(fs.statfsSync(b.dir).bsize);
    await bridge.access('/f', fs.constants.R_OK);
    expect(await errCode(bridge.access('/f', fs.constants.X_OK))).toBe('EACCES');

    const dh = await bridge.opendir('/');
    await bridge.fsyncdir('/', dh, false);
    await bridge.releasedir('/', dh);
  });

  test('errors on the brick arrive with their errno', async () => {
    const b = await newBrick();
    const c = await connectClient(b.port);
    await c.bridge.mkdir('/d', 0o755);
    expect(await errCode(c.bridge.mkdir('/d', 0o755))).toBe('EEXIST');
    expect(await errCode(c.bridge.getattr('/missing'))).toBe('ENOENT');
    expect(await errCode(c.bridge.open('/missing', O_RDONLY))).toBe('ENOENT');
    expect(await errCode(c.bridge.readlink('/d'))).toBe('EINVAL');
    expect(await errCode(c.bridge.rmdir('/missing'))).toBe('ENOENT');
    // The connection is still fine after errors.
    expect(c.dump().epoch).toBe(1);
  });
});

// --- handshake -----------------------------------------------------------------------------------

describe('protocol: handshake', () => {
  test('a client asking for a volume the server does not serve is refused; a good one comes up', async () => {
    const b = await newBrick();
    const bad = await startClient(b.port, { subvolume: 'brick-posix', frame: 0.3 });
    expect(['down', 'unknown']).toContain(bad.started);
    expect(bad.logs.join('\n')).toMatch(/refused this client: no volume 'brick-posix' here/);
    expect(b.logs.join('\n')).toMatch(/refused .*no volume 'brick-posix'/);
    // Its fops never reach the brick.
    const r = await outcome(bad.bridge.getattr('/'));
    expect(r.code).toBe('ENOTCONN');
    expect(b.gate.calls.size).toBe(0);

    const good = await connectClient(b.port);
    expect((await good.bridge.getattr('/')).gfid).toBe(ROOT_GFID);
    expect(serverDump(b).clients.some((cl) => cl.name !== undefined)).toBe(true);
  });

  test('auth.allow keeps out peers it does not list', async () => {
    const b = await newBrick('    option auth.allow 10.9.8.*\n');
    const c = await startClient(b.port, { frame: 0.3 });
    expect(['down', 'unknown']).toContain(c.started);
    expect(c.logs.join('\n')).toMatch(/refused this client: 127\.0\.0\.1 is not in auth\.allow/);
    expect(b.gate.calls.size).toBe(0);
  });

  test('a HELLO of another protocol version is refused with a reason, then the connection ends', async () => {
    const b = await newBrick();
    const raw = await Raw.connect(b.port);
    const w = await raw.hello('gate', 99);
    expect(w.ok).toBe(false);
    expect(!w.ok && w.reason).toMatch(/version 99/);
    await raw.ends();
  });

  test('a frame of another wire version ends the connection unanswered', async () => {
    const b = await newBrick();
    const raw = await Raw.connect(b.port);
    const frame = encodeFrame(Kind.HELLO, 1, { version: VERSION, volume: 'gate', client: 'x' });
    frame.writeUInt8(VERSION + 1, 4);
    raw.socket.write(frame);
    expect(await raw.next()).toBe('closed');
  });

  test('a request before the handshake ends the connection and reaches nothing', async () => {
    const b = await newBrick();
    const raw = await Raw.connect(b.port);
    raw.send(Kind.REQUEST, { op: 'lookup', caller: CALLER, args: [{ path: '/', gfid: ROOT_GFID }] });
    expect(await raw.next()).toBe('closed');
    expect(b.gate.calls.size).toBe(0);
  });

  test('a second HELLO on a welcomed connection is refused', async () => {
    const b = await newBrick();
    const raw = await Raw.connect(b.port);
    expect((await raw.hello()).ok).toBe(true);
    const again = await raw.hello();
    expect(again.ok).toBe(false);
    await raw.ends();
  });

  test('malformed requests are answered EINVAL and never reach the graph; pings are answered', async () => {
    const b = await newBrick();
    const raw = await Raw.connect(b.port);
    expect((await raw.hello()).ok).toBe(true);
    expect((await raw.call(Kind.PING, null)).kind).toBe(Kind.PONG);
    const bad: [string, unknown[]][] = [
      ['lookup', [{ path: '/x', parent: '../../etc', name: 'passwd' }]],
      ['lookup', [{ path: '/x', gfid: 42 }]],
      ['nosuchop', []],
      ['__proto__', []],
      ['read', [1, 10]],
      ['write', [1, 'not a buffer', 0]],
      ['setattr', [{ path: '/', gfid: ROOT_GFID }, { mode: 'x' }]],
      ['open', [{ path: '/' }, { flags: 0 }]],
    ];
    for (const [op, args] of bad) {
      const r = await raw.request(op, args);
      expect({ op, ok: r.ok, errno: !r.ok && r.errno }).toEqual({ op, ok: false, errno: 'EINVAL' });
    }
    expect(b.gate.calls.size).toBe(0);
    // A well-formed request on the same connection still works.
    const ok = await raw.request('lookup', [{ path: '/', gfid: ROOT_GFID }]);
    expect(ok.ok).toBe(true);
  });

  test("a client's fd numbers are its own: another connection cannot use them", async () => {
    const b = await newBrick();
    const a = await Raw.connect(b.port);
    const other = await Raw.connect(b.port);
    expect((await a.hello()).ok).toBe(true);
    expect((await other.hello()).ok).toBe(true);
    const opened = await a.request('opendir', [{ path: '/', gfid: ROOT_GFID }, { flags: O_RDONLY }]);
    expect(opened.ok).toBe(true);
    const n = opened.ok ? opened.fd : undefined;
    expect(typeof n).toBe('number');
    const theirs = await other.request('readdir', [n, 4096, 0]);
    expect(theirs.ok ? 'OK' : theirs.errno).toBe('EBADF');
    expect((await a.request('readdir', [n, 4096, 0])).ok).toBe(true);
    // The other client releasing that number does not close it either.
    expect((await other.request('release', [n])).ok).toBe(true);
    expect((await a.request('readdir', [n, 4096, 0])).ok).toBe(true);
    expect(b.graph.fds.size).toBe(1);
  });
});

// --- reconnect and lazy reopen ---------------------------------------------------------------------

describe('protocol: reconnect and lazy reopen', () => {
  test('a handle opened before a brick restart works after it: reopened once, without O_TRUNC again', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port);
    await put(c, '/f', 'old content that O_TRUNC removes');
    const fh = await c.bridge.open('/f', O_RDWR | O_TRUNC);
    expect(content(b, 'f')).toBe('');
    expect(await c.bridge.write('/f', fh, Buffer.from('abc'), 0)).toBe(3);

    b = await restartBrick(b);
    expect(opens(b)).toBe(0);
    expect((await within(c.bridge.read('/f', fh, 100, 0))).toString()).toBe('abc');
    expect(opens(b)).toBe(1);
    expect(content(b, 'f')).toBe('abc');
    expect(b.graph.fds.size).toBe(1);
    // Later fops use the reopened fd: no further opens.
    expect(await c.bridge.write('/f', fh, Buffer.from('de'), 3)).toBe(2);
    expect((await c.bridge.read('/f', fh, 100, 0)).toString()).toBe('abcde');
    expect(opens(b)).toBe(1);
    // Path-based fops find their way on the new server too.
    expect((await c.bridge.getattr('/f')).size).toBe(5);
    await c.bridge.release('/f', fh);
    await until(() => b.graph.fds.size === 0, 3000, 'the brick to release the reopened fd');
  });

  test('a file unlinked while open stays readable while the brick lives; after a restart it is reclaimed and its handle fails with ESTALE', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port, { frame: 3 });
    await put(c, '/gone', 'nameless data');
    const fh = await c.bridge.open('/gone', O_RDONLY);
    await c.bridge.unlink('/gone');
    expect((await c.bridge.read('/gone', fh, 100, 0)).toString()).toBe('nameless data');
    expect(fs.readdirSync(path.join(b.dir, '.xlstack', 'unlinked'))).toHaveLength(1);

    b = await restartBrick(b);
    expect(fs.readdirSync(path.join(b.dir, '.xlstack', 'unlinked'))).toEqual([]);
    const r = await outcome(c.bridge.read('/gone', fh, 100, 0));
    expect(r.code).toBe('ESTALE');
    expect(r.elapsed).toBeLessThan(3000);
    await c.bridge.release('/gone', fh);
    expect(b.graph.fds.size).toBe(0);
  });

  test('many reads on a handle right after a restart: one reopen, every read right', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port, { frame: 10 });
    const data = Array.from({ length: 40 }, (_, i) => String(i).padStart(10, '-')).join('');
    await put(c, '/f', data);
    const fh = await c.bridge.open('/f', O_RDONLY);
    expect((await c.bridge.read('/f', fh, 10, 0)).toString()).toBe(data.slice(0, 10));

    await stopBrick(b);
    await status(c.graph, 'down');
    // Half of the reads wait for the connection, half come right after the brick is back.
    const read = (i: number) => c.bridge.read('/f', fh, 10, i * 10).then((buf) => buf.toString());
    const early = Array.from({ length: 20 }, (_, i) => read(i));
    b = await startBrick(b.dir, b.port);
    const late = Array.from({ length: 20 }, (_, i) => read(20 + i));
    const got = await within(Promise.all([...early, ...late]), 15_000);
    expect(got).toEqual(Array.from({ length: 40 }, (_, i) => data.slice(i * 10, i * 10 + 10)));
    expect(opens(b)).toBe(1);
    expect(b.gate.calls.get('read')).toBe(40);
    expect(b.graph.fds.size).toBe(1);
    await c.bridge.release('/f', fh);
  });

  test('a directory handle is reopened with opendir', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port);
    await c.bridge.mkdir('/d', 0o755);
    const dh = await c.bridge.opendir('/d');
    b = await restartBrick(b);
    await within(c.bridge.fsyncdir('/d', dh, false));
    expect(opens(b, 'opendir')).toBe(1);
    expect(opens(b, 'open')).toBe(0);
    expect(b.graph.fds.size).toBe(1);
    expect([...b.graph.fds][0].isDir).toBe(true);
    await c.bridge.releasedir('/d', dh);
    await until(() => b.graph.fds.size === 0, 3000, 'the brick to release the directory fd');
  });

  test('a handle closed after a restart without being used is not reopened just to be released', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port);
    await put(c, '/f', 'x');
    const fh = await c.bridge.open('/f', O_RDONLY);
    b = await restartBrick(b);
    await status(c.graph, 'up');
    await c.bridge.release('/f', fh);
    expect(opens(b)).toBe(0);
    expect(b.graph.fds.size).toBe(0);
  });
});

// --- resend --------------------------------------------------------------------------------------------

describe('protocol: fops in flight when the connection breaks', () => {
  // Stopping a brick with a request held at its gate waits the server's 5 s drain limit, then
  // closes every connection with the request unanswered: as if the brick had died.

  test('a read in flight is sent again on the next connection and gets the right data', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port, { frame: 20 });
    await put(c, '/f', 'resend me please');
    const fh = await c.bridge.open('/f', O_RDONLY);
    const held = b.gate.hold('read', 'before');
    const read = c.bridge.read('/f', fh, 6, 7);
    await within(held.reached, 5000);
    const old = b;
    b = await restartBrick(b);
    held.release(); // the old brick is gone: its answer can never arrive
    expect((await within(read, 15_000)).toString()).toBe('me ple');
    expect(b.gate.calls.get('read')).toBe(1);
    expect(opens(b)).toBe(1);
    expect(old.gate.calls.get('read')).toBe(1);
    await c.bridge.release('/f', fh);
  }, 40_000);

  test('a write at an explicit offset in flight is sent again and lands once, in place', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port, { frame: 20 });
    await put(c, '/f', 'aaaaaaaaaa');
    const fh = await c.bridge.open('/f', O_WRONLY);
    const held = b.gate.hold('write', 'before');
    const write = c.bridge.write('/f', fh, Buffer.from('XYZ'), 4);
    await within(held.reached, 5000);
    b = await restartBrick(b);
    held.release();
    expect(await within(write, 15_000)).toBe(3);
    expect(content(b, 'f')).toBe('aaaaXYZaaa');
    expect(b.gate.calls.get('write')).toBe(1);
    await c.bridge.release('/f', fh);
  }, 40_000);

  test('unsafe fops in flight (mkdir, create, a write on an O_APPEND fd) are sent again and carried out once (replay.ts)', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port, { frame: 20 });
    await put(c, '/log', 'start;');
    const ah = await c.bridge.open('/log', O_WRONLY | O_APPEND);
    // mkdir and the append are done on storage, their answers never come; create never gets there.
    const mk = b.gate.hold('mkdir', 'after');
    const cr = b.gate.hold('create', 'before');
    const ap = b.gate.hold('write', 'after');
    const mkdir = outcome(c.bridge.mkdir('/d', 0o755));
    const create = outcome(c.bridge.create('/new', 0o644, O_RDWR));
    const append = outcome(c.bridge.write('/log', ah, Buffer.from('once;'), 0));
    await within(Promise.all([mk.reached, cr.reached, ap.reached]), 5000);
    expect(fs.existsSync(inBrick(b, 'd'))).toBe(true);
    expect(content(b, 'log')).toBe('start;once;');
    const old = b;
    // The old brick's held fops stay held: it is gone, its storage is not touched again.
    b = await restartBrick(b);

    for (const [what, r] of [
      ['mkdir', await mkdir],
      ['create', await create],
      ['append', await append],
    ] as const) {
      expect({ what, code: r.code }).toEqual({ what, code: 'OK' });
    }
    // What was done is recognised, not done again; what was not (create) is done once.
    expect(b.gate.calls.get('mkdir')).toBeUndefined();
    expect(b.gate.calls.get('create')).toBe(1);
    expect(b.gate.calls.get('write')).toBeUndefined();
    expect(content(b, 'log')).toBe('start;once;');
    expect(fs.existsSync(inBrick(b, 'new'))).toBe(true);
    expect(old.gate.calls.get('mkdir')).toBe(1);
    await c.bridge.release('/log', ah);
  }, 40_000);

  test('xattrop in flight fails with ENOTCONN and is not sent twice (an add twice is not the same add)', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port, { frame: 20 });
    await put(c, '/f', 'x');
    const remote = c.graph.xlators.get('remote')!;
    const inode = await within(c.graph.top.lookup(c.graph.frame('t'), { path: '/f', parent: c.graph.itable.root, name: 'f' }));
    const held = b.gate.hold('xattrop', 'after');
    const add = outcome(remote.xattrop(c.graph.frame('t'), { path: '/f', gfid: inode.gfid }, 'add', { 'trusted.xlstack.test': Buffer.alloc(8, 0) }));
    await within(held.reached, 5000);
    b = await restartBrick(b);
    const r = await add;
    expect(r.code).toBe('ENOTCONN');
    expect(r.message).toMatch(/connection .* broke before the answer; not safe to send again/);
    expect(b.gate.calls.get('xattrop')).toBeUndefined();
  }, 40_000);
});

// --- frame-timeout ------------------------------------------------------------------------------------

describe('protocol: frame-timeout', () => {
  test('with the brick gone, fops fail with ENOTCONN after about frame-timeout', async () => {
    const b = await newBrick();
    const c = await connectClient(b.port, { frame: 0.3 });
    await put(c, '/f', 'data');
    const fh = await c.bridge.open('/f', O_RDONLY);
    await stopBrick(b);
    await status(c.graph, 'down');
    const fops: [string, () => Promise<unknown>][] = [
      ['read', () => c.bridge.read('/f', fh, 4, 0)],
      ['getattr', () => c.bridge.getattr('/f')],
      ['mkdir', () => c.bridge.mkdir('/d', 0o755)],
    ];
    for (const [what, fop] of fops) {
      const r = await outcome(fop(), 10_000);
      expect({ what, code: r.code }).toEqual({ what, code: 'ENOTCONN' });
      expect(r.message).toMatch(/not connected|frame-timeout/);
      expect(r.elapsed).toBeGreaterThanOrEqual(200);
      expect(r.elapsed).toBeLessThan(5000);
    }
  });

  test('a fop that waits for the connection and then for a reopen still fails within frame-timeout', async () => {
    const b = await newBrick();
    const c = await connectClient(b.port, { frame: 2, fastReconnect: true });
    await put(c, '/f', 'x');
    const fh = await c.bridge.open('/f', O_RDONLY);
    await stopBrick(b);
    await status(c.graph, 'down');
    const read = outcome(c.bridge.read('/f', fh, 1, 0), 10_000);
    // The read waits for the connection first...
    await until(() => c.dump().waiting === 1, 3000, 'the read to wait for a connection');
    // ...the brick comes back well within frame-timeout, but never answers the reopen.
    const back = await startBrick(b.dir, b.port, '', '    option hold open:before\n');
    await until(() => back.gate.holds.length === 1, 3000, 'the reopen to reach the brick');
    const r = await read;
    expect(back.gate.calls.get('open')).toBe(1);
    expect(r.code).toBe('ENOTCONN');
    expect(r.elapsed).toBeLessThan(2300);
  });

  test('a reply that comes after frame-timeout is dropped: the connection and other fops live on', async () => {
    const b = await newBrick();
    const c = await connectClient(b.port, { frame: 0.5 });
    await put(c, '/f', 'late');
    const fh = await c.bridge.open('/f', O_RDONLY);
    const held = b.gate.hold('read', 'after');
    const r = await outcome(c.bridge.read('/f', fh, 4, 0), 10_000);
    expect(r.code).toBe('ENOTCONN');
    expect(r.message).toMatch(/no answer .* within frame-timeout/);
    expect(r.elapsed).toBeGreaterThanOrEqual(400);
    expect(r.elapsed).toBeLessThan(5000);
    expect(held.isHeld).toBe(true);
    // The late answer goes out now, before the server can even see the mkdir that follows.
    held.release();
    const mk = await outcome(c.bridge.mkdir('/d', 0o755));
    const closedBy = /connection [^:]+:\d+: (unexpected frame kind \d+)/.exec(c.logs.join('\n'))?.[1];
    expect({ mkdir: mk.code, mkdirMessage: mk.message, epoch: c.dump().epoch, statuses: c.statuses, closedBy }).toEqual({
      mkdir: 'OK',
      mkdirMessage: '',
      epoch: 1,
      statuses: ['unknown', 'up'],
      closedBy: undefined,
    });
    expect(fs.statSync(inBrick(b, 'd')).isDirectory()).toBe(true);
    await c.bridge.release('/f', fh);
  });

  test('fops waiting for the connection go through when the brick is back within frame-timeout', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port, { frame: 10 });
    await put(c, '/f', 'still here');
    const fh = await c.bridge.open('/f', O_RDONLY);
    await stopBrick(b);
    await status(c.graph, 'down');
    const read = c.bridge.read('/f', fh, 5, 6);
    // Never sent anywhere yet, so even an unsafe fop may go when the brick is back.
    const mkdir = c.bridge.mkdir('/d', 0o755);
    await until(() => c.dump().waiting === 2, 3000, 'both fops to wait for a connection');
    b = await startBrick(b.dir, b.port);
    expect((await within(read, 10_000)).toString()).toBe('here');
    await within(mkdir, 10_000);
    expect(fs.statSync(inBrick(b, 'd')).isDirectory()).toBe(true);
    expect(b.gate.calls.get('mkdir')).toBe(1);
    await c.bridge.release('/f', fh);
  });
});

// --- ping-timeout -----------------------------------------------------------------------------------------

describe('protocol: ping-timeout', () => {
  test('a server that stops answering is declared dead after ping-timeout; fops fail after frame-timeout', async () => {
    const deaf = await deafServer();
    const c = await connectClient(deaf.port, { ping: 0.3, frame: 1, login: '' });
    const upAt = Date.now();
    await status(c.graph, 'down', 5000);
    const downAfter = Date.now() - upAt;
    expect(downAfter).toBeGreaterThanOrEqual(200);
    expect(downAfter).toBeLessThan(5000);
    const log = c.logs.join('\n');
    expect(log).toMatch(/no answer to pings for 0\.3 s/);
    expect(log).toMatch(/is unreachable; reconnecting/);
    // It reconnects (the deaf server still shakes hands).
    await status(c.graph, 'up', 5000);
    expect(deaf.hellos()).toBeGreaterThanOrEqual(2);

    const r = await outcome(c.bridge.getattr('/x'), 10_000);
    expect(r.code).toBe('ENOTCONN');
    expect(r.elapsed).toBeGreaterThanOrEqual(800);
    expect(r.elapsed).toBeLessThan(5000);
    expect(deaf.requests()).toBeGreaterThanOrEqual(1);
  });
});

// --- CHILD_DOWN / CHILD_UP ----------------------------------------------------------------------------------

describe('protocol: CHILD_DOWN and CHILD_UP', () => {
  test("the client graph's status follows the brick: down while it is away, up when it is back", async () => {
    const dir = tempDir('xlstack-proto-');
    const port = await freePort();
    // The client starts before the brick.
    const c = await startClient(port, { frame: 0.5 });
    expect(c.started).toBe('down');
    let b = await startBrick(dir, port);
    await status(c.graph, 'up');
    await stopBrick(b);
    await status(c.graph, 'down');
    expect(c.logs.join('\n')).toMatch(/is unreachable/);
    b = await startBrick(dir, port);
    await status(c.graph, 'up');
    expect(c.statuses).toEqual(['unknown', 'down', 'up', 'down', 'up']);
    expect(c.dump()).toMatchObject({ connected: true, epoch: 2 });
    await put(c, '/f', 'works');
    expect(content(b, 'f')).toBe('works');
  });
});

// --- the server frees what a client held ----------------------------------------------------------------------

describe("protocol: the server frees a client's state", () => {
  test('a client that says goodbye leaves no client and no fds on the brick', async () => {
    const b = await newBrick();
    const c = await connectClient(b.port);
    await put(c, '/f', 'x');
    await c.bridge.mkdir('/d', 0o755);
    await c.bridge.open('/f', O_RDONLY);
    await c.bridge.opendir('/d');
    expect(b.graph.fds.size).toBe(2);
    const before = serverDump(b).clients;
    expect(before).toHaveLength(1);
    expect(before[0].fds).toBe(2);
    expect(before[0].name).toMatch(new RegExp(`:${process.pid}$`));

    await within(c.graph.stop(5000));
    await until(() => serverDump(b).clients.length === 0, 3000, 'the server to forget the client');
    await until(() => b.graph.fds.size === 0, 3000, "the brick to release the client's fds");
    expect(b.logs.join('\n')).toMatch(/said goodbye/);
    expect(b.logs.join('\n')).toMatch(/left; released 2 fd\(s\)/);
  });

  // (With a grace period, the default, the brick keeps them for the client: protocol-grace.test.)
  test('a connection that just drops has its fds released (grace-timeout 0)', async () => {
    const b = await newBrick('    option grace-timeout 0\n');
    const raw = await Raw.connect(b.port);
    expect((await raw.hello()).ok).toBe(true);
    expect((await raw.request('opendir', [{ path: '/', gfid: ROOT_GFID }, { flags: O_RDONLY }])).ok).toBe(true);
    expect((await raw.request('opendir', [{ path: '/', gfid: ROOT_GFID }, { flags: O_RDONLY }])).ok).toBe(true);
    expect(b.graph.fds.size).toBe(2);
    raw.socket.destroy();
    await until(() => b.graph.fds.size === 0, 3000, "the brick to release the dropped connection's fds");
    expect(serverDump(b).clients).toHaveLength(0);
  });

  test("a protocol/client whose socket dies: the brick releases its fds (grace-timeout 0), the client reconnects and reopens on use", async () => {
    const b = await newBrick('    option grace-timeout 0\n');
    const c = await connectClient(b.port);
    await put(c, '/f', 'abc');
    const fh = await c.bridge.open('/f', O_RDONLY);
    expect(b.graph.fds.size).toBe(1);
    // The network fails under the client (no goodbye): its socket is reachable only inside it.
    const remote = c.graph.xlators.get('remote') as unknown as { conn: { current?: { socket: net.Socket } } };
    remote.conn.current!.socket.destroy();
    await status(c.graph, 'down');
    await until(() => b.graph.fds.size === 0, 3000, "the brick to release the dead connection's fds");
    await status(c.graph, 'up');
    expect((await within(c.bridge.read('/f', fh, 10, 0))).toString()).toBe('abc');
    expect(opens(b)).toBe(2);
    expect(b.graph.fds.size).toBe(1);
    await c.bridge.release('/f', fh);
    await until(() => b.graph.fds.size === 0, 3000, 'the brick to release the fd');
  });

  test('a connection that drops while its open is in flight leaves no fd behind', async () => {
    const b = await newBrick();
    const raw = await Raw.connect(b.port);
    expect((await raw.hello()).ok).toBe(true);
    const held = b.gate.hold('opendir', 'before');
    raw.send(Kind.REQUEST, { op: 'opendir', caller: CALLER, args: [{ path: '/', gfid: ROOT_GFID }, { flags: O_RDONLY }] });
    await within(held.reached, 5000);
    raw.socket.destroy();
    await until(() => serverDump(b).clients.length === 0, 3000, 'the server to notice the dropped connection');
    held.release();
    // The open completes for a client that is gone: its fd must go too.
    await until(() => b.graph.fds.size === 0, 3000, 'the brick to release the fd opened for a departed client');
  });

  test('a client that says goodbye while its open is in flight leaves no fd behind', async () => {
    const b = await newBrick();
    const c = await connectClient(b.port);
    await put(c, '/f', 'x');
    const held = b.gate.hold('open', 'before');
    const open = outcome(c.bridge.open('/f', O_RDONLY));
    await within(held.reached, 5000);
    await within(c.graph.stop(5000));
    expect((await open).code).toBe('ENOTCONN');
    await until(() => serverDump(b).clients.length === 0, 3000, 'the server to forget the client');
    held.release();
    await until(() => b.graph.fds.size === 0, 3000, 'the brick to release the fd opened for a departed client');
  });
});

// --- graceful brick shutdown -------------------------------------------------------------------------------------

describe('protocol: graceful brick shutdown', () => {
  test('a read in flight when the brick stops is answered; the stop completes', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port, { frame: 20 });
    await put(c, '/f', 'graceful');
    const fh = await c.bridge.open('/f', O_RDONLY);
    const held = b.gate.hold('read', 'before');
    const read = c.bridge.read('/f', fh, 4, 4);
    await within(held.reached, 5000);
    const t = Date.now();
    const stopping = b.graph.stop(10_000);
    await drainingWith(b, 1); // it waits for the request in flight
    held.release();
    await within(stopping, 5000);
    expect(Date.now() - t).toBeLessThan(4000); // not the 5 s drain limit: the request finished
    const old = b;
    b = await startBrick(b.dir, b.port);
    expect((await within(read, 15_000)).toString()).toBe('eful');
    // Answered by the brick that was stopping: not sent again.
    expect(old.gate.calls.get('read')).toBe(1);
    expect(b.gate.calls.get('read')).toBeUndefined();
    await c.bridge.release('/f', fh);
  }, 40_000);

  test('an unsafe fop in flight when the brick stops is answered too (not ENOTCONN)', async () => {
    const b = await newBrick();
    const c = await connectClient(b.port, { frame: 20 });
    const held = b.gate.hold('mkdir', 'before');
    const mkdir = outcome(c.bridge.mkdir('/d', 0o755));
    await within(held.reached, 5000);
    const stopping = b.graph.stop(10_000);
    await drainingWith(b, 1);
    held.release();
    await within(stopping, 5000);
    expect((await mkdir).code).toBe('OK');
    expect(fs.statSync(inBrick(b, 'd')).isDirectory()).toBe(true);
  }, 40_000);

  test('a request that arrives while the brick drains is sent again to its next incarnation', async () => {
    let b = await newBrick();
    const c = await connectClient(b.port, { frame: 20 });
    await put(c, '/f', '0123456789');
    const fh = await c.bridge.open('/f', O_RDONLY);
    const held = b.gate.hold('read', 'before');
    const first = c.bridge.read('/f', fh, 2, 0);
    await within(held.reached, 5000);
    const stopping = b.graph.stop(10_000);
    await drainingWith(b, 1);
    const second = c.bridge.read('/f', fh, 2, 8);
    await until(() => serverDump(b).notTaken === 1, 3000, 'the draining brick to leave the second read unanswered');
    held.release();
    await within(stopping, 5000);
    const old = b;
    b = await startBrick(b.dir, b.port);
    expect((await within(first, 15_000)).toString()).toBe('01');
    expect((await within(second, 15_000)).toString()).toBe('89');
    expect(old.gate.calls.get('read')).toBe(1);
    expect(b.gate.calls.get('read')).toBe(1);
    await c.bridge.release('/f', fh);
  }, 40_000);
});

// --- release -------------------------------------------------------------------------------------------------------

describe('protocol: release', () => {
  test('closing handles on the client releases their fds on the brick', async () => {
    const b = await newBrick();
    const c = await connectClient(b.port);
    await put(c, '/f', 'x');
    expect(b.graph.fds.size).toBe(0);
    const h1 = await c.bridge.open('/f', O_RDONLY);
    const h2 = await c.bridge.open('/f', O_RDWR);
    const h3 = await c.bridge.create('/g', 0o644, O_RDWR);
    const dh = await c.bridge.opendir('/');
    expect(b.graph.fds.size).toBe(4);
    expect(serverDump(b).clients[0].fds).toBe(4);
    await c.bridge.release('/f', h1);
    await until(() => b.graph.fds.size === 3, 3000, 'one fd released');
    await c.bridge.release('/f', h2);
    await c.bridge.release('/g', h3);
    await c.bridge.releasedir('/', dh);
    await until(() => b.graph.fds.size === 0, 3000, 'every fd released');
    expect(serverDump(b).clients[0].fds).toBe(0);
    // The directory listing (an fd of its own) leaves nothing open either.
    await c.bridge.readdir('/');
    await until(() => b.graph.fds.size === 0, 3000, "readdir's fd released");
  });
});

// --- limits ------------------------------------------------------------------------------------------------------------

describe('protocol: requests too large for one frame', () => {
  test('a write larger than a frame fails promptly instead of spinning (run in a child process)', async () => {
    // If the client spins, it starves its event loop: no in-process timer could end the test.
    const dist = path.resolve(__dirname, '../..');
    const dir = tempDir('xlstack-proto-');
    const port = await freePort();
    const script = `
      const fs = require('fs');
      const { buildGraph } = require(${JSON.stringify(path.join(dist, 'src/core/builder'))});
      const { Registry } = require(${JSON.stringify(path.join(dist, 'src/core/registry'))});
      const { Logger } = require(${JSON.stringify(path.join(dist, 'src/core/log'))});
      const { parseVolfile } = require(${JSON.stringify(path.join(dist, 'src/core/volfile'))});
      const { Bridge } = require(${JSON.stringify(path.join(dist, 'src/fuse/bridge'))});
      const log = Logger.create('error', () => {});
      const g = (text, id) => buildGraph(parseVolfile(text, 't.vol'), { id, registry: new Registry(), log });
      (async () => {
        const brick = g(${JSON.stringify(brickText(dir, port, ''))}, 1);
        if ((await brick.start(5000)) !== 'up') throw new Error('brick not up');
        const client = g(${JSON.stringify(`volume remote\n type protocol/client\n option remote-port ${port}\n option remote-subvolume gate\n${clientLogin()} option frame-timeout 3\nend-volume\n`)}, 2);
        if ((await client.start(5000)) !== 'up') throw new Error('client not up');
        const b = new Bridge(client, log);
        const fh = await b.create('/big', 0o644, fs.constants.O_RDWR);
        const t = Date.now();
        let code = 'OK';
        try { await b.write('/big', fh, Buffer.alloc(17 * 1024 * 1024, 1), 0); } catch (e) { code = e.code || e.message; }
        process.stdout.write('RESULT ' + code + ' ' + (Date.now() - t) + '\\n');
        process.exit(0);
      })().catch((e) => { process.stdout.write('SETUP ' + e.message + '\\n'); process.exit(2); });
    `;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    clearTimeout(killer);
    expect(out).not.toMatch(/SETUP/);
    expect({ signal: exit.signal, out }).toEqual({ signal: null, out: expect.stringMatching(/^RESULT \S+ \d+/m) });
    const ms = Number(/RESULT \S+ (\d+)/.exec(out)![1]);
    expect(ms).toBeLessThan(5000);
  }, 40_000);

  test('a setxattr value too large for a frame is refused without claiming the connection broke', async () => {
    const b = await newBrick();
    const c = await connectClient(b.port);
    await put(c, '/f', 'x');
    const r = await outcome(c.bridge.setxattr('/f', 'user.big', Buffer.alloc(17 * 1024 * 1024), 0));
    expect(r.code).not.toBe('OK');
    expect(r.message).not.toMatch(/connection .* broke/);
    expect(r.code).not.toBe('ENOTCONN');
    // The connection never broke.
    expect(c.dump()).toMatchObject({ connected: true, epoch: 1 });
    expect(b.gate.calls.get('setxattr')).toBeUndefined();
  });
});
