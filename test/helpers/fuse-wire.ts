// The kernel's side of the FUSE wire, for tests: the structs of linux/uapi/fuse.h written
// out as field lists (copied from the header, independently of src/fuse/kernel/protocol.ts),
// laid out with C's natural alignment, so that the transport's hand-placed offsets are
// checked against the header rather than against themselves.

export type FieldType = 'u16' | 'u32' | 'i32' | 'u64' | 'i64';
export type Fields = readonly (readonly [string, FieldType])[];

const WIDTH: Record<FieldType, number> = { u16: 2, u32: 4, i32: 4, u64: 8, i64: 8 };

const nest = (prefix: string, f: Fields): Fields => f.map(([n, t]) => [`${prefix}.${n}`, t] as const);

const attr: Fields = [
  ['ino', 'u64'], ['size', 'u64'], ['blocks', 'u64'], ['atime', 'u64'], ['mtime', 'u64'], ['ctime', 'u64'],
  ['atimensec', 'u32'], ['mtimensec', 'u32'], ['ctimensec', 'u32'], ['mode', 'u32'], ['nlink', 'u32'],
  ['uid', 'u32'], ['gid', 'u32'], ['rdev', 'u32'], ['blksize', 'u32'], ['flags', 'u32'],
];
const fileLock: Fields = [['start', 'u64'], ['end', 'u64'], ['type', 'u32'], ['pid', 'u32']];
const entryOut: Fields = [
  ['nodeid', 'u64'], ['generation', 'u64'], ['entry_valid', 'u64'], ['attr_valid', 'u64'],
  ['entry_valid_nsec', 'u32'], ['attr_valid_nsec', 'u32'], ...nest('attr', attr),
];
const openOut: Fields = [['fh', 'u64'], ['open_flags', 'u32'], ['backing_id', 'i32']];
const dirent: Fields = [['ino', 'u64'], ['off', 'u64'], ['namelen', 'u32'], ['type', 'u32']];
const readIn: Fields = [['fh', 'u64'], ['offset', 'u64'], ['size', 'u32'], ['read_flags', 'u32'], ['lock_owner', 'u64'], ['flags', 'u32'], ['padding', 'u32']];

export const STRUCTS = {
  in_header: [['len', 'u32'], ['opcode', 'u32'], ['unique', 'u64'], ['nodeid', 'u64'], ['uid', 'u32'], ['gid', 'u32'], ['pid', 'u32'], ['total_extlen', 'u16'], ['padding', 'u16']],
  out_header: [['len', 'u32'], ['error', 'i32'], ['unique', 'u64']],
  attr,
  entry_out: entryOut,
  attr_out: [['attr_valid', 'u64'], ['attr_valid_nsec', 'u32'], ['dummy', 'u32'], ...nest('attr', attr)],
  open_out: openOut,
  write_out: [['size', 'u32'], ['padding', 'u32']],
  kstatfs: [
    ['blocks', 'u64'], ['bfree', 'u64'], ['bavail', 'u64'], ['files', 'u64'], ['ffree', 'u64'],
    ['bsize', 'u32'], ['namelen', 'u32'], ['frsize', 'u32'], ['padding', 'u32'],
    ['spare0', 'u32'], ['spare1', 'u32'], ['spare2', 'u32'], ['spare3', 'u32'], ['spare4', 'u32'], ['spare5', 'u32'],
  ],
  getxattr_out: [['size', 'u32'], ['padding', 'u32']],
  file_lock: fileLock,
  lk_out: nest('lk', fileLock),
  lseek_out: [['offset', 'u64']],
  copy_file_range_out: [['bytes_copied', 'u64']],
  init_in: [['major', 'u32'], ['minor', 'u32'], ['max_readahead', 'u32'], ['flags', 'u32'], ['flags2', 'u32'], ...Array.from({ length: 11 }, (_, i) => [`unused${i}`, 'u32'] as const)],
  init_out: [
    ['major', 'u32'], ['minor', 'u32'], ['max_readahead', 'u32'], ['flags', 'u32'], ['max_background', 'u16'], ['congestion_threshold', 'u16'],
    ['max_write', 'u32'], ['time_gran', 'u32'], ['max_pages', 'u16'], ['map_alignment', 'u16'], ['flags2', 'u32'], ['max_stack_depth', 'u32'],
    ['request_timeout', 'u16'], ...Array.from({ length: 11 }, (_, i) => [`unused${i}`, 'u16'] as const),
  ],
  forget_in: [['nlookup', 'u64']],
  forget_one: [['nodeid', 'u64'], ['nlookup', 'u64']],
  batch_forget_in: [['count', 'u32'], ['dummy', 'u32']],
  getattr_in: [['getattr_flags', 'u32'], ['dummy', 'u32'], ['fh', 'u64']],
  setattr_in: [
    ['valid', 'u32'], ['padding', 'u32'], ['fh', 'u64'], ['size', 'u64'], ['lock_owner', 'u64'], ['atime', 'i64'], ['mtime', 'i64'], ['ctime', 'i64'],
    ['atimensec', 'u32'], ['mtimensec', 'u32'], ['ctimensec', 'u32'], ['mode', 'u32'], ['unused4', 'u32'], ['uid', 'u32'], ['gid', 'u32'], ['unused5', 'u32'],
  ],
  mknod_in: [['mode', 'u32'], ['rdev', 'u32'], ['umask', 'u32'], ['padding', 'u32']],
  mkdir_in: [['mode', 'u32'], ['umask', 'u32']],
  rename_in: [['newdir', 'u64']],
  rename2_in: [['newdir', 'u64'], ['flags', 'u32'], ['padding', 'u32']],
  link_in: [['oldnodeid', 'u64']],
  open_in: [['flags', 'u32'], ['open_flags', 'u32']],
  create_in: [['flags', 'u32'], ['mode', 'u32'], ['umask', 'u32'], ['open_flags', 'u32']],
  read_in: readIn,
  write_in: [['fh', 'u64'], ['offset', 'u64'], ['size', 'u32'], ['write_flags', 'u32'], ['lock_owner', 'u64'], ['flags', 'u32'], ['padding', 'u32']],
  release_in: [['fh', 'u64'], ['flags', 'u32'], ['release_flags', 'u32'], ['lock_owner', 'u64']],
  flush_in: [['fh', 'u64'], ['unused', 'u32'], ['padding', 'u32'], ['lock_owner', 'u64']],
  fsync_in: [['fh', 'u64'], ['fsync_flags', 'u32'], ['padding', 'u32']],
  setxattr_in: [['size', 'u32'], ['flags', 'u32']],
  setxattr_in_ext: [['size', 'u32'], ['flags', 'u32'], ['setxattr_flags', 'u32'], ['padding', 'u32']],
  getxattr_in: [['size', 'u32'], ['padding', 'u32']],
  lk_in: [['fh', 'u64'], ['owner', 'u64'], ...nest('lk', fileLock), ['lk_flags', 'u32'], ['padding', 'u32']],
  access_in: [['mask', 'u32'], ['padding', 'u32']],
  interrupt_in: [['unique', 'u64']],
  fallocate_in: [['fh', 'u64'], ['offset', 'u64'], ['length', 'u64'], ['mode', 'u32'], ['padding', 'u32']],
  lseek_in: [['fh', 'u64'], ['offset', 'u64'], ['whence', 'u32'], ['padding', 'u32']],
  copy_file_range_in: [['fh_in', 'u64'], ['off_in', 'u64'], ['nodeid_out', 'u64'], ['fh_out', 'u64'], ['off_out', 'u64'], ['len', 'u64'], ['flags', 'u64']],
  dirent,
  direntplus: [...nest('entry_out', entryOut), ...nest('dirent', dirent)],
  notify_inval_inode_out: [['ino', 'u64'], ['off', 'i64'], ['len', 'i64']],
  notify_inval_entry_out: [['parent', 'u64'], ['namelen', 'u32'], ['flags', 'u32']],
  notify_delete_out: [['parent', 'u64'], ['child', 'u64'], ['namelen', 'u32'], ['padding', 'u32']],
} satisfies Record<string, Fields>;

export type StructName = keyof typeof STRUCTS;

export interface Layout {
  readonly size: number;
  readonly offsets: ReadonlyMap<string, [number, FieldType]>;
}

/** C layout: each field at its natural alignment, the whole padded to 8 (every fuse struct is). */
export function layout(name: StructName): Layout {
  const offsets = new Map<string, [number, FieldType]>();
  let off = 0;
  for (const [n, t] of STRUCTS[name] as Fields) {
    const w = WIDTH[t];
    off = Math.ceil(off / w) * w;
    offsets.set(n, [off, t]);
    off += w;
  }
  return { size: Math.ceil(off / 8) * 8, offsets };
}

export type Values = Record<string, number | bigint>;

export function pack(name: StructName, v: Values, into?: Buffer, at = 0): Buffer {
  const l = layout(name);
  const b = into ?? Buffer.alloc(l.size);
  for (const [n, [off, t]] of l.offsets) {
    const x = v[n] ?? 0;
    const o = at + off;
    if (t === 'u16') b.writeUInt16LE(Number(x), o);
    else if (t === 'u32') b.writeUInt32LE(Number(x), o);
    else if (t === 'i32') b.writeInt32LE(Number(x), o);
    else if (t === 'u64') b.writeBigUInt64LE(BigInt(x), o);
    else b.writeBigInt64LE(BigInt(x), o);
  }
  for (const k of Object.keys(v)) if (!l.offsets.has(k)) throw new Error(`${name} has no field ${k}`);
  return b;
}

/** Every field as a bigint. */
export function unpack(name: StructName, b: Buffer, at = 0): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  for (const [n, [off, t]] of layout(name).offsets) {
    const o = at + off;
    out[n] =
      t === 'u16' ? BigInt(b.readUInt16LE(o)) : t === 'u32' ? BigInt(b.readUInt32LE(o)) : t === 'i32' ? BigInt(b.readInt32LE(o)) : t === 'u64' ? b.readBigUInt64LE(o) : b.readBigInt64LE(o);
  }
  return out;
}

/** A NUL-terminated byte string. */
export const cstr = (s: Buffer | string): Buffer => Buffer.concat([typeof s === 'string' ? Buffer.from(s, 'latin1') : s, Buffer.from([0])]);

/** A whole request as the kernel writes it: header + body (+ extension bytes counted in total_extlen). */
export function request(opcode: number, unique: number, nodeid: number, body: Buffer, ext: Buffer = Buffer.alloc(0), who = { uid: 0, gid: 0, pid: 0 }): Buffer {
  const len = 40 + body.length + ext.length;
  const h = pack('in_header', { len, opcode, unique, nodeid, uid: who.uid, gid: who.gid, pid: who.pid, total_extlen: ext.length / 8 });
  return Buffer.concat([h, body, ext]);
}
