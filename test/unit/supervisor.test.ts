// The pieces of a mount that survives its worker's death, alone: the supervisor's record
// of what the kernel holds, the uniques of requests the kernel sends again, the nodeid and
// handle tables taken over by a new worker, and what a worker does with a request sent
// again (src/fuse/kernel/replay.ts). The whole, with real kills: test/integration/worker-crash.
import { FopError } from '../../src/core/errors';
import type { Entry, KernelFs, Request } from '../../src/fuse/kernel/fs';
import { readUnique, writeUnique } from '../../src/fuse/kernel/protocol';
import { withReplay } from '../../src/fuse/kernel/replay';
import { Logger } from '../../src/core/log';
import { NodeTable } from '../../src/fuse/nodes';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { INTENTS_KEPT, MountRecord, RECORD_FILE_BYTES, RecordEvent, RecordWriter, readRecord } from '../../src/supervisor/record';

const line = (ev: RecordEvent) => JSON.stringify(ev) + '\n';
const G1 = '11111111-1111-4111-8111-111111111111';
const G2 = '22222222-2222-4222-8222-222222222222';

describe('the supervisor record', () => {
  test('nodeids with their lookup counts, handles, the INIT: what a new worker is given', () => {
    const r = new MountRecord();
    expect(r.resume(2)).toBeUndefined(); // no INIT yet: nothing to take over
    r.push(line({ e: 'init', conn: { major: 7, minor: 45, maxWrite: 1 << 20, maxRead: 0, flags: '123' } }));
    r.push(line({ e: 'look', id: 5, gfid: G1 }) + line({ e: 'look', id: 5, gfid: G1 }) + line({ e: 'look', id: 9, gfid: G2 }));
    r.push(line({ e: 'forget', id: 5, n: 1 }) + line({ e: 'forget', id: 9, n: 1 }));
    r.push(line({ e: 'open', h: { fh: 3, gfid: G1, flags: 0o2002, dir: false, openId: 'o1' } }) + line({ e: 'open', h: { fh: 4, gfid: G2, flags: 0, dir: true, openId: 'o2' } }));
    r.push(line({ e: 'close', fh: 4 }));
    expect(r.resume(2)).toEqual({
      conn: { major: 7, minor: 45, maxWrite: 1 << 20, maxRead: 0, flags: '123' },
      nodes: [[5, G1, 1]],
      handles: [{ fh: 3, gfid: G1, flags: 0o2002, dir: false, openId: 'o1' }],
      generation: 2,
      maxNodeid: 9,
      intents: [],
      appends: [],
      locks: [],
    });
  });

  test('lines may arrive in pieces; one cut by the worker dying is dropped and counted', () => {
    const r = new MountRecord();
    const text = line({ e: 'look', id: 2, gfid: G1 }) + line({ e: 'look', id: 3, gfid: G2 });
    r.push(text.slice(0, 10));
    r.push(text.slice(10, -5));
    r.end();
    r.push(line({ e: 'init', conn: { major: 7, minor: 45, maxWrite: 4096, maxRead: 0, flags: '0' } }));
    expect(r.resume(2)!.nodes).toEqual([[2, G1, 1]]);
    expect(r.dump()).toMatchObject({ unreadable: 1 });
  });

  test('locks: each granted request in order; a flush drops the owner\'s POSIX locks on the file, a close its handle\'s', () => {
    const r = new MountRecord();
    r.push(line({ e: 'init', conn: { major: 7, minor: 45, maxWrite: 4096, maxRead: 0, flags: '0' } }));
    const lk = (fh: number, gfid: string, owner: string, flock: boolean, start = 0) => ({ fh, gfid, owner, flock, lock: { type: 'write' as const, start, end: start + 9, pid: 7 } });
    for (const l of [lk(3, G1, 'a', false), lk(3, G1, 'a', false, 100), lk(4, G1, 'b', false), lk(5, G2, 'a', false), lk(6, G1, 'f6', true)]) r.push(line({ e: 'lk', l }));
    r.push(line({ e: 'flush', gfid: G1, owner: 'a' }));
    expect(r.resume(2)!.locks).toEqual([lk(4, G1, 'b', false), lk(5, G2, 'a', false), lk(6, G1, 'f6', true)]);
    r.push(line({ e: 'close', fh: 6 }));
    expect(r.resume(2)!.locks).toEqual([lk(4, G1, 'b', false), lk(5, G2, 'a', false)]);
  });

  test('intents are bounded: the oldest go first', () => {
    const r = new MountRecord();
    r.push(line({ e: 'init', conn: { major: 7, minor: 45, maxWrite: 4096, maxRead: 0, flags: '0' } }));
    for (let u = 1; u <= INTENTS_KEPT + 10; u++) r.push(line({ e: 'intent', u: u * 2, gfid: G1 }));
    const intents = r.resume(2)!.intents;
    expect(intents).toHaveLength(INTENTS_KEPT);
    expect(intents[0][0]).toBe(22);
  });
});

describe('the record on disk (what the supervisor reads once a worker is gone)', () => {
  const CONN = { major: 7, minor: 45, maxWrite: 4096, maxRead: 0, flags: '0' };
  const dirs: string[] = [];
  const tmp = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'xlstack-record-'));
    dirs.push(d);
    return d;
  };
  const files = (d: string) => fs.readdirSync(d).sort();
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  test('written before each reply, read back whole; a line cut by the worker dying is dropped', () => {
    const d = tmp();
    const w = new RecordWriter(d);
    w.write({ e: 'init', conn: CONN });
    w.add({ e: 'look', id: 5, gfid: G1 });
    // Not flushed (no reply left): not on record.
    expect(readRecord(d).resume(2)!.nodes).toEqual([]);
    w.flush();
    fs.appendFileSync(path.join(d, files(d)[0]), '{"e":"look","id":6,"gf');
    const r = readRecord(d);
    expect(r.resume(2)!.nodes).toEqual([[5, G1, 1]]);
    expect(r.dump()).toMatchObject({ unreadable: 1 });
  });

  test('past its size a new file starts with a snapshot and the old one goes; a new worker goes on from a resume', () => {
    const d = tmp();
    const w = new RecordWriter(d);
    w.write({ e: 'init', conn: CONN });
    w.write({ e: 'open', h: { fh: 3, gfid: G1, flags: 2, dir: false, openId: 'o1' } });
    let id = 10;
    while (files(d)[0] === '1.log') {
      w.write({ e: 'look', id, gfid: G2 });
      w.write({ e: 'forget', id: id++, n: 1 });
    }
    expect(files(d)).toEqual(['2.log']);
    expect(fs.statSync(path.join(d, '2.log')).size).toBeLessThan(RECORD_FILE_BYTES / 100);
    w.write({ e: 'look', id: 7, gfid: G2 });
    const resume = readRecord(d).resume(2)!;
    expect(resume.handles.map((h) => h.fh)).toEqual([3]);
    expect(resume.nodes).toEqual([[7, G2, 1]]);
    expect(resume.maxNodeid).toBe(id - 1);

    // The next worker's file begins with what it took over.
    const next = new RecordWriter(d, resume);
    expect(files(d)).toEqual(['3.log']);
    next.write({ e: 'close', fh: 3 });
    expect(readRecord(d).resume(3)).toMatchObject({ handles: [], nodes: [[7, G2, 1]], conn: CONN });
  });

  test('a worker that died while writing a new file\'s snapshot: the older file still counts', () => {
    const d = tmp();
    const w = new RecordWriter(d);
    w.write({ e: 'init', conn: CONN });
    w.write({ e: 'look', id: 4, gfid: G1 });
    fs.writeFileSync(path.join(d, '2.log'), '{"e":"snap","s":{"nodes":[');
    expect(readRecord(d).resume(2)!.nodes).toEqual([[4, G1, 1]]);
  });
});

describe('uniques of requests sent again (FUSE_UNIQUE_RESEND, bit 63)', () => {
  test('read as negative, written back with the bit', () => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE((1n << 63n) | 1234n);
    expect(readUnique(b, 0)).toBe(-1234);
    const out = Buffer.alloc(8);
    writeUnique(out, 0, -1234);
    expect(out.readBigUInt64LE()).toBe((1n << 63n) | 1234n);
    b.writeBigUInt64LE(2n ** 40n + 6n);
    expect(readUnique(b, 0)).toBe(2 ** 40 + 6);
    writeUnique(out, 0, 2 ** 40 + 6);
    expect(out.readBigUInt64LE()).toBe(2n ** 40n + 6n);
  });
});

describe('the tables a new worker takes over', () => {
  test('restored nodeids keep their GFID and lookups; new ones never reuse a number; observers see what the kernel is given', () => {
    const t = new NodeTable();
    t.restore(
      [
        [4, G1, 2],
        [7, G2, 1],
      ],
      12,
    );
    expect(t.get(4)).toMatchObject({ gfid: G1, nlookup: 2 });
    expect(t.withGfid(G2)!.nodeid).toBe(7);
    const seen: string[] = [];
    t.observer = { looked: (id, g) => seen.push(`look ${id} ${g}`), forgot: (id, n) => seen.push(`forget ${id} ${n}`) };
    const fake = { gfid: '33333333-3333-4333-8333-333333333333', ref: () => fake, unref: () => undefined } as never;
    const b = t.remember({ id: 1 } as never, fake);
    expect(b.nodeid).toBe(13);
    t.forget(4, 2);
    expect(() => t.get(4)).toThrow(FopError);
    expect(seen).toEqual([`look 13 33333333-3333-4333-8333-333333333333`, 'forget 4 2']);
  });
});

// --- the replay rules of a worker ---------------------------------------------------------------

const req = (unique: number): Request => ({ unique, uid: 0, gid: 0, pid: 1, interrupted: false, onInterrupt: () => () => undefined });
const entry = (nodeid: number, gfid: string): Entry => ({ nodeid, generation: 0, entryMs: 0, attrMs: 0, attr: { gfid } as never });

/** A filesystem where the name `name` exists (with GFID `gfid`) or not, recording calls. */
function fakeFs(there: Record<string, string>) {
  const calls: string[] = [];
  const fail = (code: string) => Promise.reject(new FopError(code as never));
  const inner = {
    mkdir: (r: Request, _p: number, name: Buffer) => (calls.push(`mkdir ${r.gfid}`), there[name.toString()] ? fail('EEXIST') : Promise.resolve(entry(9, r.gfid!))),
    create: (r: Request, _p: number, name: Buffer) => (calls.push(`create ${r.gfid}`), there[name.toString()] ? fail('EEXIST') : Promise.resolve({ entry: entry(9, r.gfid!), opened: { fh: 1 } })),
    open: (_r: Request, nodeid: number, flags: number) => (calls.push(`open ${nodeid} ${flags}`), Promise.resolve({ fh: 5 })),
    lookup: (_r: Request, _p: number, name: Buffer) => (there[name.toString()] ? Promise.resolve(entry(8, there[name.toString()])) : fail('ENOENT')),
    forget: (id: number, n: number) => calls.push(`forget ${id} ${n}`),
    unlink: (_r: Request, _p: number, name: Buffer) => (calls.push('unlink'), there[name.toString()] ? Promise.resolve() : fail('ENOENT')),
    link: (_r: Request, _n: number, _p: number, name: Buffer) => (there[name.toString()] ? fail('EEXIST') : Promise.resolve(entry(8, G1))),
    getattr: () => Promise.resolve('inner getattr'),
  };
  return { inner: inner as unknown as KernelFs, calls };
}

describe('a request the kernel sends again after a worker died', () => {
  const intents = new Map<number, string>();
  const opts = (gfids: Record<number, string> = {}) => ({
    intend: (u: number, g: string) => intents.set(u, g),
    intended: (u: number) => intents.get(u),
    gfidOf: (n: number) => gfids[n],
    log: Logger.create('error'),
  });

  test('a create-type request writes down its GFID before it is carried out, and uses it', async () => {
    intents.clear();
    const { inner, calls } = fakeFs({});
    const fs = withReplay(inner, opts());
    const e = await fs.mkdir(req(10), 1, Buffer.from('d'), 0o755, 0);
    expect(intents.get(10)).toBe(e.attr.gfid);
    expect(calls).toEqual([`mkdir ${e.attr.gfid}`]);
  });

  test('sent again, it finds its own GFID there: the same mkdir, answered with its entry; another GFID there: EEXIST', async () => {
    intents.clear();
    intents.set(10, G1);
    const { inner, calls } = fakeFs({ d: G1, e: G2 });
    const fs = withReplay(inner, opts());
    expect((await fs.mkdir(req(-10), 1, Buffer.from('d'), 0o755, 0)).attr.gfid).toBe(G1);
    expect(calls).toEqual([`mkdir ${G1}`]);
    expect(fs.replayed()).toBe(1);
    intents.set(12, G1);
    await expect(fs.mkdir(req(-12), 1, Buffer.from('e'), 0o755, 0)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(calls).toContain('forget 8 1');
    // Not sent again: EEXIST is EEXIST, whatever is there.
    intents.set(14, G1);
    await expect(fs.mkdir(req(14), 1, Buffer.from('d'), 0o755, 0)).rejects.toMatchObject({ code: 'EEXIST' });
  });

  test('a create sent again that finds its file opens it without O_CREAT, O_EXCL or O_TRUNC', async () => {
    intents.clear();
    intents.set(20, G2);
    const { inner, calls } = fakeFs({ f: G2 });
    const fs = withReplay(inner, opts());
    const flags = 0o1 | 0o100 | 0o200 | 0o1000; // O_WRONLY|O_CREAT|O_EXCL|O_TRUNC
    const r = await fs.create(req(-20), 1, Buffer.from('f'), 0o644, 0, flags);
    expect(r).toEqual({ entry: entry(8, G2), opened: { fh: 5 } });
    expect(calls).toEqual([`create ${G2}`, 'open 8 1']);
  });

  test('unlink sent again whose name is gone: done; link sent again whose name holds the source: done', async () => {
    const { inner } = fakeFs({ h: G1 });
    const fs = withReplay(inner, opts({ 3: G1 }));
    await expect(fs.unlink(req(-30), 1, Buffer.from('gone'))).resolves.toBeUndefined();
    await expect(fs.unlink(req(30), 1, Buffer.from('gone'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await fs.link(req(-32), 3, 1, Buffer.from('h'))).attr.gfid).toBe(G1);
    await expect(fs.link(req(-34), 4, 1, Buffer.from('h'))).rejects.toMatchObject({ code: 'EEXIST' });
  });

  test('an append writes down the size it saw first; sent again, its bytes found at that size: done, not written twice', async () => {
    const sizes = new Map<number, number>();
    let size = 10;
    const file = Buffer.alloc(64);
    const calls: string[] = [];
    const inner = {
      getattr: () => Promise.resolve({ attrMs: 0, attr: { size } }),
      read: (_r: Request, _n: number, _fh: number, off: number, len: number) => Promise.resolve(file.subarray(off, off + len)),
      write: (_r: Request, _n: number, _fh: number, _off: number, data: Buffer) => (calls.push('write'), data.copy(file, size), (size += data.length), Promise.resolve(data.length)),
    } as unknown as KernelFs;
    const fs = withReplay(inner, { ...opts(), appending: () => true, intendAppend: (u, s) => sizes.set(u, s), appendedAt: (u) => sizes.get(u) });
    expect(await fs.write(req(40), 1, 2, 0, Buffer.from('rec1;'))).toBe(5);
    expect(sizes.get(40)).toBe(10);
    // The worker died after writing, before answering: the kernel sends it again.
    expect(await fs.write(req(-40), 1, 2, 0, Buffer.from('rec1;'))).toBe(5);
    expect(calls).toEqual(['write']);
    expect(size).toBe(15);
    // One that died before writing: written now.
    sizes.set(42, 15);
    expect(await fs.write(req(-42), 1, 2, 0, Buffer.from('rec2;'))).toBe(5);
    expect(calls).toEqual(['write', 'write']);
    expect(file.subarray(10, 20).toString()).toBe('rec1;rec2;');
  });

  test('everything else goes to the filesystem as it is', async () => {
    const { inner } = fakeFs({});
    expect(await (withReplay(inner, opts()).getattr as () => Promise<unknown>)()).toBe('inner getattr');
  });
});
