// The FUSE kernel protocol as this transport speaks it (linux/uapi/fuse.h, protocol 7.45,
// x86-64 layouts): opcodes, INIT flags, and the decode of each request body and encode of
// each reply, all from one table of sizes. A reply of the wrong size makes the kernel fail
// the caller with EIO, so every encoder writes exactly its table size.
//
// u64 offsets and sizes on the wire are refused above MAX_OFFSET (the largest exact JS
// number) with the errno ext4/the VFS give past s_maxbytes: a write or copy starting past it
// EFBIG (one reaching past it is cut short, as generic_write_check_limits does), fallocate
// or a truncate past it EFBIG, a read past it EOF, lseek past it ENXIO, a lock starting past
// it EINVAL, and a lock ending at or past it reaches EOF.
import { constants } from 'os';
import { FopError } from '../../core/errors';
import { LOCK_TO_EOF, MAX_OFFSET, S_IFMT } from '../../core/types';
import type { Flock, Iatt, LockType, Statfs } from '../../core/types';
import type { DirEntryOut, DirSink, Entry, SetattrIn } from './fs';

export const KERNEL_MAJOR = 7;
/** The protocol minor this transport was written against. */
export const KERNEL_MINOR = 45;
/** The oldest kernel minor served: every reply below has had its present size since 7.23. */
export const KERNEL_MINOR_MIN = 23;
export const ROOT_NODEID = 1;
/** The kernel's OFFSET_MAX: a lock to the end of the file, on the wire. */
export const WIRE_OFFSET_MAX = 0x7fffffffffffffffn;

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const FUSE_MIN_READ_BUFFER = 8192;
/** The read buffer libfuse uses, and the brief asks for: room for a WRITE of max_write and its headers. */
export const readBufferSize = (maxWrite: number): number => Math.max(FUSE_MIN_READ_BUFFER, maxWrite + 4096);

// ---- opcodes ---------------------------------------------------------------------------

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
  STATX: 52,
  COPY_FILE_RANGE_64: 53,
} as const;
export type OpName = keyof typeof Op;

// ---- the size table ----------------------------------------------------------------------

/** Body sizes of the structs this transport reads and writes (x86-64, protocol 7.45). */
export const SIZE = {
  attr: 88,
  entry_out: 128,
  attr_out: 104,
  open_out: 16,
  write_out: 8,
  kstatfs: 80,
  getxattr_out: 8,
  file_lock: 24,
  lk_out: 24,
  lseek_out: 8,
  copy_file_range_out: 8,
  init_in: 64,
  init_out: 64,
  forget_in: 8,
  forget_one: 16,
  batch_forget_in: 8,
  getattr_in: 16,
  setattr_in: 88,
  mknod_in: 16,
  mkdir_in: 8,
  rename_in: 8,
  rename2_in: 16,
  link_in: 8,
  open_in: 8,
  create_in: 16,
  read_in: 40,
  write_in: 40,
  release_in: 24,
  flush_in: 24,
  fsync_in: 16,
  setxattr_in: 8,
  setxattr_in_ext: 16,
  getxattr_in: 8,
  lk_in: 48,
  access_in: 8,
  interrupt_in: 8,
  fallocate_in: 32,
  lseek_in: 24,
  copy_file_range_in: 56,
  dirent: 24,
  direntplus: 152,
  notify_inval_inode_out: 24,
  notify_inval_entry_out: 16,
  notify_delete_out: 24,
} as const;

/**
 * What each opcode carries: the fixed part of its request body, and its reply:
 * a body of exactly `out` bytes (0: header only), 'data' (variable, at most what was asked),
 * or 'none' (the kernel wants no reply; answering one gets ENOENT).
 */
export interface OpSpec {
  readonly name: OpName;
  readonly in: number;
  readonly out: number | 'data' | 'none';
}

const spec = (name: OpName, inSize: number, out: OpSpec['out']): OpSpec => ({ name, in: inSize, out });

export const OPS: ReadonlyMap<number, OpSpec> = new Map<number, OpSpec>(
  [
    spec('LOOKUP', 0, SIZE.entry_out),
    spec('FORGET', SIZE.forget_in, 'none'),
    spec('GETATTR', SIZE.getattr_in, SIZE.attr_out),
    spec('SETATTR', SIZE.setattr_in, SIZE.attr_out),
    spec('READLINK', 0, 'data'),
    spec('SYMLINK', 0, SIZE.entry_out),
    spec('MKNOD', SIZE.mknod_in, SIZE.entry_out),
    spec('MKDIR', SIZE.mkdir_in, SIZE.entry_out),
    spec('UNLINK', 0, 0),
    spec('RMDIR', 0, 0),
    spec('RENAME', SIZE.rename_in, 0),
    spec('LINK', SIZE.link_in, SIZE.entry_out),
    spec('OPEN', SIZE.open_in, SIZE.open_out),
    spec('READ', SIZE.read_in, 'data'),
    spec('WRITE', SIZE.write_in, SIZE.write_out),
    spec('STATFS', 0, SIZE.kstatfs),
    spec('RELEASE', SIZE.release_in, 0),
    spec('FSYNC', SIZE.fsync_in, 0),
    spec('SETXATTR', SIZE.setxattr_in, 0),
    // GETXATTR/LISTXATTR: getxattr_out for a size probe, else the data.
    spec('GETXATTR', SIZE.getxattr_in, 'data'),
    spec('LISTXATTR', SIZE.getxattr_in, 'data'),
    spec('REMOVEXATTR', 0, 0),
    spec('FLUSH', SIZE.flush_in, 0),
    spec('INIT', SIZE.init_in, SIZE.init_out),
    spec('OPENDIR', SIZE.open_in, SIZE.open_out),
    spec('READDIR', SIZE.read_in, 'data'),
    spec('RELEASEDIR', SIZE.release_in, 0),
    spec('FSYNCDIR', SIZE.fsync_in, 0),
    spec('GETLK', SIZE.lk_in, SIZE.lk_out),
    spec('SETLK', SIZE.lk_in, 0),
    spec('SETLKW', SIZE.lk_in, 0),
    spec('ACCESS', SIZE.access_in, 0),
    spec('CREATE', SIZE.create_in, SIZE.entry_out + SIZE.open_out),
    spec('INTERRUPT', SIZE.interrupt_in, 'none'),
    spec('BMAP', 0, 'data'),
    spec('DESTROY', 0, 0),
    spec('IOCTL', 0, 'data'),
    spec('POLL', 0, 'data'),
    spec('NOTIFY_REPLY', 0, 'none'),
    spec('BATCH_FORGET', SIZE.batch_forget_in, 'none'),
    spec('FALLOCATE', SIZE.fallocate_in, 0),
    spec('READDIRPLUS', SIZE.read_in, 'data'),
    spec('RENAME2', SIZE.rename2_in, 0),
    spec('LSEEK', SIZE.lseek_in, SIZE.lseek_out),
    spec('COPY_FILE_RANGE', SIZE.copy_file_range_in, SIZE.write_out),
    spec('SETUPMAPPING', 0, 'data'),
    spec('REMOVEMAPPING', 0, 'data'),
    spec('SYNCFS', 0, 0),
    spec('TMPFILE', 0, 'data'),
    spec('STATX', 0, 'data'),
    spec('COPY_FILE_RANGE_64', SIZE.copy_file_range_in, SIZE.copy_file_range_out),
  ].map((s) => [Op[s.name], s]),
);

export const opName = (opcode: number): string => OPS.get(opcode)?.name ?? `OP_${opcode}`;

// ---- INIT flags (flags | flags2 << 32) ---------------------------------------------------

export const Init = {
  ASYNC_READ: 1n << 0n,
  POSIX_LOCKS: 1n << 1n,
  FILE_OPS: 1n << 2n,
  ATOMIC_O_TRUNC: 1n << 3n,
  EXPORT_SUPPORT: 1n << 4n,
  BIG_WRITES: 1n << 5n,
  DONT_MASK: 1n << 6n,
  SPLICE_WRITE: 1n << 7n,
  SPLICE_MOVE: 1n << 8n,
  SPLICE_READ: 1n << 9n,
  FLOCK_LOCKS: 1n << 10n,
  HAS_IOCTL_DIR: 1n << 11n,
  AUTO_INVAL_DATA: 1n << 12n,
  DO_READDIRPLUS: 1n << 13n,
  READDIRPLUS_AUTO: 1n << 14n,
  ASYNC_DIO: 1n << 15n,
  WRITEBACK_CACHE: 1n << 16n,
  NO_OPEN_SUPPORT: 1n << 17n,
  PARALLEL_DIROPS: 1n << 18n,
  HANDLE_KILLPRIV: 1n << 19n,
  POSIX_ACL: 1n << 20n,
  ABORT_ERROR: 1n << 21n,
  MAX_PAGES: 1n << 22n,
  CACHE_SYMLINKS: 1n << 23n,
  NO_OPENDIR_SUPPORT: 1n << 24n,
  EXPLICIT_INVAL_DATA: 1n << 25n,
  MAP_ALIGNMENT: 1n << 26n,
  SUBMOUNTS: 1n << 27n,
  HANDLE_KILLPRIV_V2: 1n << 28n,
  SETXATTR_EXT: 1n << 29n,
  INIT_EXT: 1n << 30n,
  INIT_RESERVED: 1n << 31n,
  SECURITY_CTX: 1n << 32n,
  HAS_INODE_DAX: 1n << 33n,
  CREATE_SUPP_GROUP: 1n << 34n,
  HAS_EXPIRE_ONLY: 1n << 35n,
  DIRECT_IO_ALLOW_MMAP: 1n << 36n,
  PASSTHROUGH: 1n << 37n,
  NO_EXPORT_SUPPORT: 1n << 38n,
  HAS_RESEND: 1n << 39n,
  ALLOW_IDMAP: 1n << 40n,
  OVER_IO_URING: 1n << 41n,
  REQUEST_TIMEOUT: 1n << 42n,
} as const;
export type InitFlag = keyof typeof Init;

/** The flags this transport implements; anything else (writeback cache, ACLs, umask, killpriv, security contexts) changes semantics it does not. */
export const WANTED_FLAGS: readonly InitFlag[] = [
  'ASYNC_READ',
  'POSIX_LOCKS',
  'ATOMIC_O_TRUNC',
  'EXPORT_SUPPORT',
  'BIG_WRITES',
  'FLOCK_LOCKS',
  'AUTO_INVAL_DATA',
  'DO_READDIRPLUS',
  'READDIRPLUS_AUTO',
  'ASYNC_DIO',
  'PARALLEL_DIROPS',
  'MAX_PAGES',
  'INIT_EXT',
  // O_APPEND handles are uncached (FOPEN_DIRECT_IO, so each write(2) reaches the graph
  // whole): a shared mmap of one must still work.
  'DIRECT_IO_ALLOW_MMAP',
];

export const flagNames = (flags: bigint): InitFlag[] => (Object.keys(Init) as InitFlag[]).filter((k) => (flags & Init[k]) !== 0n);

// Other bits.
export const FATTR = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_NONSEEKABLE = 1 << 2;
export const FOPEN_CACHE_DIR = 1 << 3;
export const FUSE_GETATTR_FH = 1 << 0;
export const FUSE_WRITE_LOCKOWNER = 1 << 1;
export const FUSE_RELEASE_FLOCK_UNLOCK = 1 << 1;
export const FUSE_FSYNC_FDATASYNC = 1 << 0;
export const FUSE_LK_FLOCK = 1 << 0;
export const F_RDLCK = 0;
export const F_WRLCK = 1;
export const F_UNLCK = 2;

export const Notify = { POLL: 1, INVAL_INODE: 2, INVAL_ENTRY: 3, STORE: 4, RETRIEVE: 5, DELETE: 6 } as const;

// ---- primitive fields ------------------------------------------------------------------

const TWO32 = 4294967296;
/** The largest high word of a u64 that is still <= MAX_OFFSET. */
const MAX_HI = Math.floor(MAX_OFFSET / TWO32);

/** A u64 as a number, or -1 if it is above MAX_OFFSET. */
export function readU64(b: Buffer, off: number): number {
  const hi = b.readUInt32LE(off + 4);
  return hi > MAX_HI ? -1 : hi * TWO32 + b.readUInt32LE(off);
}

/**
 * A request's unique. After FUSE_NOTIFY_RESEND the kernel sends the requests a dead server
 * read again with bit 63 set (FUSE_UNIQUE_RESEND), and expects it back in the reply: such a
 * unique is represented as the negative of the rest (see writeUnique).
 */
export function readUnique(b: Buffer, off: number): number {
  const hi = b.readUInt32LE(off + 4);
  const resent = hi >= 0x80000000;
  const rest = (hi & 0x7fffffff) * TWO32 + b.readUInt32LE(off);
  if (!Number.isSafeInteger(rest)) throw new FopError('EIO', 'unique above 2^53');
  return resent ? -rest : rest;
}

export function writeUnique(b: Buffer, off: number, unique: number): void {
  if (unique >= 0) return writeU64(b, off, unique);
  writeU64(b, off, -unique);
  b.writeUInt32LE((b.readUInt32LE(off + 4) | 0x80000000) >>> 0, off + 4);
}

/** A u64 the kernel echoes from us (nodeid, fh): ours are all <= MAX_OFFSET. */
function readId(b: Buffer, off: number, what: string): number {
  const v = readU64(b, off);
  if (v < 0) throw new FopError('EIO', `${what} above 2^53`);
  return v;
}

function readI64(b: Buffer, off: number): number {
  return b.readInt32LE(off + 4) * TWO32 + b.readUInt32LE(off);
}

export function writeU64(b: Buffer, off: number, v: number): void {
  if (v < TWO32) {
    b.writeUInt32LE(v, off);
    b.writeUInt32LE(0, off + 4);
    return;
  }
  const lo = v % TWO32;
  b.writeUInt32LE(lo, off);
  b.writeUInt32LE((v - lo) / TWO32, off + 4);
}

function writeI64(b: Buffer, off: number, v: number): void {
  if (v >= 0) writeU64(b, off, v);
  else b.writeBigInt64LE(BigInt(v), off);
}

function need(end: number, off: number, size: number, what: string): void {
  if (end - off < size) throw new FopError('EIO', `${what}: body of ${end - off} bytes, want ${size}`);
}

/** A NUL-terminated name from [off, end), copied; returns it and where the next field starts. */
function readName(b: Buffer, off: number, end: number, what: string): [Buffer, number] {
  const nul = b.indexOf(0, off);
  if (nul < 0 || nul >= end) throw new FopError('EIO', `${what}: name without NUL`);
  const name = Buffer.allocUnsafe(nul - off);
  b.copy(name, 0, off, nul);
  return [name, nul + 1];
}

/** A validity in milliseconds as the kernel's u64 seconds at `off` and u32 nanoseconds at `nsecOff`. */
function writeValidity(b: Buffer, off: number, nsecOff: number, ms: number): void {
  if (!(ms > 0)) {
    writeU64(b, off, 0);
    b.writeUInt32LE(0, nsecOff);
    return;
  }
  const sec = Math.floor(ms / 1000);
  writeU64(b, off, sec);
  b.writeUInt32LE(Math.min(999_999_999, Math.round((ms - sec * 1000) * 1e6)), nsecOff);
}

// ---- headers -----------------------------------------------------------------------------

export interface InHeader {
  readonly len: number;
  readonly opcode: number;
  readonly unique: number;
  readonly nodeid: number;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** Bytes of extension records at the end of the message (total_extlen is in 8-byte units). */
  readonly extLen: number;
}

export function decodeInHeader(b: Buffer, n: number): InHeader {
  if (n < IN_HEADER_SIZE) throw new FopError('EIO', `request of ${n} bytes, shorter than its header`);
  const len = b.readUInt32LE(0);
  if (len !== n) throw new FopError('EIO', `request header says ${len} bytes, read ${n}`);
  return {
    len,
    opcode: b.readUInt32LE(4),
    unique: readUnique(b, 8),
    nodeid: readId(b, 16, 'nodeid'),
    uid: b.readUInt32LE(24),
    gid: b.readUInt32LE(28),
    pid: b.readUInt32LE(32),
    extLen: b.readUInt16LE(36) * 8,
  };
}

/** Writes a reply header; `error` is 0 or -errno. */
export function encodeOutHeader(b: Buffer, len: number, error: number, unique: number): void {
  b.writeUInt32LE(len, 0);
  b.writeInt32LE(error, 4);
  writeUnique(b, 8, unique);
}

// ---- request bodies ----------------------------------------------------------------------
// Each decoder reads [off, end) of the read buffer; end excludes extension records.

export interface InitIn {
  readonly major: number;
  readonly minor: number;
  readonly maxReadahead: number;
  /** flags | flags2 << 32 (flags2 only when the kernel sets INIT_EXT). */
  readonly flags: bigint;
}

export function decodeInit(b: Buffer, off: number, end: number): InitIn {
  need(end, off, 8, 'INIT');
  const major = b.readUInt32LE(off);
  const minor = b.readUInt32LE(off + 4);
  // Kernels before 7.6 sent 8 bytes, before 7.36 sent 16 (no flags2).
  const maxReadahead = end - off >= 16 ? b.readUInt32LE(off + 8) : 0;
  let flags = end - off >= 16 ? BigInt(b.readUInt32LE(off + 12)) : 0n;
  if (end - off >= 20 && (flags & Init.INIT_EXT) !== 0n) flags |= BigInt(b.readUInt32LE(off + 16)) << 32n;
  return { major, minor, maxReadahead, flags };
}

export interface InitOut {
  readonly major: number;
  readonly minor: number;
  readonly maxReadahead: number;
  readonly flags: bigint;
  readonly maxBackground: number;
  readonly congestionThreshold: number;
  readonly maxWrite: number;
  readonly timeGran: number;
  readonly maxPages: number;
}

export function encodeInitOut(b: Buffer, off: number, o: InitOut): number {
  b.fill(0, off, off + SIZE.init_out);
  b.writeUInt32LE(o.major, off);
  b.writeUInt32LE(o.minor, off + 4);
  b.writeUInt32LE(o.maxReadahead, off + 8);
  b.writeUInt32LE(Number(o.flags & 0xffffffffn), off + 12);
  b.writeUInt16LE(o.maxBackground, off + 16);
  b.writeUInt16LE(o.congestionThreshold, off + 18);
  b.writeUInt32LE(o.maxWrite, off + 20);
  b.writeUInt32LE(o.timeGran, off + 24);
  b.writeUInt16LE(o.maxPages, off + 28);
  // map_alignment (30) stays 0
  b.writeUInt32LE(Number((o.flags >> 32n) & 0xffffffffn), off + 32);
  // max_stack_depth (36), request_timeout (40) and the rest stay 0
  return SIZE.init_out;
}

export const decodeForget = (b: Buffer, off: number, end: number): number => {
  need(end, off, SIZE.forget_in, 'FORGET');
  return readId(b, off, 'nlookup');
};

/** BATCH_FORGET: calls `each(nodeid, nlookup)` per item. */
export function decodeBatchForget(b: Buffer, off: number, end: number, each: (nodeid: number, nlookup: number) => void): void {
  need(end, off, SIZE.batch_forget_in, 'BATCH_FORGET');
  const count = b.readUInt32LE(off);
  need(end, off + SIZE.batch_forget_in, count * SIZE.forget_one, 'BATCH_FORGET items');
  for (let i = 0, p = off + SIZE.batch_forget_in; i < count; i++, p += SIZE.forget_one) {
    each(readId(b, p, 'nodeid'), readId(b, p + 8, 'nlookup'));
  }
}

/** GETATTR: the fh if the kernel gave one (fstat). */
export function decodeGetattr(b: Buffer, off: number, end: number): number | undefined {
  // Kernels before 7.9 sent no body.
  if (end - off < SIZE.getattr_in) return undefined;
  return b.readUInt32LE(off) & FUSE_GETATTR_FH ? readId(b, off + 8, 'fh') : undefined;
}

const timeArg = (b: Buffer, secOff: number, nsecOff: number) => ({ sec: readI64(b, secOff), nsec: b.readUInt32LE(nsecOff) });

export function decodeSetattr(b: Buffer, off: number, end: number): SetattrIn {
  need(end, off, SIZE.setattr_in, 'SETATTR');
  const valid = b.readUInt32LE(off);
  const s: { -readonly [K in keyof SetattrIn]: SetattrIn[K] } = {};
  if (valid & FATTR.FH) s.fh = readId(b, off + 8, 'fh');
  if (valid & FATTR.SIZE) {
    const size = readU64(b, off + 16);
    if (size < 0) throw new FopError('EFBIG', 'SETATTR size above the largest offset served');
    s.size = size;
  }
  if (valid & FATTR.LOCKOWNER) s.lockOwner = b.readBigUInt64LE(off + 24);
  if (valid & FATTR.ATIME_NOW) s.atime = 'now';
  else if (valid & FATTR.ATIME) s.atime = timeArg(b, off + 32, off + 56);
  if (valid & FATTR.MTIME_NOW) s.mtime = 'now';
  else if (valid & FATTR.MTIME) s.mtime = timeArg(b, off + 40, off + 60);
  if (valid & FATTR.CTIME) s.ctime = timeArg(b, off + 48, off + 64);
  if (valid & FATTR.MODE) s.mode = b.readUInt32LE(off + 68);
  if (valid & FATTR.UID) s.uid = b.readUInt32LE(off + 76);
  if (valid & FATTR.GID) s.gid = b.readUInt32LE(off + 80);
  if (valid & FATTR.KILL_SUIDGID) s.killSuidgid = true;
  return s;
}

/** LOOKUP, UNLINK, RMDIR, REMOVEXATTR: one name. */
export const decodeName = (b: Buffer, off: number, end: number, what: string): Buffer => readName(b, off, end, what)[0];

export function decodeSymlink(b: Buffer, off: number, end: number): { name: Buffer; target: Buffer } {
  const [name, p] = readName(b, off, end, 'SYMLINK');
  const [target] = readName(b, p, end, 'SYMLINK target');
  return { name, target };
}

export function decodeMknod(b: Buffer, off: number, end: number): { mode: number; rdev: number; umask: number; name: Buffer } {
  need(end, off, SIZE.mknod_in, 'MKNOD');
  const [name] = readName(b, off + SIZE.mknod_in, end, 'MKNOD');
  return { mode: b.readUInt32LE(off), rdev: b.readUInt32LE(off + 4), umask: b.readUInt32LE(off + 8), name };
}

export function decodeMkdir(b: Buffer, off: number, end: number): { mode: number; umask: number; name: Buffer } {
  need(end, off, SIZE.mkdir_in, 'MKDIR');
  const [name] = readName(b, off + SIZE.mkdir_in, end, 'MKDIR');
  return { mode: b.readUInt32LE(off), umask: b.readUInt32LE(off + 4), name };
}

export interface RenameIn {
  readonly newParent: number;
  readonly name: Buffer;
  readonly newName: Buffer;
  readonly flags: number;
}

/** RENAME (flags 0) and RENAME2. */
export function decodeRename(b: Buffer, off: number, end: number, two: boolean): RenameIn {
  const fixed = two ? SIZE.rename2_in : SIZE.rename_in;
  need(end, off, fixed, 'RENAME');
  const [name, p] = readName(b, off + fixed, end, 'RENAME');
  const [newName] = readName(b, p, end, 'RENAME new name');
  return { newParent: readId(b, off, 'newdir'), name, newName, flags: two ? b.readUInt32LE(off + 8) : 0 };
}

export function decodeLink(b: Buffer, off: number, end: number): { oldNodeid: number; newName: Buffer } {
  need(end, off, SIZE.link_in, 'LINK');
  const [newName] = readName(b, off + SIZE.link_in, end, 'LINK');
  return { oldNodeid: readId(b, off, 'oldnodeid'), newName };
}

/** OPEN, OPENDIR: the open flags. */
export function decodeOpen(b: Buffer, off: number, end: number): number {
  need(end, off, SIZE.open_in, 'OPEN');
  return b.readUInt32LE(off);
}

export function decodeCreate(b: Buffer, off: number, end: number): { flags: number; mode: number; umask: number; name: Buffer } {
  need(end, off, SIZE.create_in, 'CREATE');
  const [name] = readName(b, off + SIZE.create_in, end, 'CREATE');
  return { flags: b.readUInt32LE(off), mode: b.readUInt32LE(off + 4), umask: b.readUInt32LE(off + 8), name };
}

export interface ReadIn {
  readonly fh: number;
  readonly offset: number;
  /** 0 for a read starting past MAX_OFFSET: the answer is EOF. */
  readonly size: number;
}

/** READ, READDIR, READDIRPLUS. */
export function decodeRead(b: Buffer, off: number, end: number): ReadIn {
  need(end, off, SIZE.read_in, 'READ');
  const fh = readId(b, off, 'fh');
  const offset = readU64(b, off + 8);
  const size = b.readUInt32LE(off + 16);
  if (offset < 0) return { fh, offset: MAX_OFFSET, size: 0 };
  return { fh, offset, size: Math.min(size, MAX_OFFSET - offset) };
}

export interface WriteIn {
  readonly fh: number;
  readonly offset: number;
  /** A view of the read buffer (not a copy). */
  readonly data: Buffer;
  readonly lockOwner?: bigint;
}

export function decodeWrite(b: Buffer, off: number, end: number): WriteIn {
  need(end, off, SIZE.write_in, 'WRITE');
  const offset = readU64(b, off + 8);
  if (offset < 0 || offset >= MAX_OFFSET) throw new FopError('EFBIG', 'WRITE at or past the largest offset served');
  let size = b.readUInt32LE(off + 16);
  const dataOff = off + SIZE.write_in;
  if (end - dataOff < size) throw new FopError('EIO', `WRITE: ${end - dataOff} bytes of data, header says ${size}`);
  size = Math.min(size, MAX_OFFSET - offset); // a short write up to the limit, as ext4
  const flags = b.readUInt32LE(off + 20);
  return {
    fh: readId(b, off, 'fh'),
    offset,
    data: b.subarray(dataOff, dataOff + size),
    lockOwner: flags & FUSE_WRITE_LOCKOWNER ? b.readBigUInt64LE(off + 24) : undefined,
  };
}

export function decodeRelease(b: Buffer, off: number, end: number): { fh: number; flags: number; flockUnlock: boolean; lockOwner: bigint } {
  need(end, off, SIZE.release_in, 'RELEASE');
  return {
    fh: readId(b, off, 'fh'),
    flags: b.readUInt32LE(off + 8),
    flockUnlock: (b.readUInt32LE(off + 12) & FUSE_RELEASE_FLOCK_UNLOCK) !== 0,
    lockOwner: b.readBigUInt64LE(off + 16),
  };
}

export function decodeFlush(b: Buffer, off: number, end: number): { fh: number; lockOwner: bigint } {
  need(end, off, SIZE.flush_in, 'FLUSH');
  return { fh: readId(b, off, 'fh'), lockOwner: b.readBigUInt64LE(off + 16) };
}

/** FSYNC, FSYNCDIR. */
export function decodeFsync(b: Buffer, off: number, end: number): { fh: number; datasync: boolean } {
  need(end, off, SIZE.fsync_in, 'FSYNC');
  return { fh: readId(b, off, 'fh'), datasync: (b.readUInt32LE(off + 8) & FUSE_FSYNC_FDATASYNC) !== 0 };
}

/** SETXATTR: `ext` when SETXATTR_EXT was negotiated (the 16-byte form). Name and value are copied. */
export function decodeSetxattr(b: Buffer, off: number, end: number, ext: boolean): { name: Buffer; value: Buffer; flags: number } {
  const fixed = ext ? SIZE.setxattr_in_ext : SIZE.setxattr_in;
  need(end, off, fixed, 'SETXATTR');
  const size = b.readUInt32LE(off);
  const [name, p] = readName(b, off + fixed, end, 'SETXATTR');
  need(end, p, size, 'SETXATTR value');
  const value = Buffer.allocUnsafe(size);
  b.copy(value, 0, p, p + size);
  return { name, value, flags: b.readUInt32LE(off + 4) };
}

/** GETXATTR (with a name) and LISTXATTR: the caller's buffer size (0: a size probe). */
export function decodeGetxattr(b: Buffer, off: number, end: number, withName: boolean): { size: number; name?: Buffer } {
  need(end, off, SIZE.getxattr_in, 'GETXATTR');
  const size = b.readUInt32LE(off);
  return withName ? { size, name: readName(b, off + SIZE.getxattr_in, end, 'GETXATTR')[0] } : { size };
}

const LOCK_TYPES: readonly LockType[] = ['read', 'write', 'unlock'];

export interface LkIn {
  readonly fh: number;
  readonly owner: bigint;
  readonly lock: Flock;
  readonly flock: boolean;
}

/** GETLK, SETLK, SETLKW. */
export function decodeLk(b: Buffer, off: number, end: number): LkIn {
  need(end, off, SIZE.lk_in, 'LK');
  const start = readU64(b, off + 16);
  if (start < 0) throw new FopError('EINVAL', 'lock starting past the largest offset served');
  const endOff = readU64(b, off + 24);
  const type = LOCK_TYPES[b.readUInt32LE(off + 32)];
  if (!type) throw new FopError('EINVAL', `lock type ${b.readUInt32LE(off + 32)}`);
  return {
    fh: readId(b, off, 'fh'),
    owner: b.readBigUInt64LE(off + 8),
    lock: { type, start, end: endOff < 0 || endOff >= MAX_OFFSET ? LOCK_TO_EOF : endOff, pid: b.readUInt32LE(off + 36) },
    flock: (b.readUInt32LE(off + 40) & FUSE_LK_FLOCK) !== 0,
  };
}

export function encodeLkOut(b: Buffer, off: number, lk: Flock): number {
  writeU64(b, off, lk.start);
  if (lk.end >= LOCK_TO_EOF) b.writeBigUInt64LE(WIRE_OFFSET_MAX, off + 8);
  else writeU64(b, off + 8, lk.end);
  b.writeUInt32LE(lk.type === 'read' ? F_RDLCK : lk.type === 'write' ? F_WRLCK : F_UNLCK, off + 16);
  b.writeUInt32LE(lk.pid >>> 0, off + 20);
  return SIZE.lk_out;
}

export function decodeAccess(b: Buffer, off: number, end: number): number {
  need(end, off, SIZE.access_in, 'ACCESS');
  return b.readUInt32LE(off);
}

export function decodeInterrupt(b: Buffer, off: number, end: number): number {
  need(end, off, SIZE.interrupt_in, 'INTERRUPT');
  return readUnique(b, off);
}

export function decodeFallocate(b: Buffer, off: number, end: number): { fh: number; offset: number; length: number; mode: number } {
  need(end, off, SIZE.fallocate_in, 'FALLOCATE');
  const offset = readU64(b, off + 8);
  const length = readU64(b, off + 16);
  if (offset < 0 || length < 0 || offset + length > MAX_OFFSET) throw new FopError('EFBIG', 'FALLOCATE past the largest offset served');
  return { fh: readId(b, off, 'fh'), offset, length, mode: b.readUInt32LE(off + 24) };
}

export function decodeLseek(b: Buffer, off: number, end: number): { fh: number; offset: number; whence: number } {
  need(end, off, SIZE.lseek_in, 'LSEEK');
  const offset = readU64(b, off + 8);
  if (offset < 0) throw new FopError('ENXIO', 'LSEEK past the largest offset served');
  return { fh: readId(b, off, 'fh'), offset, whence: b.readUInt32LE(off + 16) };
}

export interface CopyFileRangeIn {
  readonly fhIn: number;
  readonly offIn: number;
  readonly nodeOut: number;
  readonly fhOut: number;
  readonly offOut: number;
  readonly length: number;
  readonly flags: number;
}

/** COPY_FILE_RANGE(_64): a copy starting past MAX_OFFSET is EFBIG; one reaching past it is cut short. */
export function decodeCopyFileRange(b: Buffer, off: number, end: number): CopyFileRangeIn {
  need(end, off, SIZE.copy_file_range_in, 'COPY_FILE_RANGE');
  const offIn = readU64(b, off + 8);
  const offOut = readU64(b, off + 32);
  if (offIn < 0 || offOut < 0 || offOut >= MAX_OFFSET) throw new FopError('EFBIG', 'COPY_FILE_RANGE past the largest offset served');
  const len = readU64(b, off + 40);
  const length = Math.min(len < 0 ? MAX_OFFSET : len, MAX_OFFSET - Math.max(offIn, offOut));
  return {
    fhIn: readId(b, off, 'fh_in'),
    offIn,
    nodeOut: readId(b, off + 16, 'nodeid_out'),
    fhOut: readId(b, off + 24, 'fh_out'),
    offOut,
    length,
    flags: Number(b.readBigUInt64LE(off + 48) & 0xffffffffn),
  };
}

// ---- reply bodies ------------------------------------------------------------------------
// Each encoder writes at `off` and returns the bytes written (its SIZE).

export function encodeAttr(b: Buffer, off: number, a: Iatt): number {
  writeU64(b, off, a.ino);
  writeU64(b, off + 8, a.size);
  writeU64(b, off + 16, a.blocks);
  writeI64(b, off + 24, a.atime.sec);
  writeI64(b, off + 32, a.mtime.sec);
  writeI64(b, off + 40, a.ctime.sec);
  b.writeUInt32LE(a.atime.nsec, off + 48);
  b.writeUInt32LE(a.mtime.nsec, off + 52);
  b.writeUInt32LE(a.ctime.nsec, off + 56);
  b.writeUInt32LE(a.mode >>> 0, off + 60);
  b.writeUInt32LE(a.nlink >>> 0, off + 64);
  b.writeUInt32LE(a.uid >>> 0, off + 68);
  b.writeUInt32LE(a.gid >>> 0, off + 72);
  b.writeUInt32LE(a.rdev >>> 0, off + 76);
  b.writeUInt32LE(a.blksize >>> 0, off + 80);
  b.writeUInt32LE(0, off + 84); // flags
  return SIZE.attr;
}

/** An entry reply; `undefined` writes a zero entry (READDIRPLUS: the kernel links nothing). */
export function encodeEntryOut(b: Buffer, off: number, e: Entry | undefined): number {
  if (!e) {
    b.fill(0, off, off + SIZE.entry_out);
    return SIZE.entry_out;
  }
  writeU64(b, off, e.nodeid);
  writeU64(b, off + 8, e.generation);
  writeValidity(b, off + 16, off + 32, e.entryMs);
  writeValidity(b, off + 24, off + 36, e.attrMs);
  encodeAttr(b, off + 40, e.attr);
  return SIZE.entry_out;
}

export function encodeAttrOut(b: Buffer, off: number, attrMs: number, attr: Iatt): number {
  writeValidity(b, off, off + 8, attrMs);
  b.writeUInt32LE(0, off + 12);
  encodeAttr(b, off + 16, attr);
  return SIZE.attr_out;
}

export interface OpenOut {
  readonly fh: number;
  readonly directIo?: boolean;
  readonly keepCache?: boolean;
  readonly cacheDir?: boolean;
  readonly nonSeekable?: boolean;
}

export function encodeOpenOut(b: Buffer, off: number, o: OpenOut): number {
  writeU64(b, off, o.fh);
  const flags =
    (o.directIo ? FOPEN_DIRECT_IO : 0) | (o.keepCache ? FOPEN_KEEP_CACHE : 0) | (o.cacheDir ? FOPEN_CACHE_DIR : 0) | (o.nonSeekable ? FOPEN_NONSEEKABLE : 0);
  b.writeUInt32LE(flags, off + 8);
  b.writeUInt32LE(0, off + 12); // backing_id
  return SIZE.open_out;
}

/** write_out, and getxattr_out for a size probe: one u32 and padding. */
export function encodeU32Out(b: Buffer, off: number, v: number): number {
  b.writeUInt32LE(v >>> 0, off);
  b.writeUInt32LE(0, off + 4);
  return 8;
}

/** lseek_out, copy_file_range_out: one u64. */
export function encodeU64Out(b: Buffer, off: number, v: number): number {
  writeU64(b, off, v);
  return 8;
}

export function encodeStatfs(b: Buffer, off: number, s: Statfs): number {
  b.fill(0, off, off + SIZE.kstatfs);
  writeU64(b, off, s.blocks);
  writeU64(b, off + 8, s.bfree);
  writeU64(b, off + 16, s.bavail);
  writeU64(b, off + 24, s.files);
  writeU64(b, off + 32, s.ffree);
  b.writeUInt32LE(s.bsize >>> 0, off + 40);
  b.writeUInt32LE(s.namemax >>> 0, off + 44);
  b.writeUInt32LE(s.frsize >>> 0, off + 48);
  return SIZE.kstatfs;
}

// ---- readdir packing -------------------------------------------------------------------

/** The kernel's limit on a name in a dirent (PATH_MAX - 1). */
export const DIRENT_NAME_MAX = 4095;
const align8 = (n: number): number => (n + 7) & ~7;
export const direntSize = (nameLen: number, plus: boolean): number => align8((plus ? SIZE.direntplus : SIZE.dirent) + nameLen);

/**
 * Packs fuse_dirent / fuse_direntplus records into a buffer of the request's size. A record
 * that does not fit is refused whole (add returns false); a name the kernel would reject
 * (empty, over 4095 bytes, with a '/') is a bug of the filesystem: EIO, as the kernel would
 * give the caller.
 */
export class DirPacker implements DirSink {
  readonly buf: Buffer;
  length = 0;
  /** READDIRPLUS entries with a nodeid the reply hands to the kernel (each a lookup). */
  readonly nodeids: number[] = [];

  constructor(
    readonly size: number,
    readonly plus: boolean,
  ) {
    this.buf = Buffer.allocUnsafe(size);
  }

  add(d: DirEntryOut, entry?: Entry): boolean {
    const name = d.name;
    const n = name.length;
    if (n === 0 || n > DIRENT_NAME_MAX || hasSlash(name)) {
      throw new FopError('EIO', `readdir entry with an invalid name (${n} bytes: ${JSON.stringify(name.toString('latin1'))})`);
    }
    const rec = direntSize(n, this.plus);
    if (this.length + rec > this.size) return false;
    const b = this.buf;
    let p = this.length;
    if (this.plus) {
      encodeEntryOut(b, p, entry);
      p += SIZE.entry_out;
    }
    writeU64(b, p, d.ino);
    writeU64(b, p + 8, d.offset);
    b.writeUInt32LE(n, p + 16);
    b.writeUInt32LE(((d.type & S_IFMT) >>> 12) & 0xf, p + 20);
    p += SIZE.dirent;
    // Names are short: byte loops beat the native copy/fill calls here.
    if (n <= SHORT_NAME) for (let i = 0; i < n; i++) b[p + i] = name[i];
    else name.copy(b, p);
    const end = this.length + rec;
    for (let i = p + n; i < end; i++) b[i] = 0;
    this.length = end;
    if (this.plus && entry && entry.nodeid !== 0 && !isDotOrDotDot(name)) this.nodeids.push(entry.nodeid);
    return true;
  }
}

const SHORT_NAME = 64;

function hasSlash(name: Buffer): boolean {
  if (name.length > SHORT_NAME) return name.includes(0x2f);
  for (let i = 0; i < name.length; i++) if (name[i] === 0x2f) return true;
  return false;
}

const isDotOrDotDot = (n: Buffer): boolean => n[0] === 0x2e && (n.length === 1 || (n.length === 2 && n[1] === 0x2e));

// ---- notifications -----------------------------------------------------------------------

export function encodeNotifyInvalInode(nodeid: number, off: number, len: number): Buffer {
  const b = Buffer.alloc(OUT_HEADER_SIZE + SIZE.notify_inval_inode_out);
  encodeOutHeader(b, b.length, Notify.INVAL_INODE, 0);
  writeU64(b, 16, nodeid);
  writeI64(b, 24, off);
  writeI64(b, 32, len);
  return b;
}

export function encodeNotifyInvalEntry(parent: number, name: Buffer, expireOnly = false): Buffer {
  const b = Buffer.alloc(OUT_HEADER_SIZE + SIZE.notify_inval_entry_out + name.length + 1);
  encodeOutHeader(b, b.length, Notify.INVAL_ENTRY, 0);
  writeU64(b, 16, parent);
  b.writeUInt32LE(name.length, 24);
  b.writeUInt32LE(expireOnly ? 1 : 0, 28);
  name.copy(b, 32); // the NUL the kernel requires is the zero byte Buffer.alloc left after it
  return b;
}

export function encodeNotifyDelete(parent: number, child: number, name: Buffer): Buffer {
  const b = Buffer.alloc(OUT_HEADER_SIZE + SIZE.notify_delete_out + name.length + 1);
  encodeOutHeader(b, b.length, Notify.DELETE, 0);
  writeU64(b, 16, parent);
  writeU64(b, 24, child);
  b.writeUInt32LE(name.length, 32);
  name.copy(b, 40);
  return b;
}

/** errno numbers the session answers with directly. */
export const E = constants.errno;
