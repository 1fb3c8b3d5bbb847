// Fops not safe to carry out twice, in flight when the connection to their brick breaks:
// protocol/client sends them again with the same request id, and the brick answers them as
// it answered the first sending (its reply cache, on disk under .xlstack) or, when it died
// before remembering, as the state of the volume shows (the GFID the client chose is there,
// the name is gone...). A brick that "carries out a fop and dies before replying" is a
// debug/gate hold after the fop (its answer held) while the test breaks the connection or
// stops the brick; nothing waits for a timer to fire.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { buildGraph } from '../../src/core/builder';
import type { Graph } from '../../src/core/graph';
import { Logger } from '../../src/core/log';
import { Registry, TranslatorDef, defineTranslator } from '../../src/core/registry';
import { parseVolfile } from '../../src/core/volfile';
import { Bridge } from '../../src/fuse/bridge';
import { Backoff } from '../../src/rpc/backoff';
import { Gate, Hold } from '../../xlators/debug/gate';
import clientDef, { Client as ClientXlator } from '../../xlators/protocol/client';
import { ReplyCache } from '../../xlators/protocol/reply-cache';
import { sys } from '../../xlators/storage/posix/sys';
import { clientLogin, freePort, serverLogin } from '../helpers/brick';
import { errCode, tempDir, within, writeFile } from '../helpers/graphs';
import { waitFor as until } from '../helpers/mount';

const { O_RDWR, O_WRONLY, O_APPEND } = fs.constants;
const quiet = Logger.create('error');

// --- the reply cache alone --------------------------------------------------------------------

describe('reply cache', () => {
  const file = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'xlstack-rc-')), 'sub', 'v.log');

  test('what it remembers is on disk at once: a new cache on the same file (a restarted brick) has it', () => {
    const f = file();
    const a = ReplyCache.acquire(f, quiet);
    a.put('c1 r1', { ok: true, value: { gfid: 'x', size: 3 } });
    a.intend('c1 r2', { size: 10 });
    a.put('c1 r3', { ok: false, errno: 'ENOENT', message: 'gone' });
    // Not released: as after a SIGKILL, only what write(2) put in the file survives.
    const lines = fs.readFileSync(f, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(3);
    const b = new (ReplyCache as unknown as { new (f: string, l: Logger, c: number): ReplyCache })(f, quiet, 100);
    expect(b.get('c1 r1')).toEqual({ outcome: { ok: true, value: { gfid: 'x', size: 3 } } });
    expect(b.get('c1 r2')).toEqual({ intent: { size: 10 } });
    expect(b.get('c1 r3')?.outcome).toEqual({ ok: false, errno: 'ENOENT', message: 'gone' });
    expect(b.get('c2 r1')).toBeUndefined();
    a.release();
    b.release();
  });

  test('a torn last line (killed in the middle of a write) is skipped; the rest is read', () => {
    const f = file();
    const a = ReplyCache.acquire(f, quiet);
    a.put('k1', { ok: true });
    a.release();
    fs.appendFileSync(f, '{"k":"k2","o":{"ok":tr');
    const b = ReplyCache.acquire(f, quiet);
    expect(b.get('k1')?.outcome).toEqual({ ok: true });
    expect(b.get('k2')).toBeUndefined();
    // The log was rewritten without it: what comes next is readable.
    b.put('k3', { ok: true, value: 1 });
    b.release();
    const c = ReplyCache.acquire(f, quiet);
    expect([c.get('k1')?.outcome, c.get('k3')?.outcome]).toEqual([{ ok: true }, { ok: true, value: 1 }]);
    c.release();
  });

  test('bounded: past its capacity the oldest are forgotten, and the log is compacted to what is remembered', () => {
    const f = file();
    const a = ReplyCache.acquire(f, quiet, 10);
    for (let i = 0; i < 55; i++) a.put(`k${i}`, { ok: true, value: i });
    expect(a.size).toBe(10);
    expect(a.get('k44')).toBeUndefined();
    expect(a.get('k45')?.outcome).toEqual({ ok: true, value: 45 });
    expect(a.get('k54')?.outcome).toEqual({ ok: true, value: 54 });
    // Never more than twice the capacity in lines.
    expect(fs.readFileSync(f, 'utf8').trim().split('\n').length).toBeLessThanOrEqual(20);
    a.release();
    const b = ReplyCache.acquire(f, quiet, 10);
    expect(b.size).toBe(10);
    expect(b.get('k45')?.outcome).toEqual({ ok: true, value: 45 });
    expect(fs.readdirSync(path.dirname(f))).toEqual(['v.log']);
    b.release();
  });

  test('one cache per file in a process (a graph switch shares it); once released it keeps nothing more', () => {
    const f = file();
    const a = ReplyCache.acquire(f, quiet);
    const b = ReplyCache.acquire(f, quiet);
    expect(b).toBe(a);
    a.release();
    b.put('k', { ok: true });
    b.release();
    b.put('late', { ok: true });
    const c = ReplyCache.acquire(f, quiet);
    expect(c).not.toBe(a);
    expect(c.get('k')).toBeDefined();
    expect(c.get('late')).toBeUndefined();
    c.release();
  });

  test('without a file it remembers in memory', () => {
    const m = ReplyCache.acquire(undefined, quiet, 2);
    m.put('a', { ok: true });
    m.put('b', { ok: true });
    m.put('c', { ok: true });
    expect([m.get('a'), m.get('c')?.outcome]).toEqual([undefined, { ok: true }]);
    m.release();
  });
});

// --- through the wire ---------------------------------------------------------------------------

let nextId = 1;
const graphs: Graph[] = [];

const brickText = (dir: string, port: number, serverOptions: string) => `volume brick-posix
    type storage/posix
    option directory ${dir}
end-volume
volume gate
    type debug/gate
    subvolumes brick-posix
end-volume
volume brick-server
    type protocol/server
    option listen-port ${port}
${serverLogin('gate')}${serverOptions}    subvolumes gate
end-volume
`;

interface Brick {
  readonly dir: string;
  readonly port: number;
  readonly graph: Graph;
  readonly gate: Gate;
  readonly serverOptions: string;
}

async function startBrick(dir: string, port: number, serverOptions = ''): Promise<Brick> {
  const graph = buildGraph(parseVolfile(brickText(dir, port, serverOptions), 'replay-test.vol'), { id: nextId++, registry: new Registry(), log: quiet });
  graphs.push(graph);
  expect(await within(graph.start(5000))).toBe('up');
  return { dir, port, graph, gate: graph.xlators.get('gate') as Gate, serverOptions };
}

/** A new brick graph on the same port and directory (what a restarted brick process is). */
async function restartBrick(b: Brick, serverOptions = b.serverOptions): Promise<Brick> {
  await within(b.graph.stop(10_000), 15_000);
  return startBrick(b.dir, b.port, serverOptions);
}

interface RepliesDump {
  entries: number;
  running: number;
  waiting: number;
  replayed: number;
  recognised: number;
}
const replies = (b: Brick) => (b.graph.xlators.get('brick-server')!.dump() as { replies: RepliesDump }).replies;

interface Client {
  readonly graph: Graph;
  readonly bridge: Bridge;
  /** Breaks the connection under the client (no goodbye), as a dead brick or network does. */
  cut(): void;
}

async function startClient(port: number): Promise<Client> {
  const r = new Registry();
  const fast = { backoff: new Backoff({ initialMs: 10, maxMs: 10, jitter: 0 }) };
  r.register(defineTranslator({ ...clientDef, create: (init) => new ClientXlator(init, fast) }) as unknown as TranslatorDef);
  const text = `volume remote
    type protocol/client
    option remote-port ${port}
    option remote-subvolume gate
${clientLogin()}    option ping-timeout 2
    option frame-timeout 20
end-volume
`;
  const graph = buildGraph(parseVolfile(text, 'replay-client.vol'), { id: nextId++, registry: r, log: quiet });
  graphs.unshift(graph);
  expect(await within(graph.start(3000))).toBe('up');
  const remote = graph.xlators.get('remote') as unknown as { conn: { current?: { socket: net.Socket } } };
  return { graph, bridge: new Bridge(graph, quiet), cut: () => remote.conn.current!.socket.destroy() };
}

afterEach(async () => {
  for (const g of graphs.splice(0)) await within(g.stop(10_000), 15_000).catch(() => undefined);
});

const inBrick = (b: Brick, p: string) => path.join(b.dir, p);
const content = (b: Brick, p: string) => fs.readFileSync(inBrick(b, p), 'latin1');
const calls = (b: Brick, op: string) => b.gate.calls.get(op) ?? 0;

interface Case {
  readonly op: string;
  /** Makes what the fop needs (through the client). */
  readonly setup?: (c: Client) => Promise<void>;
  /** The fop, as the application calls it; resolves to what the test checks afterwards. */
  readonly run: (c: Client) => Promise<unknown>;
  /** Storage shows the fop was carried out once. */
  readonly check: (b: Brick, c: Client, result: unknown) => Promise<void> | void;
}

const appendCase = (): Case => {
  let fh = 0;
  return {
    op: 'write',
    setup: async (c) => {
      await writeFile(c.bridge, '/log', 'start;');
      fh = await c.bridge.open('/log', O_WRONLY | O_APPEND);
    },
    run: (c) => c.bridge.write('/log', fh, Buffer.from('once;'), 0),
    check: (b, _c, n) => {
      expect(n).toBe(5);
      expect(content(b, 'log')).toBe('start;once;');
    },
  };
};

const CASES: (() => Case)[] = [
  () => ({ op: 'mkdir', run: (c) => c.bridge.mkdir('/d', 0o750), check: (b) => expect(fs.statSync(inBrick(b, 'd')).mode & 0o777).toBe(0o750) }),
  () => ({
    op: 'create',
    run: (c) => c.bridge.create('/new', 0o640, O_RDWR),
    // The handle it returns works: its fd was opened on the brick the answer came from.
    check: async (b, c, fh) => {
      expect(await within(c.bridge.write('/new', fh as number, Buffer.from('hello'), 0))).toBe(5);
      expect(content(b, 'new')).toBe('hello');
      await c.bridge.release('/new', fh as number);
    },
  }),
  () => ({ op: 'mknod', run: (c) => c.bridge.mknod('/fifo', fs.constants.S_IFIFO | 0o600, 0), check: (b) => expect(fs.lstatSync(inBrick(b, 'fifo')).isFIFO()).toBe(true) }),
  () => ({ op: 'symlink', run: (c) => c.bridge.symlink('target', '/sl'), check: (b) => expect(fs.readlinkSync(inBrick(b, 'sl'))).toBe('target') }),
  () => ({
    op: 'link',
    setup: (c) => writeFile(c.bridge, '/f', 'data'),
    run: (c) => c.bridge.link('/f', '/h'),
    check: (b) => expect(fs.statSync(inBrick(b, 'h')).ino).toBe(fs.statSync(inBrick(b, 'f')).ino),
  }),
  () => ({
    op: 'rename',
    setup: (c) => writeFile(c.bridge, '/from', 'moving'),
    run: (c) => c.bridge.rename('/from', '/to'),
    check: (b) => {
      expect(fs.existsSync(inBrick(b, 'from'))).toBe(false);
      expect(content(b, 'to')).toBe('moving');
    },
  }),
  () => ({
    op: 'unlink',
    setup: (c) => writeFile(c.bridge, '/gone', 'x'),
    run: (c) => c.bridge.unlink('/gone'),
    check: (b) => expect(fs.existsSync(inBrick(b, 'gone'))).toBe(false),
  }),
  () => ({
    op: 'rmdir',
    setup: (c) => c.bridge.mkdir('/empty', 0o755),
    run: (c) => c.bridge.rmdir('/empty'),
    check: (b) => expect(fs.existsSync(inBrick(b, 'empty'))).toBe(false),
  }),
  appendCase,
  () => ({
    op: 'setxattr',
    setup: (c) => writeFile(c.bridge, '/x', ''),
    run: (c) => c.bridge.setxattr('/x', 'user.k', Buffer.from('v1'), 1 /* XATTR_CREATE */),
    check: (b) => expect(sys.getxattr(inBrick(b, 'x'), 'user.k').toString()).toBe('v1'),
  }),
  () => ({
    op: 'removexattr',
    setup: async (c) => {
      await writeFile(c.bridge, '/x', '');
      await c.bridge.setxattr('/x', 'user.k', Buffer.from('v1'), 0);
    },
    run: (c) => c.bridge.removexattr('/x', 'user.k'),
    check: (b) => expect(sys.listxattr(inBrick(b, 'x'))).not.toContain('user.k'),
  }),
];

/** Holds the fop after storage carried it out, on its way to the brick's reply. */
const holdAfter = (b: Brick, op: string): Hold => b.gate.hold(op as never, 'after');

describe('a fop carried out whose answer is lost with the connection is answered as it was, never carried out twice', () => {
  test.each(CASES.map((mk) => [mk().op, mk]))('%s: the brick lives, the connection breaks after the fop: answered from the reply cache', async (_op, mk) => {
    const k = mk();
    const b = await startBrick(tempDir('xlstack-replay-'), await freePort());
    const c = await startClient(b.port);
    await k.setup?.(c);
    const held = holdAfter(b, k.op);
    const before = calls(b, k.op);
    const result = k.run(c);
    await within(held.reached, 5000);
    c.cut();
    held.release();
    const value = await within(result, 15_000);
    // The gate saw it once: the second sending never reached storage.
    expect(calls(b, k.op)).toBe(before + 1);
    expect(replies(b).replayed).toBe(1);
    await k.check(b, c, value);
  }, 30_000);

  test.each(CASES.map((mk) => [mk().op, mk]))('%s: the brick dies after the fop, before remembering it: the new brick sees it done', async (_op, mk) => {
    const k = mk();
    const b1 = await startBrick(tempDir('xlstack-replay-'), await freePort());
    const c = await startClient(b1.port);
    await k.setup?.(c);
    const held = holdAfter(b1, k.op);
    const result = k.run(c);
    await within(held.reached, 5000);
    // Never released: the first brick's answer, and its memory of it, never come.
    const b2 = await restartBrick(b1);
    const value = await within(result, 15_000);
    expect(calls(b2, k.op)).toBe(0);
    expect(replies(b2).recognised).toBe(1);
    await k.check(b2, c, value);
  }, 40_000);
});

describe('a fop in flight when the connection breaks, not yet carried out', () => {
  test('the second sending waits for the first, still running on the brick: carried out once', async () => {
    const b = await startBrick(tempDir('xlstack-replay-'), await freePort());
    const c = await startClient(b.port);
    await writeFile(c.bridge, '/f', 'x');
    const held = b.gate.hold('unlink', 'before');
    const unlink = c.bridge.unlink('/f');
    await within(held.reached, 5000);
    c.cut();
    await until(() => replies(b).waiting === 1, 10_000, 'the second sending to wait for the first');
    held.release();
    await within(unlink, 10_000);
    expect(calls(b, 'unlink')).toBe(1);
    expect(fs.existsSync(inBrick(b, 'f'))).toBe(false);
  }, 30_000);

  test('a brick that died before carrying it out carries out the second sending', async () => {
    const dir = tempDir('xlstack-replay-');
    const b1 = await startBrick(dir, await freePort());
    const c = await startClient(b1.port);
    await writeFile(c.bridge, '/f', 'x');
    await c.bridge.mkdir('/d', 0o755);
    const held = [b1.gate.hold('unlink', 'before'), b1.gate.hold('mkdir', 'before')];
    const unlink = c.bridge.unlink('/f');
    const mkdir = c.bridge.mkdir('/d/sub', 0o700);
    await within(Promise.all(held.map((h) => h.reached)), 5000);
    // Never released (the first brick is gone: its storage must not be touched after it).
    const b2 = await restartBrick(b1);
    await within(Promise.all([unlink, mkdir]), 15_000);
    expect([calls(b2, 'unlink'), calls(b2, 'mkdir')]).toEqual([1, 1]);
    expect(replies(b2).recognised).toBe(0);
    expect(fs.existsSync(inBrick(b2, 'f'))).toBe(false);
    expect(fs.statSync(inBrick(b2, 'd/sub')).isDirectory()).toBe(true);
  }, 40_000);

  test('an error is an answer too: a resent unlink of a name that never existed gets ENOENT once, from the cache', async () => {
    const b = await startBrick(tempDir('xlstack-replay-'), await freePort());
    const c = await startClient(b.port);
    // The unlink fails on storage (another process removed the file first), its answer is lost.
    await writeFile(c.bridge, '/f', 'x');
    await c.bridge.getattr('/f');
    fs.unlinkSync(inBrick(b, 'f'));
    const held = holdAfter(b, 'unlink');
    const unlink = errCode(c.bridge.unlink('/f'));
    await within(held.reached, 5000);
    c.cut();
    held.release();
    expect(await within(unlink, 15_000)).toBe('ENOENT');
    expect(calls(b, 'unlink')).toBe(1);
    expect(replies(b).replayed).toBe(1);
  }, 30_000);
});

describe('what is not recognised as done is not mistaken for it', () => {
  test('a first sending of mkdir on an existing name is EEXIST: the rules are for sendings again only', async () => {
    const b = await startBrick(tempDir('xlstack-replay-'), await freePort());
    const c = await startClient(b.port);
    await c.bridge.mkdir('/d', 0o755);
    expect(await errCode(c.bridge.mkdir('/d', 0o755))).toBe('EEXIST');
    expect(replies(b).recognised).toBe(0);
    expect(replies(b).replayed).toBe(0);
  });
});

describe('where the replies are kept', () => {
  test("by default in the storage directory's .xlstack (hidden from clients); reply-cache-directory puts them elsewhere", async () => {
    const b = await startBrick(tempDir('xlstack-replay-'), await freePort());
    const c = await startClient(b.port);
    await c.bridge.mkdir('/d', 0o755);
    const log = path.join(b.dir, '.xlstack', 'replies', 'gate.log');
    expect(fs.readFileSync(log, 'utf8')).toMatch(/"o":\{"ok":true/);
    expect((await c.bridge.readdir('/')).map((e) => e.name)).not.toContain('.xlstack');
    const elsewhere = tempDir('xlstack-rc-');
    const b2 = await restartBrick(b, `    option reply-cache-directory ${elsewhere}\n`);
    await within(c.bridge.mkdir('/e', 0o755), 15_000);
    expect(fs.readFileSync(path.join(elsewhere, 'gate.log'), 'utf8').trim().split('\n')).toHaveLength(1);
    expect(replies(b2).entries).toBe(1);
  }, 30_000);
});
