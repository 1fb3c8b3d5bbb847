// KernelSession against a scripted kernel: a fake device (SessionOptions.dev) queues the
// requests a test writes with the uapi layouts of test/helpers/fuse-wire.ts and keeps every
// reply, so each rule of the protocol is checked reply by reply, without a mount.
import { constants } from 'os';
import { FopError } from '../../src/core/errors';
import { Logger } from '../../src/core/log';
import { MAX_OFFSET } from '../../src/core/types';
import type { Dev, NotifierHandle, PollHandle } from '../../src/fuse/kernel/dev';
import { Init, Op, WANTED_FLAGS } from '../../src/fuse/kernel/protocol';
import { KernelSession } from '../../src/fuse/kernel/session';
import type { SessionOptions } from '../../src/fuse/kernel/session';
import { cstr, pack, request, unpack } from '../helpers/fuse-wire';
import { MemFs } from '../helpers/memfs';

const E = constants.errno;
const FD = 1000;

/** The kernel's side of a session: requests in, replies out, all synchronous. */
class FakeDev implements Dev {
  readonly queue: Buffer[] = [];
  readonly replies: Buffer[] = [];
  readonly notes: Buffer[] = [];
  /** Answers a reply write with -errno instead of taking it (the kernel gave up on the request). */
  failReply?: (reply: Buffer) => number | undefined;
  notifyResult = 40;
  readResult?: number;
  closed: number[] = [];
  pollStops = 0;
  /** The busy-poll window the session asked for, and how often it reopened it (pollSpin). */
  spinUs?: number;
  spins = 0;
  private cb?: (status: number, events: number) => void;

  read(fd: number, buf: Buffer): number {
    if (this.readResult !== undefined) return this.readResult;
    const m = this.queue.shift();
    if (!m) return -E.EAGAIN;
    m.copy(buf);
    return m.length;
  }
  write(fd: number, buf: Buffer, len: number, extra?: Buffer, extraLen?: number): number {
    const r = Buffer.concat([buf.subarray(0, len), extra ? extra.subarray(0, extraLen ?? extra.length) : Buffer.alloc(0)]);
    const f = this.failReply?.(r);
    if (f !== undefined) return f;
    this.replies.push(r);
    return r.length;
  }
  close(fd: number): number {
    this.closed.push(fd);
    return 0;
  }
  pollStart(fd: number, cb: (status: number, events: number) => void, spinUs: number): PollHandle {
    this.cb = cb;
    this.spinUs = spinUs;
    return {} as PollHandle;
  }
  pollSpin(): void {
    this.spins++;
  }
  pollStop(): void {
    this.cb = undefined;
    this.pollStops++;
  }
  notifierOpen(): NotifierHandle {
    return {} as NotifierHandle;
  }
  notifierWrite(h: NotifierHandle, buf: Buffer): Promise<number> {
    this.notes.push(Buffer.from(buf));
    return Promise.resolve(this.notifyResult);
  }
  notifierClose(): void {}
  mount(): number {
    throw new Error('not in a unit test');
  }
  umount2(): Promise<number> {
    throw new Error('not in a unit test');
  }
  socketpair(): number {
    throw new Error('not in a unit test');
  }
  recvFd(): number {
    throw new Error('not in a unit test');
  }
  setNonblock(): number {
    throw new Error('not in a unit test');
  }

  /** The kernel queues a message and the poll fires. */
  send(msg: Buffer, status = 0): void {
    this.queue.push(msg);
    this.fire(status);
  }
  fire(status = 0): void {
    this.cb?.(status, 1);
  }
  get polling(): boolean {
    return this.cb !== undefined;
  }
}

/** Lets the fs methods' promises and the replies behind them run. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

interface Reply {
  readonly len: number;
  readonly error: number;
  readonly unique: number;
  readonly body: Buffer;
}

const parse = (r: Buffer): Reply => {
  const h = unpack('out_header', r);
  expect(Number(h.len)).toBe(r.length); // every reply says its own size
  return { len: Number(h.len), error: Number(h.error), unique: Number(h.unique), body: r.subarray(16) };
};

const ALL = 0xffffffff;
const initBody = (minor = 45, flags = ALL, flags2 = 0x7ff, major = 7) => pack('init_in', { major, minor, max_readahead: 131072, flags, flags2 });

class Harness {
  readonly dev = new FakeDev();
  readonly memfs = new MemFs();
  readonly logs: string[] = [];
  readonly session: KernelSession;
  private unique = 2;

  constructor(opts: SessionOptions = {}) {
    this.session = new KernelSession(FD, this.memfs, { log: Logger.create('debug', (l) => this.logs.push(l)), dev: this.dev, ...opts });
    this.session.start();
  }

  /** Sends a request; returns its unique. */
  send(opcode: number, nodeid: number, body: Buffer = Buffer.alloc(0), ext?: Buffer): number {
    const u = this.unique;
    this.unique += 2;
    this.dev.send(request(opcode, u, nodeid, body, ext, { uid: 1000, gid: 100, pid: 42 }));
    return u;
  }

  async init(): Promise<void> {
    this.send(Op.INIT, 0, initBody());
    await this.session.ready;
    this.dev.replies.length = 0;
  }

  /** Sends, lets it run, returns its one reply. */
  async ask(opcode: number, nodeid: number, body?: Buffer, ext?: Buffer): Promise<Reply> {
    const before = this.dev.replies.length;
    const u = this.send(opcode, nodeid, body, ext);
    await settle();
    const mine = this.dev.replies.slice(before).map(parse).filter((r) => r.unique === u);
    expect(mine).toHaveLength(1);
    return mine[0];
  }
}

describe('INIT', () => {
  it('answers 7.min(kernel, 45) with only the wanted flags the kernel offered, then calls fs.init', async () => {
    const h = new Harness();
    h.send(Op.INIT, 0, initBody(46));
    const conn = await h.session.ready;
    const r = parse(h.dev.replies[0]);
    expect(r).toMatchObject({ len: 80, error: 0, unique: 2 });
    const o = unpack('init_out', r.body);
    const want = WANTED_FLAGS.reduce((a, f) => a | Init[f], 0n);
    expect(o.flags | (o.flags2 << 32n)).toBe(want);
    expect(o).toMatchObject({ major: 7n, minor: 45n, max_readahead: 131072n, max_write: 1048576n, time_gran: 1n, max_background: 64n, congestion_threshold: 48n });
    expect(Number(o.max_pages)).toBeGreaterThan(0);
    expect(Number(o.max_pages)).toBeLessThanOrEqual(256);
    expect(h.memfs.conn).toBe(conn);
    expect(conn.flags).toBe(want);
  });

  it('never claims a flag the kernel did not offer; no flags2 without INIT_EXT; an older minor is kept', async () => {
    const h = new Harness();
    const offered = Number(Init.ASYNC_READ | Init.BIG_WRITES | Init.POSIX_ACL | Init.WRITEBACK_CACHE);
    h.send(Op.INIT, 0, initBody(38, offered, 0x7ff));
    await h.session.ready;
    const o = unpack('init_out', parse(h.dev.replies[0]).body);
    expect(o.flags).toBe(Init.ASYNC_READ | Init.BIG_WRITES);
    expect(o.flags2).toBe(0n);
    expect(o.minor).toBe(38n);
  });

  it('leaves out what the options disable', async () => {
    const h = new Harness({ disable: ['DO_READDIRPLUS', 'READDIRPLUS_AUTO'] });
    h.send(Op.INIT, 0, initBody());
    const conn = await h.session.ready;
    expect(conn.flags & (Init.DO_READDIRPLUS | Init.READDIRPLUS_AUTO)).toBe(0n);
    expect(conn.flags & Init.ASYNC_READ).toBe(Init.ASYNC_READ);
  });

  it('a kernel older than 7.23: EPROTO, and the session ends', async () => {
    const h = new Harness();
    h.send(Op.INIT, 0, initBody(22));
    await expect(h.session.ready).rejects.toThrow(/older than 7.23/);
    expect(parse(h.dev.replies[0])).toMatchObject({ len: 16, error: -E.EPROTO });
    expect(await h.session.closed).toMatch(/7.22 is older/);
    expect(h.memfs.destroyed).toBe(1);
    expect(h.dev.closed).toEqual([FD]);
  });

  it('a newer major: says 7.45 in 8 bytes and waits for the next INIT', async () => {
    const h = new Harness();
    h.send(Op.INIT, 0, initBody(0, ALL, 0, 8));
    const r = parse(h.dev.replies[0]);
    expect(r.len).toBe(24);
    expect([r.body.readUInt32LE(0), r.body.readUInt32LE(4)]).toEqual([7, 45]);
    expect(h.session.dump().state).toBe('waiting for INIT');
    h.send(Op.INIT, 0, initBody());
    await expect(h.session.ready).resolves.toBeDefined();
  });

  it('max_write as configured, within bounds; the read buffer holds it and its headers', async () => {
    expect(() => new KernelSession(FD, new MemFs(), { dev: new FakeDev(), maxWrite: 100 })).toThrow(RangeError);
    expect(() => new KernelSession(FD, new MemFs(), { dev: new FakeDev(), maxWrite: 64 << 20 })).toThrow(RangeError);
    const h = new Harness({ maxWrite: 128 << 10, maxPages: 8 });
    h.send(Op.INIT, 0, initBody());
    const conn = await h.session.ready;
    const o = unpack('init_out', parse(h.dev.replies[0]).body);
    expect([o.max_write, o.max_pages]).toEqual([131072n, 8n]);
    expect(conn).toMatchObject({ maxWrite: 32768, maxRead: 32768 }); // 8 pages per request
  });

  it('a request before INIT is EIO', async () => {
    const h = new Harness();
    const u = h.send(Op.GETATTR, 1, pack('getattr_in', {}));
    await settle();
    expect(parse(h.dev.replies[0])).toMatchObject({ unique: u, error: -E.EIO, len: 16 });
  });
});

describe('replies', () => {
  let h: Harness;
  beforeEach(async () => {
    h = new Harness();
    await h.init();
  });

  it('each has the exact size of its op', async () => {
    const c = await h.ask(Op.CREATE, 1, Buffer.concat([pack('create_in', { flags: 0o102, mode: 0o100644, umask: 0o22 }), cstr('f')]));
    expect(c).toMatchObject({ error: 0, len: 16 + 144 });
    const created = unpack('entry_out', c.body);
    const fh = unpack('open_out', c.body, 128).fh;
    expect(created.nodeid).toBeGreaterThan(1n);
    expect(created['attr.mode']).toBe(0o100644n);
    const nodeid = Number(created.nodeid);
    expect((await h.ask(Op.LOOKUP, 1, cstr('f'))).len).toBe(16 + 128);
    expect((await h.ask(Op.GETATTR, nodeid, pack('getattr_in', {}))).len).toBe(16 + 104);
    expect((await h.ask(Op.SETATTR, nodeid, pack('setattr_in', { valid: 1, mode: 0o600 }))).len).toBe(16 + 104);
    const w = await h.ask(Op.WRITE, nodeid, Buffer.concat([pack('write_in', { fh, offset: 0, size: 5 }), Buffer.from('hello')]));
    expect(w.len).toBe(16 + 8);
    expect(unpack('write_out', w.body).size).toBe(5n);
    const r = await h.ask(Op.READ, nodeid, pack('read_in', { fh, offset: 1, size: 100 }));
    expect(r.body.toString()).toBe('ello');
    expect((await h.ask(Op.STATFS, 1)).len).toBe(16 + 80);
    expect((await h.ask(Op.OPEN, nodeid, pack('open_in', { flags: 0 }))).len).toBe(16 + 16);
    expect((await h.ask(Op.FLUSH, nodeid, pack('flush_in', { fh }))).len).toBe(16);
    expect((await h.ask(Op.LSEEK, nodeid, pack('lseek_in', { fh, offset: 0, whence: 3 }))).len).toBe(16 + 8);
    expect((await h.ask(Op.COPY_FILE_RANGE_64, nodeid, pack('copy_file_range_in', { fh_in: fh, nodeid_out: nodeid, fh_out: fh, off_out: 10, len: 5 }))).len).toBe(16 + 8);
    expect((await h.ask(Op.GETLK, nodeid, pack('lk_in', { fh, 'lk.type': 1, 'lk.end': 10 }))).len).toBe(16 + 24);
    expect((await h.ask(Op.RELEASE, nodeid, pack('release_in', { fh }))).len).toBe(16);
  });

  it('an error is header-only with -errno', async () => {
    expect(await h.ask(Op.LOOKUP, 1, cstr('missing'))).toEqual({ len: 16, error: -E.ENOENT, unique: expect.any(Number), body: Buffer.alloc(0) });
  });

  it('a rejection that is not a FopError: EIO, logged with its stack and the op', async () => {
    h.memfs.bugName = 'bug';
    expect((await h.ask(Op.LOOKUP, 1, cstr('bug'))).error).toBe(-E.EIO);
    const line = h.logs.find((l) => l.includes('not a FopError'));
    expect(line).toMatch(/LOOKUP \d+ \(nodeid 1\)/);
    expect(line).toContain('at MemFs.lookup');
  });

  it('ops it does not serve: ENOSYS (IOCTL, POLL, BMAP, SYNCFS, TMPFILE, STATX, unknown)', async () => {
    for (const op of [Op.IOCTL, Op.POLL, Op.BMAP, Op.SYNCFS, Op.TMPFILE, Op.STATX, 999]) {
      expect(await h.ask(op, 1, Buffer.alloc(32))).toMatchObject({ len: 16, error: -E.ENOSYS });
    }
  });

  it('FORGET, BATCH_FORGET, NOTIFY_REPLY and a stray INTERRUPT get no reply', async () => {
    h.memfs.addFile('', 'x', Buffer.alloc(0));
    const id = Number(unpack('entry_out', (await h.ask(Op.LOOKUP, 1, cstr('x'))).body).nodeid);
    await h.ask(Op.LOOKUP, 1, cstr('x'));
    expect(h.memfs.nodes.get(id)!.lookups).toBe(2);
    const before = h.dev.replies.length;
    h.send(Op.FORGET, id, pack('forget_in', { nlookup: 1 }));
    h.send(Op.BATCH_FORGET, 0, Buffer.concat([pack('batch_forget_in', { count: 1 }), pack('forget_one', { nodeid: id, nlookup: 1 })]));
    h.send(Op.NOTIFY_REPLY, 0, Buffer.alloc(40));
    h.send(Op.INTERRUPT, 0, pack('interrupt_in', { unique: 12345 }));
    const u = h.send(Op.GETATTR, 1, pack('getattr_in', {}));
    await settle();
    expect(h.dev.replies.slice(before).map((r) => parse(r).unique)).toEqual([u]);
    expect(h.memfs.nodes.get(id)!.lookups).toBe(0);
  });

  it('xattrs: a probe gets getxattr_out, a small buffer ERANGE, a big enough one the value', async () => {
    h.memfs.addFile('', 'x', Buffer.alloc(0));
    const id = h.memfs.find('x')!.id;
    expect((await h.ask(Op.SETXATTR, id, Buffer.concat([pack('setxattr_in', { size: 5 }), cstr('user.k'), Buffer.from('value')]))).error).toBe(0);
    const get = (size: number) => h.ask(Op.GETXATTR, id, Buffer.concat([pack('getxattr_in', { size }), cstr('user.k')]));
    const probe = await get(0);
    expect(probe.len).toBe(24);
    expect(unpack('getxattr_out', probe.body).size).toBe(5n);
    expect((await get(4)).error).toBe(-E.ERANGE);
    expect((await get(5)).body.toString()).toBe('value');
    expect((await get(64)).body.toString()).toBe('value');
    const list = (size: number) => h.ask(Op.LISTXATTR, id, pack('getxattr_in', { size }));
    expect(unpack('getxattr_out', (await list(0)).body).size).toBe(7n);
    expect((await list(6)).error).toBe(-E.ERANGE);
    expect((await list(7)).body.toString('latin1')).toBe('user.k\0');
  });

  it('READ past MAX_OFFSET is EOF without asking the fs; data beyond the size asked is not sent', async () => {
    h.memfs.addFile('', 'x', Buffer.from('0123456789'));
    const id = h.memfs.find('x')!.id;
    const fh = unpack('open_out', (await h.ask(Op.OPEN, id, pack('open_in', {}))).body).fh;
    const read = jest.spyOn(h.memfs, 'read');
    expect(await h.ask(Op.READ, id, pack('read_in', { fh, offset: 2n ** 53n, size: 4096 }))).toMatchObject({ len: 16, error: 0 });
    expect(read).not.toHaveBeenCalled();
    read.mockResolvedValueOnce(Buffer.from('more than asked'));
    expect((await h.ask(Op.READ, id, pack('read_in', { fh, offset: 0, size: 4 }))).body.toString()).toBe('more');
  });

  it('a WRITE past MAX_OFFSET is EFBIG, a lock starting past it EINVAL, an LSEEK ENXIO', async () => {
    h.memfs.addFile('', 'x', Buffer.alloc(0));
    const id = h.memfs.find('x')!.id;
    const fh = unpack('open_out', (await h.ask(Op.OPEN, id, pack('open_in', { flags: 2 }))).body).fh;
    expect((await h.ask(Op.WRITE, id, Buffer.concat([pack('write_in', { fh, offset: BigInt(MAX_OFFSET), size: 1 }), Buffer.from('x')]))).error).toBe(-E.EFBIG);
    expect((await h.ask(Op.SETLK, id, pack('lk_in', { fh, 'lk.start': 2n ** 60n, 'lk.end': 2n ** 61n, 'lk.type': 1 }))).error).toBe(-E.EINVAL);
    expect((await h.ask(Op.LSEEK, id, pack('lseek_in', { fh, offset: 2n ** 60n, whence: 3 }))).error).toBe(-E.ENXIO);
  });

  it('extension records after the name are not part of it', async () => {
    const ext = Buffer.alloc(16, 0x41);
    const c = await h.ask(Op.MKDIR, 1, Buffer.concat([pack('mkdir_in', { mode: 0o755 }), cstr('dir')]), ext);
    expect(c.error).toBe(0);
    expect(h.memfs.find('dir')).toBeDefined();
  });

  it('the caller of each request reaches the fs', async () => {
    await h.ask(Op.MKDIR, 1, Buffer.concat([pack('mkdir_in', { mode: 0o755 }), cstr('mine')]));
    expect(h.memfs.find('mine')).toMatchObject({ uid: 1000, gid: 100 });
  });
});

describe('the read loop', () => {
  it('one request with a reply per readable event; messages without one do not use up the turn', async () => {
    const h = new Harness();
    await h.init();
    const req = (op: number, nodeid: number, body: Buffer, unique: number) => request(op, unique, nodeid, body);
    h.memfs.addFile('', 'x', Buffer.alloc(0));
    for (let i = 0; i < 3; i++) h.dev.queue.push(req(Op.FORGET, h.memfs.find('x')!.id, pack('forget_in', { nlookup: 0 }), 100 + 2 * i));
    h.dev.queue.push(req(Op.GETATTR, 1, pack('getattr_in', {}), 200), req(Op.GETATTR, 1, pack('getattr_in', {}), 202));
    h.dev.fire();
    await settle();
    expect(h.dev.replies.map((r) => parse(r).unique)).toEqual([200]);
    expect(h.dev.queue).toHaveLength(1); // the next GETATTR waits for the next event
    h.dev.fire();
    await settle();
    expect(h.dev.replies.map((r) => parse(r).unique)).toEqual([200, 202]);
  });
});

describe('busy polling', () => {
  it('the window asked for reaches the poll (none by default); it opens again each time nothing is left in flight', async () => {
    expect(new Harness().dev.spinUs).toBe(0);
    const h = new Harness({ busyPollUs: 250 });
    expect(h.dev.spinUs).toBe(250);
    await h.init();
    const spins = h.dev.spins;
    await h.ask(Op.GETATTR, 1, pack('getattr_in', {}));
    expect(h.dev.spins).toBe(spins + 1);
    // Two in flight: the first answer leaves one, the window opens only after the second.
    const real = h.memfs.statfs.bind(h.memfs);
    const held: (() => void)[] = [];
    h.memfs.statfs = () => new Promise<void>((r) => held.push(r)).then(real);
    const a = h.send(Op.STATFS, 1);
    const b = h.send(Op.STATFS, 1);
    await settle();
    expect(held).toHaveLength(2);
    held.shift()!();
    await settle();
    expect(h.dev.spins).toBe(spins + 1);
    held.shift()!();
    await settle();
    expect(h.dev.replies.map(parse).filter((r) => r.unique === a || r.unique === b)).toHaveLength(2);
    expect(h.dev.spins).toBe(spins + 2);
  });
});

describe('interrupts', () => {
  it('an INTERRUPT runs the listeners of its request; the fs answers it EINTR; a late one is ignored', async () => {
    const h = new Harness();
    await h.init();
    h.memfs.addFile('', 'x', Buffer.alloc(0));
    const id = h.memfs.find('x')!.id;
    const fh = unpack('open_out', (await h.ask(Op.OPEN, id, pack('open_in', { flags: 2 }))).body).fh;
    const lock = (owner: number, wait: boolean) => h.send(wait ? Op.SETLKW : Op.SETLK, id, pack('lk_in', { fh, owner, 'lk.type': 1, 'lk.end': 0x7fffffffffffffffn }));
    lock(1, false);
    await settle();
    const waiting = new Promise((r) => h.memfs.once('lockWait', r));
    const before = h.dev.replies.length;
    const u = lock(2, true);
    await waiting;
    expect(h.session.dump().inFlight).toEqual([{ unique: u, op: 'SETLKW', ageMs: expect.any(Number), interrupted: false }]);
    h.send(Op.INTERRUPT, 0, pack('interrupt_in', { unique: u }));
    await settle();
    expect(h.dev.replies.slice(before).map(parse)).toEqual([{ len: 16, error: -E.EINTR, unique: u, body: Buffer.alloc(0) }]);
    expect(h.memfs.interrupts).toBe(1);
    h.send(Op.INTERRUPT, 0, pack('interrupt_in', { unique: u }));
    await settle();
    expect(h.dev.replies.length).toBe(before + 1);
    expect(h.session.dump().inFlight).toEqual([]);
  });
});

describe('the read buffer lent to a WRITE', () => {
  it('stays untouched while the write runs; the next requests are read into another; it comes back after', async () => {
    const h = new Harness();
    await h.init();
    h.memfs.addFile('', 'x', Buffer.alloc(0));
    const id = h.memfs.find('x')!.id;
    const fh = unpack('open_out', (await h.ask(Op.OPEN, id, pack('open_in', { flags: 2 }))).body).fh;
    let release!: () => void;
    let seen: Buffer | undefined;
    jest.spyOn(h.memfs, 'write').mockImplementationOnce(async (req, nodeid, f, off, data) => {
      seen = data;
      await new Promise<void>((r) => (release = r));
      return data.length;
    });
    const u = h.send(Op.WRITE, id, Buffer.concat([pack('write_in', { fh, size: 6 }), Buffer.from('abcdef')]));
    expect(h.session.dump().readBuffers.lent).toBe(1);
    for (let i = 0; i < 3; i++) await h.ask(Op.LOOKUP, 1, cstr('x'.repeat(200)));
    expect(seen!.toString()).toBe('abcdef');
    expect(seen!.byteOffset).toBe(80);
    release();
    await settle();
    expect(parse(h.dev.replies.at(-1)!)).toMatchObject({ unique: u, error: 0 });
    expect(h.session.dump().readBuffers).toEqual({ lent: 0, free: 1 });
  });
});

describe('replies the kernel never took', () => {
  let h: Harness;
  beforeEach(async () => {
    h = new Harness();
    await h.init();
    h.memfs.addFile('', 'x', Buffer.alloc(0));
    for (let i = 0; i < 3; i++) h.memfs.addFile('d', `e${i}`, Buffer.alloc(0));
  });
  /** From now on every success reply with a body is refused, as for a request the kernel gave up on. */
  const loseReplies = (): void => {
    h.dev.failReply = (r) => (r.readInt32LE(4) === 0 && r.length > 16 ? -E.ENOENT : undefined);
  };

  it('a lost entry reply is forgotten on the kernel’s behalf', async () => {
    loseReplies();
    h.send(Op.LOOKUP, 1, cstr('x'));
    await settle();
    expect(h.memfs.find('x')!.lookups).toBe(0);
    expect(h.session.dump().replyFailures).toBe(1);
    expect(h.logs.some((l) => l.includes('DEBUG') && l.includes('no longer waits'))).toBe(true);
  });

  it('a lost open or create reply releases its handle, and a create forgets its node', async () => {
    const x = h.memfs.find('x')!;
    loseReplies();
    h.send(Op.OPEN, x.id, pack('open_in', {}));
    h.send(Op.CREATE, 1, Buffer.concat([pack('create_in', { flags: 0o102, mode: 0o100644 }), cstr('new')]));
    await settle();
    expect(x.opens).toBe(0);
    expect(h.memfs.find('new')).toMatchObject({ opens: 0, lookups: 0 });
  });

  it('a lost READDIRPLUS reply forgets every entry it carried', async () => {
    const d = h.memfs.find('d')!;
    const fh = unpack('open_out', (await h.ask(Op.OPENDIR, d.id, pack('open_in', {}))).body).fh;
    loseReplies();
    h.send(Op.READDIRPLUS, d.id, pack('read_in', { fh, size: 4096 }));
    await settle();
    for (let i = 0; i < 3; i++) expect(h.memfs.find('d', `e${i}`)!.lookups).toBe(0);
    h.dev.failReply = undefined;
    const r = await h.ask(Op.READDIRPLUS, d.id, pack('read_in', { fh, size: 4096 }));
    expect(r.body.length).toBe(5 * 160);
    for (let i = 0; i < 3; i++) expect(h.memfs.find('d', `e${i}`)!.lookups).toBe(1);
  });
});

describe('the end of a session', () => {
  it('ENODEV from read: unmounted; destroy once, poll stopped, fd closed, in-flight answered', async () => {
    const h = new Harness();
    await h.init();
    h.memfs.gateLookup('slow');
    const u = h.send(Op.LOOKUP, 1, cstr('slow'));
    await settle();
    h.dev.readResult = -E.ENODEV;
    h.dev.send(Buffer.alloc(0));
    expect(await h.session.closed).toBe('unmounted');
    expect(parse(h.dev.replies.at(-1)!)).toMatchObject({ unique: u, error: -E.ECONNABORTED });
    expect(h.memfs.destroyed).toBe(1);
    expect(h.dev.pollStops).toBe(1);
    expect(h.dev.closed).toEqual([FD]);
    h.session.close('again');
    expect(h.memfs.destroyed).toBe(1);
    expect(h.session.dump()).toMatchObject({ state: 'closed', closedReason: 'unmounted', inFlight: [] });
  });

  it('ECONNABORTED: aborted; a poll error with nothing to read: the session ends too', async () => {
    const a = new Harness();
    a.dev.readResult = -E.ECONNABORTED;
    a.dev.send(Buffer.alloc(0));
    expect(await a.session.closed).toBe('aborted');
    const b = new Harness();
    b.dev.send(request(Op.INIT, 2, 0, initBody()), -9);
    expect(await b.session.closed).toBe('poll error -9');
    expect(b.memfs.destroyed).toBe(1);
  });

  it('notifications: written whole, ENOENT is false, other errors reject, none after the end', async () => {
    const h = new Harness();
    await h.init();
    expect(await h.session.notifyInvalEntry(1, Buffer.from('n'))).toBe(true);
    expect(unpack('notify_inval_entry_out', h.dev.notes[0], 16)).toEqual({ parent: 1n, namelen: 1n, flags: 0n });
    h.dev.notifyResult = -E.ENOENT;
    expect(await h.session.notifyDelete(1, 5, Buffer.from('n'))).toBe(false);
    h.dev.notifyResult = -E.EINVAL;
    await expect(h.session.notifyInvalInode(5, 0, 0)).rejects.toMatchObject({ code: 'EINVAL' });
    h.session.close();
    await expect(h.session.notifyInvalInode(5, 0, 0)).rejects.toBeInstanceOf(FopError);
  });
});
