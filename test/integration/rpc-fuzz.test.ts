// A fuzz test throws random and truncated frames at a brick; it keeps serving a legitimate
// client throughout.
//
// A real brick (`xlstack brick`) and a real client mount of it; a child process runs a
// checked workload on the mount (writes, renames, reads back, lists) while this process
// opens many raw connections to the brick and sends it garbage: random bytes, random frame
// contents, truncated frames, a frame announcing 4 GiB, wrong versions and kinds, wrong
// volumes, requests before the handshake, garbage requests after it, half frames that
// stall. The workload must see no error, the brick must still serve, and every connection
// the brick closed must have a logged reason.
//
// Seeded: the seed is printed; XLSTACK_FUZZ_SEED=<n> runs the same choices again
// (XLSTACK_FUZZ_MS=<ms> changes the duration, 5000 by default).
import { spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { v4 as uuidv4 } from 'uuid';
import { Kind, MAX_FRAME, VERSION, encodeFrame } from '../../src/rpc/frame';
import { ArgKind, FOP_WIRE, MAX_IO } from '../../src/rpc/wire';
import { Rng } from '../helpers/rng';
import { cleanupScratch, pidAlive as alive, scratchDir, track } from '../helpers/scratch';
import { TestBrick, clientVolfile, startBrick } from '../helpers/brick';
import { TestMount, startMount, waitFor, within } from '../helpers/mount';
import { ROOT_GFID, RawConn, closeRawConns, outcome, rawFrame } from '../helpers/raw-peer';

const SEED = process.env.XLSTACK_FUZZ_SEED !== undefined ? Number(process.env.XLSTACK_FUZZ_SEED) >>> 0 : crypto.randomInt(2 ** 31);
const DURATION_MS = Number(process.env.XLSTACK_FUZZ_MS ?? 5000);
const CONCURRENCY = 24;
/** No scenario keeps a connection longer than this. */
const SCENARIO_MAX_MS = 4000;
const { O_RDWR, O_RDONLY } = fs.constants;

// --- a seeded PRNG that also makes up JSON ----------------------------------------------------------

class FuzzRng extends Rng {
  /** A random JSON-able value, a few levels deep. */
  json(depth = 0): unknown {
    switch (this.int(depth > 2 ? 6 : 9)) {
      case 0:
        return null;
      case 1:
        return this.next() < 0.5;
      case 2:
        return this.pick([0, -1, 1.5, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 1e308, this.int(1000)]);
      case 3:
        return this.pick(['', '..', '/', 'x'.repeat(this.int(300)), '\u0000', 'é🚀', this.bytes(8).toString('latin1')]);
      case 4:
        return this.bytes(this.int(64));
      case 5:
        return this.uuid();
      case 6:
        return Array.from({ length: this.int(4) }, () => this.json(depth + 1));
      default: {
        const o: Record<string, unknown> = {};
        for (let i = this.int(4); i > 0; i--) {
          // an own property even for '__proto__' (as JSON.parse makes it)
          const key = this.pick(['op', 'args', 'caller', 'path', 'gfid', 'parent', 'name', 'x', '__proto__', 'flags']);
          Object.defineProperty(o, key, { value: this.json(depth + 1), enumerable: true, writable: true, configurable: true });
        }
        return o;
      }
    }
  }
}

// --- what each scenario expects the brick to log when it closes the connection ----------

interface ConnRecord {
  readonly scenario: string;
  readonly port: number;
  /** The reason the brick must have logged for this connection (any reason if undefined). */
  readonly reason?: RegExp;
  /** A connection reset at once may be gone before the brick learns its address. */
  readonly mayGoUnlogged?: boolean;
}

interface Stats {
  frames: number;
  rawChunks: number;
  bytes: number;
  garbageRequests: number;
  unanswered: string[];
  wrongAnswers: string[];
  scenarios: Record<string, number>;
  records: ConnRecord[];
}

const BAD_GFIDS = ['../../etc', '../../../../../../etc/passwd', '', 'garbage', 'ABCDEF01-2345-4678-9ABC-DEF012345678', `${ROOT_GFID}/..`, ` ${ROOT_GFID}`, 'x'.repeat(36), '00000000000000000000000000000001'];
const CALLER = { uid: 0, gid: 0, groups: [], pid: 4242 };

/** A value of the wrong kind for an argument of kind `kind`. */
function wrongArg(rng: FuzzRng, kind: ArgKind): unknown {
  // Typed by ArgKind: a kind added to the wire without wrong values here does not compile.
  const wrong: Record<ArgKind, unknown[]> = {
    // (path is optional: a loc of a GFID alone is a right one)
    loc: [5, 'x', null, [], Buffer.from('loc'), { gfid: ROOT_GFID, name: 'not a byte string: \u0101' }, { path: 1 }, { path: '/', gfid: 7 }, { path: '/', name: null }],
    fd: ['1', 1.5, null, {}, [], true, Buffer.from('1')],
    newfd: [1, null, {}, { flags: 'rw' }, { flags: 1.5 }, { flags: null }],
    num: ['1', null, {}, [], true, Buffer.from('1')],
    size: [-1, 1.5, MAX_IO + 1, 2 ** 40, '1', null, Buffer.from('1')],
    offset: [-1, -4096, 1.5, 2 ** 53, 2 ** 60, '1', null, Buffer.from('1')],
    name: [1, null, {}, [], true, Buffer.from('str'), 'not a byte string: \u0100', '🚀'],
    buf: ['data', [1, 2, 3], null, 1, { data: [1, 2] }, { type: 'Buffer', data: [1, 2] }],
    bool: [0, 1, 'true', null, {}],
    attr: [null, 'x', 5, { mode: 'x' }, { uid: 1.5 }, { atime: { sec: 1, nsec: 1e9 } }, { mtime: 'yesterday' }, { gid: null }],
    lock: [null, 'x', { type: 'read' }, { type: 'shared', start: 0, end: 1, pid: 1 }, { type: 'write', start: 0.5, end: 1, pid: 1 }, { type: 'unlock', start: 0, end: '1', pid: 1 }],
    lockcmd: ['', 'setlkw', 'GET', 1, null, {}],
    lockkind: ['', 'fcntl', 'POSIX', 0, null],
    whence: ['', 'end', 'SEEK_DATA', 3, null],
    domain: ['', 1, null, 'has space', 'x'.repeat(200), {}],
    maybename: [1, {}, 'a\u0100', Buffer.from('n')],
    entrycmd: ['', 'LOCK', 'lockw', 1, null],
    entrytype: ['', 'exclusive', 2, null],
    xattrop: ['', 'ADD', 'sub', 0, null],
    xattrs: [null, 'x', { 'user.plain': Buffer.alloc(4) }, { 'trusted.gfid': Buffer.alloc(16) }, { 'trusted.xlstack.a': 'text' }, { 'trusted.xlstack.a': Buffer.alloc(5000) }],
  };
  return rng.pick(wrong[kind]);
}

/** A valid-looking argument of kind `kind` (aimed at nothing that matters). */
function someArg(rng: FuzzRng, kind: ArgKind, fds: number[]): unknown {
  switch (kind) {
    case 'loc':
      return rng.pick([{ path: '/', gfid: ROOT_GFID }, { path: '/nope', parent: ROOT_GFID, name: `fuzz-missing-${rng.int(1000)}` }, { path: '/x', gfid: rng.uuid() }]);
    case 'fd':
      return fds.length && rng.next() < 0.5 ? rng.pick(fds) : rng.pick([0, 1, 2, 3, 7, 100, 2 ** 31, 2 ** 53 - 1, -1]);
    case 'newfd':
      return { flags: rng.pick([O_RDONLY, O_RDWR]) };
    case 'num':
      return rng.pick([0, 1, 4096, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 40, -1, 1.5]);
    case 'name':
      return rng.pick(['user.fuzz', 'trusted.gfid', '', 'target', '\xff\xfe bytes']);
    case 'lockcmd':
      return rng.pick(['get', 'set', 'wait']);
    case 'lockkind':
      return rng.pick(['posix', 'flock']);
    case 'whence':
      return rng.pick(['data', 'hole']);
    case 'domain':
      return rng.pick(['fuzz', 'fuzz.data', 'afr:meta']);
    case 'maybename':
      return rng.pick([null, 'fuzz-entry']);
    case 'entrycmd':
      return rng.pick(['trylock', 'unlock']);
    case 'entrytype':
      return rng.pick(['read', 'write']);
    case 'xattrop':
      return rng.pick(['get', 'add']);
    case 'xattrs':
      return { 'trusted.xlstack.fuzz': Buffer.alloc(4) };
    case 'buf':
      return rng.bytes(rng.int(2048));
    case 'size':
      return rng.pick([0, 1, 4096, 131072, MAX_IO]);
    case 'offset':
      return rng.pick([0, 1, 4096, 2 ** 31, 2 ** 40]);
    case 'bool':
      return rng.next() < 0.5;
    case 'attr':
      return { mode: 0o644 };
    case 'lock':
      return { type: rng.pick(['read', 'write', 'unlock']), start: rng.pick([0, 1, 4096]), end: rng.pick([0, 4095, 2 ** 53 - 1]), pid: 4242 };
  }
}

/** One garbage request, and whether it must fail. */
function garbageRequest(rng: FuzzRng, fds: number[], fresh: string): { body: unknown; mustFail: boolean; what: string } {
  const ops = Object.keys(FOP_WIRE);
  switch (rng.int(11)) {
    case 0: {
      const op = rng.pick(['nosuchop', '', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'init', 'fini', 'notify', 'dump', 'LOOKUP', 'lookup ', 'x'.repeat(1000)]);
      return { body: { op, caller: CALLER, args: [] }, mustFail: true, what: `unknown op ${JSON.stringify(op.slice(0, 20))}` };
    }
    case 1:
      return { body: rng.pick([null, 5, 'lookup', [], [1, 2], true, { op: 'stat' }, { op: 'stat', caller: CALLER }, { op: 'stat', args: {} , caller: CALLER}]), mustFail: true, what: 'not a request' };
    case 2: {
      const caller = rng.pick([undefined, null, {}, { uid: '0', gid: 0, groups: [], pid: 1 }, { uid: 0, gid: 0, groups: ['0'], pid: 1 }, { uid: 0, gid: 0, groups: [], pid: 1.5 }, { uid: 0, gid: 0, pid: 1 }]);
      return { body: { op: 'stat', caller, args: [{ path: '/', gfid: ROOT_GFID }] }, mustFail: true, what: 'bad caller' };
    }
    case 3: {
      const op = rng.pick(ops) as keyof typeof FOP_WIRE;
      const n = FOP_WIRE[op].args.length;
      const count = rng.pick([0, n + 1, n + 5].filter((c) => c !== n));
      return { body: { op, caller: CALLER, args: Array.from({ length: count }, () => rng.json()) }, mustFail: true, what: `${op} with ${count} arguments` };
    }
    case 4: {
      const op = rng.pick(ops) as keyof typeof FOP_WIRE;
      const kinds = FOP_WIRE[op].args;
      const bad = rng.int(kinds.length);
      const args = kinds.map((k, i) => (i === bad ? wrongArg(rng, k) : someArg(rng, k, fds)));
      return { body: { op, caller: CALLER, args }, mustFail: true, what: `${op} with argument ${bad + 1} not a ${kinds[bad]}` };
    }
    case 5: {
      const gfid = rng.pick(BAD_GFIDS);
      const op = rng.pick(['lookup', 'stat', 'open', 'opendir', 'truncate', 'getxattr', 'mkdir', 'create', 'unlink', 'setattr'] as const);
      const loc = rng.next() < 0.5 ? { path: '/x', gfid } : { path: '/x', parent: gfid, name: 'x', gfid: fresh };
      const rest: Record<string, unknown[]> = { open: [{ flags: O_RDONLY }], opendir: [{ flags: O_RDONLY }], truncate: [0], getxattr: ['user.x'], mkdir: [0o755], create: [0o644, { flags: O_RDWR }], setattr: [{ mode: 0o777 }] };
      return { body: { op, caller: CALLER, args: [loc, ...(rest[op] ?? [])] }, mustFail: true, what: `${op} with GFID ${JSON.stringify(gfid)}` };
    }
    case 6: {
      // fds this connection never opened: other clients' fd numbers included
      const fd = rng.pick([0, 1, 2, 3, 4, 5, 10, 1000, 2 ** 31 - 1, 2 ** 53 - 1, -1].filter((f) => !fds.includes(f)));
      const op = rng.pick(['read', 'write', 'fstat', 'flush', 'fsync', 'ftruncate', 'readdir', 'fsetattr'] as const);
      const rest: Record<string, unknown[]> = {
        read: [rng.pick([4096, 2 ** 31, 2 ** 32 - 1, 2 ** 40]), 0],
        write: [rng.bytes(rng.int(1024)), 0],
        fsync: [false],
        ftruncate: [0],
        readdir: [4096, 0],
        fsetattr: [{ mode: 0o600 }],
      };
      return { body: { op, caller: CALLER, args: [fd, ...(rest[op] ?? [])] }, mustFail: true, what: `${op} on fd ${fd} not opened here` };
    }
    case 7: {
      // this connection's own file: huge and odd read sizes and offsets (the file is small)
      if (!fds.length) return { body: { op: 'stat', caller: CALLER, args: [{ path: '/', gfid: ROOT_GFID }] }, mustFail: false, what: 'stat /' };
      const size = rng.pick([0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53, -1, 1.5, 1e308]);
      const offset = rng.pick([0, 2 ** 40, -1, 2 ** 53]);
      return { body: { op: 'read', caller: CALLER, args: [rng.pick(fds), size, offset] }, mustFail: size < 0, what: `read of ${size} at ${offset}` };
    }
    case 8: {
      const name = rng.pick(['..', '.', '', 'a/b', '../fuzz-escape', 'a\u0000b', 'n'.repeat(256), '.xlstack']);
      const op = rng.pick(['lookup', 'mkdir', 'unlink', 'rmdir'] as const);
      const rest: Record<string, unknown[]> = { mkdir: [0o755] };
      return { body: { op, caller: CALLER, args: [{ path: '/x', parent: ROOT_GFID, name, gfid: fresh }, ...(rest[op] ?? [])] }, mustFail: true, what: `${op} of name ${JSON.stringify(name)}` };
    }
    case 9:
      return { body: { op: 'release', caller: CALLER, args: rng.pick([[], ['1'], [1, 2], [rng.pick([99, 2 ** 31])]]) }, mustFail: false, what: 'release' };
    default:
      return { body: { op: rng.pick(['stat', 'statfs', 'lookup']), caller: CALLER, args: [{ path: '/', gfid: ROOT_GFID }] }, mustFail: false, what: 'a harmless fop' };
  }
}

// --- the scenarios -----------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

type Scenario = (rng: FuzzRng, port: number, stats: Stats) => Promise<void>;

async function connect(port: number, stats: Stats, scenario: string, reason?: RegExp, mayGoUnlogged = false): Promise<RawConn> {
  const c = await RawConn.open(port, { timeoutMs: 3000 });
  stats.scenarios[scenario] = (stats.scenarios[scenario] ?? 0) + 1;
  stats.records.push({ scenario, port: c.localPort, reason, mayGoUnlogged });
  return c;
}

/** Sends raw bytes (counted as one raw chunk). */
function raw(c: RawConn, stats: Stats, bytes: Buffer): void {
  if (c.write(bytes)) {
    stats.rawChunks++;
    stats.bytes += bytes.length;
  }
}

/** Sends mangled or valid frame bytes (counted as frames). */
function frames(c: RawConn, stats: Stats, bytes: Buffer, n = 1): void {
  if (c.write(bytes)) {
    stats.frames += n;
    stats.bytes += bytes.length;
  }
}

async function finish(c: RawConn, waitMs: number): Promise<void> {
  await c.waitClosed(waitMs);
  c.destroy();
}

const HELLO = (volume = 'brick-posix', version: unknown = VERSION) => ({ version, volume, client: 'fuzzer' });

const SCENARIOS: Record<string, Scenario> = {
  async randomBytes(rng, port, stats) {
    const c = await connect(port, stats, 'randomBytes');
    for (let i = rng.range(1, 4); i > 0; i--) raw(c, stats, rng.bytes(rng.range(1, 4096)));
    await finish(c, rng.range(50, 500));
  },
  async randomFrameContents(rng, port, stats) {
    const c = await connect(port, stats, 'randomFrameContents', /^bad frame: /);
    const len = rng.range(0, 3000);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(len, 0);
    frames(c, stats, Buffer.concat([prefix, rng.bytes(len)]));
    // a random frame may by chance be a valid one: follow it with one that cannot be
    frames(c, stats, rawFrame({ version: 0 }));
    await finish(c, 2000);
  },
  async truncatedThenClose(rng, port, stats) {
    const c = await connect(port, stats, 'truncatedThenClose', /^closed in the middle of a frame \(\d+ bytes of it\)/);
    const f = encodeFrame(rng.pick([Kind.HELLO, Kind.REQUEST, Kind.PING]), rng.int(2 ** 32), { version: VERSION, volume: 'brick-posix', data: rng.bytes(rng.int(5000)) });
    frames(c, stats, f.subarray(0, rng.range(1, f.length - 1)));
    await sleep(rng.range(0, 100));
    c.socket.end();
    await finish(c, 2000);
  },
  async announces4GiB(rng, port, stats) {
    const c = await connect(port, stats, 'announces4GiB', /^bad frame: frame of 4294967295 bytes announced/);
    frames(c, stats, Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), rng.bytes(rng.int(100))]));
    await finish(c, 2000);
  },
  async announcesOverMax(rng, port, stats) {
    const c = await connect(port, stats, 'announcesOverMax', /^bad frame: frame of \d+ bytes announced/);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(rng.range(MAX_FRAME + 1, 0x7fffffff), 0);
    // the prefix alone, a byte at a time
    for (const b of prefix) {
      frames(c, stats, Buffer.from([b]), 0);
      await sleep(rng.int(5));
    }
    stats.frames++;
    await finish(c, 2000);
  },
  async wrongVersion(rng, port, stats) {
    const c = await connect(port, stats, 'wrongVersion', /^bad frame: protocol version \d+/);
    frames(c, stats, rawFrame({ version: rng.pick([0, VERSION - 1, VERSION + 1, 255]), kind: rng.pick([Kind.HELLO, Kind.REQUEST]), header: JSON.stringify(HELLO()) }));
    await finish(c, 2000);
  },
  async unknownKind(rng, port, stats) {
    const c = await connect(port, stats, 'unknownKind', /^bad frame: unknown frame kind \d+/);
    // Kinds the wire does not define: 0 and everything past the last one.
    const last = Math.max(...Object.values(Kind).filter((v): v is number => typeof v === 'number'));
    frames(c, stats, rawFrame({ kind: rng.pick([0, last + 1, last + 2, 100, 255]), header: JSON.stringify(HELLO()) }));
    await finish(c, 2000);
  },
  async badHeader(rng, port, stats) {
    const c = await connect(port, stats, 'badHeader', /^bad frame: /);
    const variants = [
      () => rawFrame({ kind: Kind.HELLO, header: '{"version":1,', headerLength: undefined }),
      () => rawFrame({ kind: Kind.HELLO, header: '{}', headerLength: rng.range(3, 2 ** 32 - 1) }),
      () => rawFrame({ kind: Kind.REQUEST, header: `{"op":"write","args":[1,{"$buf":[${rng.int(100)},${rng.range(1, 100)}]},0]}` }),
      () => rawFrame({ kind: Kind.REQUEST, header: '{"$buf":[-1,1]}', payload: rng.bytes(10) }),
      () => Buffer.from([0, 0, 0, rng.int(10)]),
      // not UTF-8 JSON, whatever follows the first byte
      () => rawFrame({ kind: Kind.HELLO, header: Buffer.concat([Buffer.from([0xff]), rng.bytes(rng.range(0, 200))]) }),
    ];
    frames(c, stats, Buffer.concat([rng.pick(variants)(), rawFrame({ version: 0 })]));
    await finish(c, 2000);
  },
  async deepJson(rng, port, stats) {
    const c = await connect(port, stats, 'deepJson');
    const depth = rng.range(10_000, 500_000);
    frames(c, stats, rawFrame({ kind: Kind.REQUEST, header: '['.repeat(depth) + ']'.repeat(depth) }));
    await finish(c, 3000);
  },
  async wrongVolume(rng, port, stats) {
    const c = await connect(port, stats, 'wrongVolume', /^refused: no volume /);
    const volume = rng.pick(['', 'nope', 'brick-server', 'brick-posix ', 'BRICK-POSIX', '../brick-posix', 'x'.repeat(500)]);
    const w = await c.hello(volume, 3000);
    stats.frames++;
    if (!w || w.ok !== false || !/no volume/.test(w.reason)) stats.wrongAnswers.push(`HELLO for volume ${JSON.stringify(volume.slice(0, 20))}: ${JSON.stringify(w)}`);
    if (!(await c.waitClosed(2000))) stats.wrongAnswers.push(`connection of a refused HELLO (volume ${JSON.stringify(volume.slice(0, 20))}) stayed open`);
    c.destroy();
  },
  async helloWrongVersion(rng, port, stats) {
    const c = await connect(port, stats, 'helloWrongVersion', /^refused: protocol version /);
    const version = rng.pick([0, VERSION - 1, VERSION + 1, String(VERSION), null, VERSION + 0.0001, [VERSION]]);
    const w = await c.hello('brick-posix', 3000, version);
    stats.frames++;
    if (!w || w.ok !== false) stats.wrongAnswers.push(`HELLO of version ${JSON.stringify(version)}: ${JSON.stringify(w)}`);
    await finish(c, 2000);
  },
  async helloNotAnObject(rng, port, stats) {
    const c = await connect(port, stats, 'helloNotAnObject', /^refused: /);
    const body = rng.pick([null, 1, 'hello', [], true, Buffer.from('x')]);
    const f = await c.call(Kind.HELLO, body, 3000);
    stats.frames++;
    if (!f || (f.body as { ok?: unknown })?.ok !== false) stats.wrongAnswers.push(`HELLO with body ${JSON.stringify(body)}: ${JSON.stringify(f?.body)}`);
    await finish(c, 2000);
  },
  async requestBeforeHello(rng, port, stats) {
    const c = await connect(port, stats, 'requestBeforeHello', /^a request before the handshake$/);
    const r = await c.request(rng.pick(['stat', 'lookup', 'statfs']), [{ path: '/', gfid: ROOT_GFID }], 500);
    stats.frames++;
    if (r) stats.wrongAnswers.push(`a request before the handshake was answered: ${JSON.stringify(r).slice(0, 200)}`);
    if (!(await c.waitClosed(2000))) stats.wrongAnswers.push('a request before the handshake left the connection open');
    c.destroy();
  },
  async unexpectedKind(rng, port, stats) {
    // An answer to nothing (REPLY, WELCOME, PONG from a client): the brick may drop it or
    // close the connection for it, but must not answer it, and must stay sane.
    const c = await connect(port, stats, 'unexpectedKind', /^(unexpected frame kind \d|closed by the peer)$/);
    if (rng.next() < 0.5) {
      await c.hello('brick-posix', 3000);
      stats.frames++;
    }
    const kind = rng.pick([Kind.REPLY, Kind.WELCOME, Kind.PONG]);
    frames(c, stats, encodeFrame(kind, rng.int(100), { ok: true }));
    const pong = await c.call(Kind.PING, null, 2000);
    stats.frames++;
    if (!c.closed && pong?.kind !== Kind.PONG) stats.wrongAnswers.push(`after an unsolicited frame of kind ${kind}, a PING got ${JSON.stringify(pong)}`);
    if (c.unsolicited.length) stats.wrongAnswers.push(`an unsolicited frame of kind ${kind} was answered: ${JSON.stringify(c.unsolicited)}`);
    await finish(c, 0);
  },
  async cancels(rng, port, stats) {
    // CANCELs of requests that never were (or are long done): ignored once welcomed, the end of a connection before.
    const early = rng.next() < 0.3;
    const c = await connect(port, stats, 'cancels', early ? /^a cancel before the handshake$/ : /^closed by the peer$/);
    if (!early) {
      await c.hello('brick-posix', 3000);
      stats.frames++;
    }
    for (let i = rng.range(1, 5); i > 0; i--) frames(c, stats, encodeFrame(Kind.CANCEL, rng.int(2 ** 32), rng.json()));
    if (!early) {
      const pong = await c.call(Kind.PING, null, 3000);
      stats.frames++;
      if (pong?.kind !== Kind.PONG) stats.wrongAnswers.push(`after CANCELs of nothing, a PING got ${JSON.stringify(pong)}`);
    }
    await finish(c, early ? 2000 : 0);
  },
  async secondHello(rng, port, stats) {
    const c = await connect(port, stats, 'secondHello', /^refused: a second handshake$/);
    const w1 = await c.hello('brick-posix', 3000);
    const w2 = await c.hello(rng.pick(['brick-posix', 'other']), 3000);
    stats.frames += 2;
    if (!w1?.ok || w2?.ok !== false) stats.wrongAnswers.push(`two HELLOs: ${JSON.stringify([w1, w2])}`);
    await finish(c, 2000);
  },
  async pingByeBeforeHello(rng, port, stats) {
    const c = await connect(port, stats, 'pingByeBeforeHello', /^client \? said goodbye$/);
    const n = rng.range(1, 5);
    for (let i = 0; i < n; i++) {
      const pong = await c.call(Kind.PING, rng.json(), 3000);
      stats.frames++;
      if (pong?.kind !== Kind.PONG) stats.wrongAnswers.push(`PING answered by ${JSON.stringify(pong)}`);
    }
    frames(c, stats, encodeFrame(Kind.BYE, 0, null));
    await finish(c, 2000);
  },
  async stallHalfFrame(rng, port, stats) {
    const c = await connect(port, stats, 'stallHalfFrame', /^closed in the middle of a frame/);
    if (rng.next() < 0.5) {
      await c.hello('brick-posix', 3000);
      stats.frames++;
    }
    const f = encodeFrame(Kind.REQUEST, 77, { op: 'write', caller: CALLER, args: [1, rng.bytes(rng.range(100, 20_000)), 0] });
    const cut = rng.range(1, f.length - 1);
    frames(c, stats, f.subarray(0, cut));
    await sleep(rng.range(500, 2500));
    await finish(c, 0);
  },
  async slowPrefix(rng, port, stats) {
    const c = await connect(port, stats, 'slowPrefix', /^closed in the middle of a frame/);
    const f = encodeFrame(Kind.HELLO, 1, HELLO());
    for (let i = 0; i < 3; i++) {
      frames(c, stats, f.subarray(i, i + 1), 0);
      await sleep(rng.range(100, 400));
    }
    stats.frames++;
    await finish(c, 0);
  },
  async bigFrameBeforeHello(rng, port, stats) {
    // A large, valid frame (a write of up to 8 MiB) from a peer that never said HELLO.
    const c = await connect(port, stats, 'bigFrameBeforeHello', /^a request before the handshake$/);
    const size = rng.range(1, 8) * 1024 * 1024;
    frames(c, stats, encodeFrame(Kind.REQUEST, 1, { op: 'write', caller: CALLER, args: [1, Buffer.alloc(size, rng.int(256)), 0] }));
    await finish(c, 3000);
  },
  async resetAtOnce(rng, port, stats) {
    const c = await connect(port, stats, 'resetAtOnce', undefined, true);
    if (rng.next() < 0.5) raw(c, stats, rng.bytes(rng.range(1, 30)));
    c.socket.resetAndDestroy();
    await finish(c, 500);
  },
  async pipelined(rng, port, stats) {
    // Several good frames and then a bad one, all in one write.
    const c = await connect(port, stats, 'pipelined', /^bad frame: /);
    const parts = [encodeFrame(Kind.HELLO, 1, await c.helloBody())];
    for (let i = rng.range(1, 20); i > 0; i--) parts.push(encodeFrame(Kind.PING, 100 + i, null), encodeFrame(Kind.REQUEST, 200 + i, { op: 'statfs', caller: CALLER, args: [{ path: '/', gfid: ROOT_GFID }] }));
    parts.push(rawFrame({ kind: 99 }));
    frames(c, stats, Buffer.concat(parts), parts.length);
    await finish(c, 2000);
  },
  async garbageAfterHello(rng, port, stats) {
    const c = await connect(port, stats, 'garbageAfterHello', /^closed by the peer$/);
    const w = await c.hello('brick-posix', 3000);
    stats.frames++;
    if (!w?.ok) {
      stats.wrongAnswers.push(`a good HELLO was refused: ${JSON.stringify(w)}`);
      return c.destroy();
    }
    const fds: number[] = [];
    if (rng.next() < 0.5) {
      // a small file of its own, to read with huge sizes
      const name = `fuzz-${SEED}-${rng.uuid().slice(0, 8)}`;
      const r = await c.request('create', [{ path: `/${name}`, parent: ROOT_GFID, name, gfid: rng.uuid() }, 0o644, { flags: O_RDWR }], 5000);
      stats.frames++;
      if (r?.ok && typeof r.fd === 'number') {
        fds.push(r.fd);
        await c.request('write', [r.fd, rng.bytes(rng.range(1, 100_000)), 0], 5000);
        stats.frames++;
      }
    }
    const batch = Array.from({ length: rng.range(5, 30) }, () => garbageRequest(rng, fds, rng.uuid()));
    const answers = await Promise.all(batch.map((g) => c.call(Kind.REQUEST, g.body, 8000)));
    stats.frames += batch.length;
    stats.garbageRequests += batch.length;
    batch.forEach((g, i) => {
      const a = answers[i];
      if (!a) stats.unanswered.push(`${g.what}: ${JSON.stringify(g.body, (_k, v) => (typeof v === 'string' && v.length > 40 ? v.slice(0, 40) + '…' : v)).slice(0, 300)}`);
      else if (a.kind !== Kind.REPLY) stats.wrongAnswers.push(`${g.what}: answered by a frame of kind ${a.kind}`);
      else if (g.mustFail && (a.body as { ok?: unknown }).ok !== false) stats.wrongAnswers.push(`${g.what}: should fail, got ${JSON.stringify(a.body).slice(0, 200)}`);
    });
    // end it in the middle of nowhere: a clean close
    await finish(c, 0);
  },
};

// --- the legitimate workload, in a child process ------------------------------------------

/**
 * Runs in its own process: writes files of random content (write, fsync, rename over),
 * reads them back, checks sizes and the listing, makes and removes directories, until the
 * stop file appears; then checks everything once more and prints a JSON summary.
 */
const WORKLOAD = String.raw`
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const { dir, stop, deadlineMs } = JSON.parse(process.env.XLSTACK_WORKLOAD);
const start = Date.now();
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const expected = new Map();
const s = { iterations: 0, bytesWritten: 0, bytesVerified: 0, errors: [], mismatches: [], times: [] };
function check(name) {
  const got = fs.readFileSync(path.join(dir, name));
  s.bytesVerified += got.length;
  const want = expected.get(name);
  if (sha(got) !== want.sha || got.length !== want.size) s.mismatches.push(name + ': read back ' + got.length + ' bytes, not the ' + want.size + ' written');
}
function step(i) {
  const name = 'f' + (i % 6);
  const data = crypto.randomBytes(1 + crypto.randomInt(256 * 1024));
  const tmp = path.join(dir, name + '.tmp');
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    let off = 0;
    while (off < data.length) off += fs.writeSync(fd, data, off, Math.min(65536, data.length - off), off);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path.join(dir, name));
  expected.set(name, { sha: sha(data), size: data.length });
  s.bytesWritten += data.length;
  check(name);
  check([...expected.keys()][crypto.randomInt(expected.size)]);
  const st = fs.statSync(path.join(dir, name));
  if (st.size !== data.length) s.mismatches.push(name + ': size ' + st.size + ', not ' + data.length);
  const want = [...expected.keys()].sort().join(',');
  const listed = fs.readdirSync(dir).sort().join(',');
  if (listed !== want) s.mismatches.push('listing ' + listed + ', not ' + want);
  const d = path.join(dir, 'dir' + i);
  fs.mkdirSync(d);
  fs.writeFileSync(path.join(d, 'x'), String(i));
  if (fs.readFileSync(path.join(d, 'x'), 'utf8') !== String(i)) s.mismatches.push('dir' + i + '/x');
  fs.unlinkSync(path.join(d, 'x'));
  fs.rmdirSync(d);
}
fs.mkdirSync(dir, { recursive: true });
for (let i = 0; !fs.existsSync(stop) && Date.now() - start < deadlineMs; i++) {
  try {
    step(i);
    s.iterations++;
    s.times.push(Date.now());
    if (i === 0) process.stdout.write('started\n');
  } catch (e) {
    s.errors.push(i + ': ' + (e.code || '') + ' ' + e.message);
    if (s.errors.length >= 20) break;
  }
}
try {
  for (const name of expected.keys()) check(name);
} catch (e) {
  s.errors.push('final check: ' + (e.code || '') + ' ' + e.message);
}
process.stdout.write(JSON.stringify(s) + '\n');
`;

interface WorkloadSummary {
  iterations: number;
  bytesWritten: number;
  bytesVerified: number;
  errors: string[];
  mismatches: string[];
  times: number[];
}

// --- the test ----------------------------------------------------------------------------

afterAll(cleanupScratch);

/** Log lines `connection <address>: <reason>` of the brick, by client port. */
function closeReasons(log: string): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const m of log.matchAll(/ connection 127\.0\.0\.1:(\d+): (.*)$/gm)) {
    const port = Number(m[1]);
    out.set(port, [...(out.get(port) ?? []), m[2]]);
  }
  return out;
}

test(`a fuzz test throws random and truncated frames at a brick; it keeps serving a legitimate client throughout (seed ${SEED})`, async () => {
  // eslint-disable-next-line no-console
  console.log(`rpc fuzz: seed ${SEED} (rerun with XLSTACK_FUZZ_SEED=${SEED}), ${DURATION_MS} ms`);
  const brick: TestBrick = await startBrick();
  const mount: TestMount = await startMount({ volfile: clientVolfile(brick.port) });
  const work = scratchDir('xlstack-fuzz-');
  const stopFile = path.join(work, 'stop');

  // the legitimate client
  const child = spawn(process.execPath, ['-e', WORKLOAD], {
    env: { ...process.env, XLSTACK_WORKLOAD: JSON.stringify({ dir: path.join(mount.mountpoint, 'work'), stop: stopFile, deadlineMs: DURATION_MS + 60_000 }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await waitFor(() => out.includes('started') || child.exitCode !== null, 20_000, 'the workload to start');
  expect({ started: out.includes('started'), stderr: err }).toEqual({ started: true, stderr: '' });

  // the fuzzer
  const stats: Stats = { frames: 0, rawChunks: 0, bytes: 0, garbageRequests: 0, unanswered: [], wrongAnswers: [], scenarios: {}, records: [] };
  const failures: string[] = [];
  const names = Object.keys(SCENARIOS);
  const fuzzStart = Date.now();
  const fuzzEnd = fuzzStart + DURATION_MS;
  const worker = async (w: number) => {
    const rng = new FuzzRng((SEED ^ Math.imul(w + 1, 0x9e3779b1)) >>> 0);
    while (Date.now() < fuzzEnd) {
      const name = rng.pick(names);
      const scenario = SCENARIOS[name](rng, brick.port, stats).catch((e: Error) => {
        failures.push(`${name}: ${e.message}`);
      });
      if ((await within(scenario.then(() => 'done'), SCENARIO_MAX_MS + 5000)) !== 'done') failures.push(`${name}: did not finish in time`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, (_v, w) => worker(w)));
  const fuzzMs = Date.now() - fuzzStart;
  closeRawConns();

  // a fresh client can still do fops
  const fresh = await RawConn.open(brick.port);
  const welcome = await fresh.hello('brick-posix', 5000);
  const gfid = uuidv4();
  const created = await fresh.request('create', [{ path: '/after-fuzz', parent: ROOT_GFID, name: 'after-fuzz', gfid }, 0o644, { flags: O_RDWR }]);
  const fd = created?.ok ? created.fd : undefined;
  const wrote = await fresh.request('write', [fd, Buffer.from('still serving'), 0]);
  const read = await fresh.request('read', [fd, 100, 0]);
  const looked = await fresh.request('lookup', [{ path: '/after-fuzz', parent: ROOT_GFID, name: 'after-fuzz' }]);
  fresh.destroy();
  expect({
    welcome,
    created: outcome(created),
    wrote: outcome(wrote),
    read: read?.ok ? String(read.value) : outcome(read),
    looked: looked?.ok ? (looked.value as { gfid: string }).gfid : outcome(looked),
  }).toEqual({ welcome: { ok: true }, created: 'OK', wrote: 'OK', read: 'still serving', looked: gfid });

  // the workload ran throughout, with no error
  await sleep(300);
  fs.writeFileSync(stopFile, '');
  await within(exited, 60_000);
  if (child.exitCode === null) child.kill('SIGKILL');
  const summaryLine = out.split('\n').find((l) => l.startsWith('{'));
  expect({ summary: !!summaryLine, stderr: err }).toEqual({ summary: true, stderr: '' });
  const summary = JSON.parse(summaryLine!) as WorkloadSummary;
  const during = summary.times.filter((t) => t >= fuzzStart && t <= fuzzStart + fuzzMs);
  let maxGap = 0;
  for (let i = 1; i < summary.times.length; i++) maxGap = Math.max(maxGap, summary.times[i] - summary.times[i - 1]);

  // every connection the brick closed has its reason logged, the one each scenario expects
  await waitFor(
    () => {
      const reasons = closeReasons(brick.log());
      return stats.records.every((r) => r.mayGoUnlogged || reasons.has(r.port));
    },
    15_000,
    'the brick to log the end of every fuzz connection',
  ).catch(() => undefined);
  const reasons = closeReasons(brick.log());
  const unlogged = stats.records.filter((r) => !r.mayGoUnlogged && !reasons.has(r.port)).map((r) => `${r.scenario} from port ${r.port}`);
  const wrongReason = stats.records
    .filter((r) => r.reason && reasons.has(r.port) && !reasons.get(r.port)!.some((line) => r.reason!.test(line)))
    .map((r) => `${r.scenario} from port ${r.port}: logged ${JSON.stringify(reasons.get(r.port))}, expected ${r.reason}`);
  const logged = [...reasons.values()].flat();
  const kindsOfReason = {
    badFrame: logged.filter((l) => l.startsWith('bad frame: ')).length,
    refused: logged.filter((l) => l.startsWith('refused: ')).length,
    beforeHandshake: logged.filter((l) => l === 'a request before the handshake').length,
    midFrame: logged.filter((l) => l.startsWith('closed in the middle of a frame')).length,
    closedByFuzzer: logged.filter((l) => l === 'closed by the peer').length,
  };

  // eslint-disable-next-line no-console
  console.log(
    `rpc fuzz (seed ${SEED}): ${stats.records.length} connections, ${stats.frames} frames and ${stats.rawChunks} raw chunks (${(stats.bytes / 1e6).toFixed(1)} MB) in ${fuzzMs} ms; ` +
      `${stats.garbageRequests} garbage requests; scenarios ${JSON.stringify(stats.scenarios)}; close reasons ${JSON.stringify(kindsOfReason)}; ` +
      `workload: ${summary.iterations} iterations (${during.length} during the fuzz, longest gap ${maxGap} ms), ${(summary.bytesWritten / 1e6).toFixed(1)} MB written, ${(summary.bytesVerified / 1e6).toFixed(1)} MB verified`,
  );

  const legitName = `${os.hostname()}:${mount.pid}`;
  expect({
    seed: SEED,
    brickAlive: alive(brick.pid),
    mountAlive: alive(mount.pid),
    fuzzerFailures: failures.slice(0, 10),
    unanswered: stats.unanswered.slice(0, 10),
    wrongAnswers: stats.wrongAnswers.slice(0, 10),
    workloadErrors: summary.errors,
    workloadMismatches: summary.mismatches.slice(0, 10),
    unlogged: unlogged.slice(0, 10),
    wrongReason: wrongReason.slice(0, 10),
    // the legitimate client never lost its connection
    legitConnects: brick.log().split(`client ${legitName} connected`).length - 1,
    legitLeft: brick.log().includes(`client ${legitName} left`),
  }).toEqual({
    seed: SEED,
    brickAlive: true,
    mountAlive: true,
    fuzzerFailures: [],
    unanswered: [],
    wrongAnswers: [],
    workloadErrors: [],
    workloadMismatches: [],
    unlogged: [],
    wrongReason: [],
    legitConnects: 1,
    legitLeft: false,
  });
  expect(stats.records.length).toBeGreaterThan(100);
  expect(summary.iterations).toBeGreaterThan(5);
  expect(during.length).toBeGreaterThan(2);
  expect(maxGap).toBeLessThan(3000);
  for (const [kind, n] of Object.entries(kindsOfReason)) expect({ kind, seen: n > 0 }).toEqual({ kind, seen: true });

  await mount.unmount();
  await brick.stop();
}, 180_000);

// --- huge reads: the reply must be refused by its size, not built --------------------------

describe('a read of a huge size', () => {
  /** A brick with a sparse file of 1 TiB opened by a raw client; returns the fd. */
  async function sparseFile(): Promise<{ brick: TestBrick; c: RawConn; fd: number }> {
    const brick = await startBrick();
    const c = await RawConn.open(brick.port);
    expect(await c.hello()).toEqual({ ok: true });
    const created = await c.request('create', [{ path: '/sparse', parent: ROOT_GFID, name: 'sparse', gfid: uuidv4() }, 0o644, { flags: O_RDWR }]);
    expect(outcome(created)).toBe('OK');
    const fd = (created as { fd: number }).fd;
    expect(outcome(await c.request('ftruncate', [fd, 2 ** 40]))).toBe('OK');
    return { brick, c, fd };
  }

  test('of 256 MiB on a sparse file gets an error reply, and the brick survives it', async () => {
    const { brick, c, fd } = await sparseFile();
    const started = Date.now();
    const r = await c.request('read', [fd, 256 * 1024 * 1024, 0], 30_000);
    const took = Date.now() - started;
    await sleep(200);
    const after = await RawConn.open(brick.port).catch(() => undefined);
    const welcome = await after?.hello('brick-posix', 3000);
    const stat = await after?.request('stat', [{ path: '/', gfid: ROOT_GFID }], 3000);
    after?.destroy();
    c.destroy();
    const crash = brick.log().split('\n').filter((l) => /FATAL|heap out of memory/.test(l)).slice(0, 2);
    expect({ reply: r ? (r.ok ? 'OK (a reply over MAX_FRAME?)' : 'error') : 'NO REPLY', brickAlive: alive(brick.pid), crash, welcome, stat: outcome(stat) }).toEqual({
      reply: 'error',
      brickAlive: true,
      crash: [],
      welcome: { ok: true },
      stat: 'OK',
    });
    expect(took).toBeLessThan(5000);
    await brick.stop();
  }, 60_000);

  test('of 64 MiB on a sparse file does not stall the brick: other connections get their PONGs meanwhile', async () => {
    const { brick, c, fd } = await sparseFile();
    const other = await RawConn.open(brick.port);
    expect(await other.hello()).toEqual({ ok: true });
    const reply = c.request('read', [fd, 64 * 1024 * 1024, 0], 30_000);
    // pings from another connection while the read is served: none may wait long
    const rtts: number[] = [];
    let done = false;
    void reply.finally(() => (done = true));
    const pinging = (async () => {
      while (!done && rtts.length < 200) {
        const t = Date.now();
        const pong = await other.call(Kind.PING, null, 10_000);
        rtts.push(pong ? Date.now() - t : Infinity);
        await sleep(20);
      }
    })();
    const r = await reply;
    await within(pinging, 15_000);
    other.destroy();
    c.destroy();
    expect({ reply: r ? (r.ok ? 'OK' : 'error') : 'NO REPLY', brickAlive: alive(brick.pid) }).toEqual({ reply: 'error', brickAlive: true });
    // protocol/client declares a brick dead after ping-timeout (2 s in the test volfiles)
    expect(Math.max(0, ...rtts)).toBeLessThan(1000);
    await brick.stop();
  }, 60_000);
});
