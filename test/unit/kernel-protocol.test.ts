// The FUSE wire codecs against the uapi header's struct layouts (test/helpers/fuse-wire.ts):
// exact sizes, every field at its place, offsets past MAX_OFFSET refused as ext4 would,
// names as raw bytes, readdir packing.
import { FopError } from '../../src/core/errors';
import { LOCK_TO_EOF, MAX_OFFSET } from '../../src/core/types';
import type { Iatt } from '../../src/core/types';
import type { Entry } from '../../src/fuse/kernel/fs';
import * as P from '../../src/fuse/kernel/protocol';
import { cstr, layout, pack, unpack } from '../helpers/fuse-wire';
import type { StructName } from '../helpers/fuse-wire';

const TWO53 = 2n ** 53n;
const BIG = 0x7fffffffffffffffn;

const iatt: Iatt = {
  gfid: '',
  ino: 2 ** 40 + 3,
  mode: 0o100644,
  nlink: 3,
  uid: 1000,
  gid: 4294967294,
  rdev: 0x0801,
  size: 2 ** 50 + 7,
  blksize: 4096,
  blocks: 123456789,
  atime: { sec: 1_700_000_000, nsec: 1 },
  mtime: { sec: -1, nsec: 999_999_999 },
  ctime: { sec: 2 ** 33, nsec: 500 },
};

const entry: Entry = { nodeid: 2 ** 52 + 1, generation: 7, entryMs: 1500, attrMs: 0.25, attr: iatt };

/** Runs `fn`, which must throw a FopError with `code`. */
function refuses(fn: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(FopError);
  expect((thrown as FopError).code).toBe(code);
}

/** A request body at offset 40 of a read buffer, as the session sees it. */
function inBuf(body: Buffer): [Buffer, number, number] {
  const b = Buffer.concat([Buffer.alloc(40, 0xee), body, Buffer.alloc(16, 0xee)]);
  return [b, 40, 40 + body.length];
}

function expectAttr(got: Record<string, bigint>, prefix: string, a: Iatt): void {
  const f = (n: string): bigint => got[`${prefix}${n}`];
  expect(f('ino')).toBe(BigInt(a.ino));
  expect(f('size')).toBe(BigInt(a.size));
  expect(f('blocks')).toBe(BigInt(a.blocks));
  expect(BigInt.asIntN(64, f('atime'))).toBe(BigInt(a.atime.sec));
  expect(BigInt.asIntN(64, f('mtime'))).toBe(BigInt(a.mtime.sec));
  expect(BigInt.asIntN(64, f('ctime'))).toBe(BigInt(a.ctime.sec));
  expect(f('atimensec')).toBe(BigInt(a.atime.nsec));
  expect(f('mtimensec')).toBe(BigInt(a.mtime.nsec));
  expect(f('ctimensec')).toBe(BigInt(a.ctime.nsec));
  expect(f('mode')).toBe(BigInt(a.mode));
  expect(f('nlink')).toBe(BigInt(a.nlink));
  expect(f('uid')).toBe(BigInt(a.uid));
  expect(f('gid')).toBe(BigInt(a.gid));
  expect(f('rdev')).toBe(BigInt(a.rdev));
  expect(f('blksize')).toBe(BigInt(a.blksize));
  expect(f('flags')).toBe(0n);
}

describe('struct sizes', () => {
  it('every size in the table is the uapi layout of that struct', () => {
    for (const [name, size] of Object.entries(P.SIZE)) {
      if (name === 'lk_out') continue; // = file_lock
      expect([name, layout(name as StructName).size]).toEqual([name, size]);
    }
    expect(layout('lk_out').size).toBe(P.SIZE.lk_out);
    expect(layout('in_header').size).toBe(P.IN_HEADER_SIZE);
    expect(layout('out_header').size).toBe(P.OUT_HEADER_SIZE);
  });

  it('matches the sizes the research measured for 7.45', () => {
    expect([P.SIZE.entry_out, P.SIZE.attr, P.SIZE.attr_out, P.SIZE.kstatfs, P.SIZE.init_out, P.SIZE.lk_in, P.SIZE.copy_file_range_in]).toEqual([128, 88, 104, 80, 64, 48, 56]);
    expect(P.OPS.get(P.Op.CREATE)!.out).toBe(144);
  });

  it('the op table names every opcode once, and only no-reply messages have no reply', () => {
    for (const [code, s] of P.OPS) expect(P.Op[s.name]).toBe(code);
    const silent = [...P.OPS.values()].filter((s) => s.out === 'none').map((s) => s.name);
    expect(silent.sort()).toEqual(['BATCH_FORGET', 'FORGET', 'INTERRUPT', 'NOTIFY_REPLY']);
  });
});

describe('headers', () => {
  it('decodes the in header, extension length in bytes', () => {
    const h = pack('in_header', { len: 48, opcode: 35, unique: 2n ** 40n, nodeid: 99, uid: 1000, gid: 100, pid: 4242, total_extlen: 1 });
    const b = Buffer.concat([h, Buffer.alloc(8)]);
    expect(P.decodeInHeader(b, 48)).toEqual({ len: 48, opcode: 35, unique: 2 ** 40, nodeid: 99, uid: 1000, gid: 100, pid: 4242, extLen: 8 });
  });

  it('refuses a header whose length is not what was read', () => {
    const b = pack('in_header', { len: 60, opcode: 1 });
    refuses(() => P.decodeInHeader(b, 40), 'EIO');
    refuses(() => P.decodeInHeader(b, 20), 'EIO');
  });

  it('encodes the out header with a negative errno and a u64 unique', () => {
    const b = Buffer.alloc(16);
    P.encodeOutHeader(b, 16, -34, 2 ** 45 + 2);
    expect(unpack('out_header', b)).toEqual({ len: 16n, error: -34n, unique: 2n ** 45n + 2n });
  });
});

describe('request bodies', () => {
  it('INIT: flags2 counts only when the kernel sets INIT_EXT', () => {
    const ext = Number(P.Init.INIT_EXT);
    const withExt = pack('init_in', { major: 7, minor: 45, max_readahead: 131072, flags: ext | 1, flags2: 0x5fd });
    expect(P.decodeInit(...inBuf(withExt))).toEqual({ major: 7, minor: 45, maxReadahead: 131072, flags: BigInt(ext | 1) | (0x5fdn << 32n) });
    const without = pack('init_in', { major: 7, minor: 45, max_readahead: 4096, flags: 1, flags2: 0x5fd });
    expect(P.decodeInit(...inBuf(without)).flags).toBe(1n);
  });

  it('INIT reply: every field in its place, flags split in two words', () => {
    const b = Buffer.alloc(64, 0xff);
    const flags = P.Init.ASYNC_READ | P.Init.MAX_PAGES | P.Init.INIT_EXT | P.Init.HAS_EXPIRE_ONLY;
    const n = P.encodeInitOut(b, 0, { major: 7, minor: 45, maxReadahead: 131072, flags, maxBackground: 64, congestionThreshold: 48, maxWrite: 1 << 20, timeGran: 1, maxPages: 256 });
    expect(n).toBe(64);
    const o = unpack('init_out', b);
    expect(o).toMatchObject({ major: 7n, minor: 45n, max_readahead: 131072n, max_background: 64n, congestion_threshold: 48n, max_write: 1048576n, time_gran: 1n, max_pages: 256n, map_alignment: 0n, max_stack_depth: 0n, request_timeout: 0n });
    expect(o.flags | (o.flags2 << 32n)).toBe(flags);
    expect(b.subarray(42, 64).every((x) => x === 0)).toBe(true);
  });

  it('FORGET and BATCH_FORGET', () => {
    expect(P.decodeForget(...inBuf(pack('forget_in', { nlookup: 5 })))).toBe(5);
    const body = Buffer.concat([pack('batch_forget_in', { count: 2 }), pack('forget_one', { nodeid: 7, nlookup: 1 }), pack('forget_one', { nodeid: 2 ** 50, nlookup: 3 })]);
    const got: [number, number][] = [];
    P.decodeBatchForget(...inBuf(body), (id, n) => got.push([id, n]));
    expect(got).toEqual([
      [7, 1],
      [2 ** 50, 3],
    ]);
    const short = Buffer.concat([pack('batch_forget_in', { count: 3 }), pack('forget_one', { nodeid: 7, nlookup: 1 })]);
    refuses(() => P.decodeBatchForget(...inBuf(short), () => undefined), 'EIO');
  });

  it('GETATTR: the fh only with GETATTR_FH', () => {
    expect(P.decodeGetattr(...inBuf(pack('getattr_in', { getattr_flags: 1, fh: 77 })))).toBe(77);
    expect(P.decodeGetattr(...inBuf(pack('getattr_in', { getattr_flags: 0, fh: 77 })))).toBeUndefined();
  });

  it('SETATTR: only the valid fields, times signed, *_NOW as now', () => {
    const F = P.FATTR;
    const all = pack('setattr_in', {
      valid: F.MODE | F.UID | F.GID | F.SIZE | F.ATIME | F.MTIME_NOW | F.MTIME | F.FH | F.LOCKOWNER | F.CTIME | F.KILL_SUIDGID,
      fh: 9,
      size: 2n ** 53n - 1n,
      lock_owner: 0xfedcba9876543210n,
      atime: -5,
      atimensec: 7,
      mtime: 100,
      ctime: 2 ** 34,
      ctimensec: 3,
      mode: 0o4755,
      uid: 10,
      gid: 20,
    });
    expect(P.decodeSetattr(...inBuf(all))).toEqual({
      fh: 9,
      size: MAX_OFFSET,
      lockOwner: 0xfedcba9876543210n,
      atime: { sec: -5, nsec: 7 },
      mtime: 'now',
      ctime: { sec: 2 ** 34, nsec: 3 },
      mode: 0o4755,
      uid: 10,
      gid: 20,
      killSuidgid: true,
    });
    expect(P.decodeSetattr(...inBuf(pack('setattr_in', { valid: F.ATIME_NOW, mode: 0o777, uid: 5 })))).toEqual({ atime: 'now' });
  });

  it('names and two-name bodies, with their fixed parts', () => {
    const odd = Buffer.from([0x66, 0xff, 0xfe, 0x80, 0x0a]); // not UTF-8
    expect(P.decodeName(...inBuf(cstr(odd)), 'LOOKUP').equals(odd)).toBe(true);
    expect(P.decodeSymlink(...inBuf(Buffer.concat([cstr('l'), cstr(odd)])))).toEqual({ name: Buffer.from('l'), target: odd });
    expect(P.decodeMknod(...inBuf(Buffer.concat([pack('mknod_in', { mode: 0o10644, rdev: 0x0103, umask: 0o22 }), cstr(odd)])))).toEqual({ mode: 0o10644, rdev: 0x0103, umask: 0o22, name: odd });
    expect(P.decodeMkdir(...inBuf(Buffer.concat([pack('mkdir_in', { mode: 0o755, umask: 0o27 }), cstr('d')])))).toEqual({ mode: 0o755, umask: 0o27, name: Buffer.from('d') });
    expect(P.decodeRename(...inBuf(Buffer.concat([pack('rename_in', { newdir: 12 }), cstr('a'), cstr(odd)])), false)).toEqual({ newParent: 12, name: Buffer.from('a'), newName: odd, flags: 0 });
    expect(P.decodeRename(...inBuf(Buffer.concat([pack('rename2_in', { newdir: 13, flags: 2 }), cstr(odd), cstr('b')])), true)).toEqual({ newParent: 13, name: odd, newName: Buffer.from('b'), flags: 2 });
    expect(P.decodeLink(...inBuf(Buffer.concat([pack('link_in', { oldnodeid: 44 }), cstr('h')])))).toEqual({ oldNodeid: 44, newName: Buffer.from('h') });
    expect(P.decodeCreate(...inBuf(Buffer.concat([pack('create_in', { flags: 0o100101, mode: 0o100644, umask: 0o22 }), cstr(odd)])))).toEqual({ flags: 0o100101, mode: 0o100644, umask: 0o22, name: odd });
  });

  it('a name is a copy: the read buffer may be reused at once', () => {
    const [b, off, end] = inBuf(cstr('abc'));
    const name = P.decodeName(b, off, end, 'LOOKUP');
    b.fill(0x78);
    expect(name.toString()).toBe('abc');
  });

  it('a name without its NUL, or a body shorter than its struct, is EIO', () => {
    refuses(() => P.decodeName(...inBuf(Buffer.from('abc')), 'LOOKUP'), 'EIO');
    refuses(() => P.decodeSymlink(...inBuf(cstr('only-one'))), 'EIO');
    refuses(() => P.decodeRead(...inBuf(Buffer.alloc(39))), 'EIO');
    refuses(() => P.decodeMknod(...inBuf(Buffer.alloc(8))), 'EIO');
  });

  it('OPEN, RELEASE, FLUSH, FSYNC, ACCESS, INTERRUPT', () => {
    expect(P.decodeOpen(...inBuf(pack('open_in', { flags: 0o100001 })))).toBe(0o100001);
    expect(P.decodeRelease(...inBuf(pack('release_in', { fh: 5, flags: 2, release_flags: 2, lock_owner: 0xffffffffffffffffn })))).toEqual({ fh: 5, flags: 2, flockUnlock: true, lockOwner: 0xffffffffffffffffn });
    expect(P.decodeRelease(...inBuf(pack('release_in', { fh: 5, release_flags: 1 }))).flockUnlock).toBe(false);
    expect(P.decodeFlush(...inBuf(pack('flush_in', { fh: 6, lock_owner: 99n })))).toEqual({ fh: 6, lockOwner: 99n });
    expect(P.decodeFsync(...inBuf(pack('fsync_in', { fh: 8, fsync_flags: 1 })))).toEqual({ fh: 8, datasync: true });
    expect(P.decodeAccess(...inBuf(pack('access_in', { mask: 4 })))).toBe(4);
    expect(P.decodeInterrupt(...inBuf(pack('interrupt_in', { unique: 26 })))).toBe(26);
  });

  it('READ and WRITE: the data is a view of the read buffer, the lock owner only when flagged', () => {
    expect(P.decodeRead(...inBuf(pack('read_in', { fh: 3, offset: 2n ** 40n, size: 131072 })))).toEqual({ fh: 3, offset: 2 ** 40, size: 131072 });
    const data = Buffer.from('hello world');
    const [b, off, end] = inBuf(Buffer.concat([pack('write_in', { fh: 4, offset: 10, size: data.length, write_flags: P.FUSE_WRITE_LOCKOWNER, lock_owner: 77n }), data]));
    const w = P.decodeWrite(b, off, end);
    expect(w).toMatchObject({ fh: 4, offset: 10, lockOwner: 77n });
    expect(w.data.equals(data)).toBe(true);
    expect(w.data.buffer).toBe(b.buffer);
    expect(w.data.byteOffset).toBe(b.byteOffset + 80);
    expect(P.decodeWrite(...inBuf(Buffer.concat([pack('write_in', { fh: 4, size: 1 }), Buffer.from('x')]))).lockOwner).toBeUndefined();
    refuses(() => P.decodeWrite(...inBuf(Buffer.concat([pack('write_in', { fh: 4, size: 100 }), Buffer.from('short')]))), 'EIO');
  });

  it('SETXATTR in both forms, GETXATTR, LISTXATTR', () => {
    const value = Buffer.from([0, 1, 2, 0xff]);
    expect(P.decodeSetxattr(...inBuf(Buffer.concat([pack('setxattr_in', { size: 4, flags: 1 }), cstr('user.k'), value])), false)).toEqual({ name: Buffer.from('user.k'), value, flags: 1 });
    expect(P.decodeSetxattr(...inBuf(Buffer.concat([pack('setxattr_in_ext', { size: 4, flags: 2 }), cstr('user.k'), value])), true)).toEqual({ name: Buffer.from('user.k'), value, flags: 2 });
    refuses(() => P.decodeSetxattr(...inBuf(Buffer.concat([pack('setxattr_in', { size: 9 }), cstr('user.k'), value])), false), 'EIO');
    expect(P.decodeGetxattr(...inBuf(Buffer.concat([pack('getxattr_in', { size: 0 }), cstr('user.k')])), true)).toEqual({ size: 0, name: Buffer.from('user.k') });
    expect(P.decodeGetxattr(...inBuf(pack('getxattr_in', { size: 300 })), false)).toEqual({ size: 300 });
  });

  it('locks: F_RDLCK/F_WRLCK/F_UNLCK, flock flag, an end at OFFSET_MAX reaches EOF', () => {
    const lk = (type: number, start: bigint, end: bigint, lk_flags = 0) => inBuf(pack('lk_in', { fh: 2, owner: 0xabcdef0123456789n, 'lk.start': start, 'lk.end': end, 'lk.type': type, 'lk.pid': 321, lk_flags }));
    expect(P.decodeLk(...lk(P.F_RDLCK, 0n, 99n))).toEqual({ fh: 2, owner: 0xabcdef0123456789n, lock: { type: 'read', start: 0, end: 99, pid: 321 }, flock: false });
    expect(P.decodeLk(...lk(P.F_WRLCK, 10n, BIG, P.FUSE_LK_FLOCK))).toEqual({ fh: 2, owner: 0xabcdef0123456789n, lock: { type: 'write', start: 10, end: LOCK_TO_EOF, pid: 321 }, flock: true });
    expect(P.decodeLk(...lk(P.F_UNLCK, 0n, BIG)).lock.type).toBe('unlock');
    refuses(() => P.decodeLk(...lk(7, 0n, 1n)), 'EINVAL');
  });

  it('FALLOCATE, LSEEK, COPY_FILE_RANGE', () => {
    expect(P.decodeFallocate(...inBuf(pack('fallocate_in', { fh: 1, offset: 4096, length: 8192, mode: 3 })))).toEqual({ fh: 1, offset: 4096, length: 8192, mode: 3 });
    expect(P.decodeLseek(...inBuf(pack('lseek_in', { fh: 1, offset: 100, whence: 3 })))).toEqual({ fh: 1, offset: 100, whence: 3 });
    expect(P.decodeCopyFileRange(...inBuf(pack('copy_file_range_in', { fh_in: 1, off_in: 5, nodeid_out: 9, fh_out: 2, off_out: 6, len: 1000, flags: 0 })))).toEqual({
      fhIn: 1,
      offIn: 5,
      nodeOut: 9,
      fhOut: 2,
      offOut: 6,
      length: 1000,
      flags: 0,
    });
  });
});

describe('offsets above MAX_OFFSET', () => {
  const past = TWO53; // MAX_OFFSET + 1
  it('a u64 up to 2^53-1 is exact, above is refused', () => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(TWO53 - 1n);
    expect(P.readU64(b, 0)).toBe(MAX_OFFSET);
    b.writeBigUInt64LE(TWO53);
    expect(P.readU64(b, 0)).toBe(-1);
    b.writeBigUInt64LE(2n ** 64n - 1n);
    expect(P.readU64(b, 0)).toBe(-1);
  });

  it('WRITE at or past the limit: EFBIG; reaching past it: cut short', () => {
    const w = (offset: bigint, n: number) => inBuf(Buffer.concat([pack('write_in', { fh: 1, offset, size: n }), Buffer.alloc(n, 1)]));
    refuses(() => P.decodeWrite(...w(past, 10)), 'EFBIG');
    refuses(() => P.decodeWrite(...w(BIG, 10)), 'EFBIG');
    refuses(() => P.decodeWrite(...w(BigInt(MAX_OFFSET), 10)), 'EFBIG');
    expect(P.decodeWrite(...w(BigInt(MAX_OFFSET - 4), 10)).data.length).toBe(4);
  });

  it('READ past it: EOF (size 0); reaching past it: cut short', () => {
    expect(P.decodeRead(...inBuf(pack('read_in', { fh: 1, offset: past, size: 4096 }))).size).toBe(0);
    expect(P.decodeRead(...inBuf(pack('read_in', { fh: 1, offset: BigInt(MAX_OFFSET - 100), size: 4096 }))).size).toBe(100);
  });

  it('SETATTR size, FALLOCATE: EFBIG', () => {
    refuses(() => P.decodeSetattr(...inBuf(pack('setattr_in', { valid: P.FATTR.SIZE, size: past }))), 'EFBIG');
    refuses(() => P.decodeFallocate(...inBuf(pack('fallocate_in', { fh: 1, offset: past, length: 1 }))), 'EFBIG');
    refuses(() => P.decodeFallocate(...inBuf(pack('fallocate_in', { fh: 1, offset: BigInt(MAX_OFFSET), length: 1 }))), 'EFBIG');
    expect(P.decodeFallocate(...inBuf(pack('fallocate_in', { fh: 1, offset: BigInt(MAX_OFFSET - 1), length: 1 }))).length).toBe(1);
  });

  it('COPY_FILE_RANGE: EFBIG from past the limit, a length reaching past it cut short', () => {
    const c = (off_in: bigint, off_out: bigint, len: bigint) => inBuf(pack('copy_file_range_in', { fh_in: 1, off_in, nodeid_out: 2, fh_out: 3, off_out, len }));
    refuses(() => P.decodeCopyFileRange(...c(past, 0n, 1n)), 'EFBIG');
    refuses(() => P.decodeCopyFileRange(...c(0n, past, 1n)), 'EFBIG');
    expect(P.decodeCopyFileRange(...c(0n, BigInt(MAX_OFFSET - 10), 2n ** 63n - 1n)).length).toBe(10);
    expect(P.decodeCopyFileRange(...c(0n, 0n, 2n ** 63n - 1n)).length).toBe(MAX_OFFSET);
  });

  it('LSEEK: ENXIO', () => {
    refuses(() => P.decodeLseek(...inBuf(pack('lseek_in', { fh: 1, offset: past, whence: 3 }))), 'ENXIO');
  });

  it('a lock starting past it: EINVAL; ending at or past it: to EOF, sent back as OFFSET_MAX', () => {
    const lk = (start: bigint, end: bigint) => inBuf(pack('lk_in', { fh: 1, 'lk.start': start, 'lk.end': end, 'lk.type': P.F_WRLCK }));
    refuses(() => P.decodeLk(...lk(past, BIG)), 'EINVAL');
    expect(P.decodeLk(...lk(0n, BigInt(MAX_OFFSET))).lock.end).toBe(LOCK_TO_EOF);
    expect(P.decodeLk(...lk(0n, past)).lock.end).toBe(LOCK_TO_EOF);
    expect(P.decodeLk(...lk(0n, BigInt(MAX_OFFSET - 1))).lock.end).toBe(MAX_OFFSET - 1);
    const b = Buffer.alloc(24);
    expect(P.encodeLkOut(b, 0, { type: 'write', start: 5, end: LOCK_TO_EOF, pid: 9 })).toBe(24);
    expect(unpack('lk_out', b)).toEqual({ 'lk.start': 5n, 'lk.end': BIG, 'lk.type': 1n, 'lk.pid': 9n });
    P.encodeLkOut(b, 0, { type: 'read', start: 0, end: 100, pid: 0 });
    expect(unpack('lk_out', b)).toEqual({ 'lk.start': 0n, 'lk.end': 100n, 'lk.type': 0n, 'lk.pid': 0n });
    P.encodeLkOut(b, 0, { type: 'unlock', start: 0, end: 0, pid: 0 });
    expect(unpack('lk_out', b)['lk.type']).toBe(2n);
  });
});

describe('reply bodies', () => {
  it('entry_out: validity in seconds + nanoseconds, the attr inside', () => {
    const b = Buffer.alloc(P.SIZE.entry_out + 8, 0xaa);
    expect(P.encodeEntryOut(b, 8, entry)).toBe(128);
    const o = unpack('entry_out', b, 8);
    expect(o).toMatchObject({ nodeid: 2n ** 52n + 1n, generation: 7n, entry_valid: 1n, entry_valid_nsec: 500_000_000n, attr_valid: 0n, attr_valid_nsec: 250_000n });
    expectAttr(o, 'attr.', iatt);
    expect(b.subarray(0, 8).every((x) => x === 0xaa)).toBe(true);
  });

  it('entry_out of nothing (READDIRPLUS without an entry) is all zero', () => {
    const b = Buffer.alloc(128, 0xaa);
    P.encodeEntryOut(b, 0, undefined);
    expect(b.every((x) => x === 0)).toBe(true);
  });

  it('attr_out, open_out, write_out, getxattr_out, lseek_out, copy_file_range_out, kstatfs', () => {
    const b = Buffer.alloc(256, 0xaa);
    expect(P.encodeAttrOut(b, 0, 3000, iatt)).toBe(104);
    const a = unpack('attr_out', b);
    expect([a.attr_valid, a.attr_valid_nsec, a.dummy]).toEqual([3n, 0n, 0n]);
    expectAttr(a, 'attr.', iatt);

    b.fill(0xaa);
    expect(P.encodeOpenOut(b, 0, { fh: 2 ** 33, directIo: true, keepCache: true, cacheDir: true, nonSeekable: true })).toBe(16);
    expect(unpack('open_out', b)).toEqual({ fh: 2n ** 33n, open_flags: 15n, backing_id: 0n });
    P.encodeOpenOut(b, 0, { fh: 1 });
    expect(unpack('open_out', b).open_flags).toBe(0n);

    b.fill(0xaa);
    expect(P.encodeU32Out(b, 0, 1048576)).toBe(P.SIZE.write_out);
    expect(unpack('write_out', b)).toEqual({ size: 1048576n, padding: 0n });
    expect(unpack('getxattr_out', b)).toEqual({ size: 1048576n, padding: 0n });

    expect(P.encodeU64Out(b, 0, 2 ** 50)).toBe(P.SIZE.lseek_out);
    expect(unpack('lseek_out', b).offset).toBe(2n ** 50n);
    expect(unpack('copy_file_range_out', b).bytes_copied).toBe(2n ** 50n);

    b.fill(0xaa);
    expect(P.encodeStatfs(b, 0, { bsize: 4096, frsize: 512, blocks: 2 ** 40, bfree: 5, bavail: 4, files: 1000, ffree: 900, favail: 900, fsid: 1, flag: 0, namemax: 255 })).toBe(80);
    expect(unpack('kstatfs', b)).toMatchObject({ blocks: 2n ** 40n, bfree: 5n, bavail: 4n, files: 1000n, ffree: 900n, bsize: 4096n, namelen: 255n, frsize: 512n, padding: 0n, spare5: 0n });
  });
});

describe('readdir packing', () => {
  const d = (name: Buffer | string, offset: number, ino = 10, type = 0o100000) => ({ name: typeof name === 'string' ? Buffer.from(name) : name, offset, ino, type });

  it('dirents are 24 bytes + name, each padded to 8 with zeros', () => {
    const p = new P.DirPacker(4096, false);
    expect(p.add(d('.', 1, 1, 0o040000))).toBe(true);
    expect(p.add(d('hello', 2, 5))).toBe(true);
    expect(p.add(d('12345678', 3, 6, 0o120000))).toBe(true);
    expect(p.length).toBe(32 + 32 + 32);
    const b = p.buf;
    expect(unpack('dirent', b, 0)).toEqual({ ino: 1n, off: 1n, namelen: 1n, type: 4n });
    expect(b.subarray(24, 25).toString()).toBe('.');
    expect(b.subarray(25, 32).every((x) => x === 0)).toBe(true);
    expect(unpack('dirent', b, 32)).toEqual({ ino: 5n, off: 2n, namelen: 5n, type: 8n });
    expect(b.subarray(56, 61).toString()).toBe('hello');
    expect(b.subarray(61, 64).every((x) => x === 0)).toBe(true);
    expect(unpack('dirent', b, 64)).toEqual({ ino: 6n, off: 3n, namelen: 8n, type: 10n });
  });

  it('direntplus: entry_out then the dirent; only entries with a nodeid other than . and .. count a lookup', () => {
    const p = new P.DirPacker(4096, true);
    p.add(d('.', 1, 1, 0o040000), { ...entry, nodeid: 1 });
    p.add(d('..', 2, 1, 0o040000), { ...entry, nodeid: 1 });
    p.add(d('a', 3, 7), { ...entry, nodeid: 7 });
    p.add(d('gone', 4, 8));
    expect(p.length).toBe(3 * 160 + 160);
    const o = unpack('direntplus', p.buf, 320);
    expect(o['entry_out.nodeid']).toBe(7n);
    expect([o['dirent.ino'], o['dirent.off'], o['dirent.namelen'], o['dirent.type']]).toEqual([7n, 3n, 1n, 8n]);
    expectAttr(o, 'entry_out.attr.', iatt);
    expect(unpack('direntplus', p.buf, 480)['entry_out.nodeid']).toBe(0n);
    expect(p.nodeids).toEqual([7]);
  });

  it('a record that does not fit is refused whole, and nothing after it is written', () => {
    const size = 32 + 39; // room for one 32-byte record and less than a 40-byte one
    const p = new P.DirPacker(size, false);
    expect(p.add(d('abcdefgh', 1))).toBe(true);
    p.buf.fill(0x55, 32);
    expect(p.add(d('abcdefghijklmnop', 2))).toBe(false); // 24 + 16 = 40
    expect(p.length).toBe(32);
    expect(p.buf.subarray(32).every((x) => x === 0x55)).toBe(true);
    expect(p.add(d('x', 3))).toBe(true); // a smaller one still fits
    expect(p.length).toBe(64);
  });

  it('a buffer filled to the last byte', () => {
    const p = new P.DirPacker(P.direntSize(8, true), true);
    expect(p.add(d('12345678', 1), entry)).toBe(true);
    expect(p.length).toBe(p.size);
    expect(p.add(d('x', 2), entry)).toBe(false);
    expect(p.nodeids).toEqual([entry.nodeid]);
  });

  it('names are raw bytes; a name the kernel would refuse is EIO', () => {
    const odd = Buffer.from([0xc3, 0x28, 0xff]);
    const p = new P.DirPacker(4096, false);
    p.add(d(odd, 1));
    expect(p.buf.subarray(24, 27).equals(odd)).toBe(true);
    refuses(() => p.add(d('', 2)), 'EIO');
    refuses(() => p.add(d('a/b', 2)), 'EIO');
    refuses(() => p.add(d(Buffer.alloc(4096, 0x61), 2)), 'EIO');
    expect(p.length).toBe(32);
  });
});

describe('notifications', () => {
  it('INVAL_INODE, INVAL_ENTRY and DELETE: unique 0, the code as error, a NUL after the name', () => {
    const ii = P.encodeNotifyInvalInode(5, -1, 0);
    expect(ii.length).toBe(16 + 24);
    expect(unpack('out_header', ii)).toEqual({ len: 40n, error: 2n, unique: 0n });
    expect(unpack('notify_inval_inode_out', ii, 16)).toEqual({ ino: 5n, off: -1n, len: 0n });

    const name = Buffer.from([0x68, 0xff]);
    const ie = P.encodeNotifyInvalEntry(1, name);
    expect(ie.length).toBe(16 + 16 + 3);
    expect(unpack('out_header', ie)).toEqual({ len: 35n, error: 3n, unique: 0n });
    expect(unpack('notify_inval_entry_out', ie, 16)).toEqual({ parent: 1n, namelen: 2n, flags: 0n });
    expect(ie.subarray(32).equals(Buffer.from([0x68, 0xff, 0]))).toBe(true);

    const de = P.encodeNotifyDelete(1, 9, name);
    expect(de.length).toBe(16 + 24 + 3);
    expect(unpack('out_header', de)).toEqual({ len: 43n, error: 6n, unique: 0n });
    expect(unpack('notify_delete_out', de, 16)).toEqual({ parent: 1n, child: 9n, namelen: 2n, padding: 0n });
    expect(de.subarray(40).equals(Buffer.from([0x68, 0xff, 0]))).toBe(true);
  });
});
