// How fops travel between protocol/client and protocol/server: the shape of each fop's
// arguments on the wire, which fops may be sent again after a reconnect, and the bodies of
// the frames. Objects (inodes, fds, frames) never travel: GFIDs, names, fd numbers and
// caller ids do.
import type { FopName } from '../core/fops';
import { Caller, Flock, Gfid, INTERNAL_XATTR_PREFIX, MAX_OFFSET, SetAttr, Timespec, isByteString, isGfid } from '../core/types';
import type { Login } from './auth';

/** A Loc on the wire: GFIDs and names only (the server finds its own inodes). */
export interface WireLoc {
  readonly path?: string;
  readonly gfid?: Gfid;
  readonly parent?: Gfid;
  readonly name?: string;
}

/** A new fd to open on the server (open, create, opendir): the reply carries its number. */
export interface WireNewFd {
  readonly flags: number;
  /** The open file it continues (Fd.openId): a reopen on another connection or graph sends the same. */
  readonly openId?: string;
}

/** The longest openId or process identity a client may send. */
export const MAX_IDENTITY = 128;

/** The most a read or readdir may ask for: its answer must fit in one frame. */
export const MAX_IO = 16 * 1024 * 1024;

/**
 * loc: a WireLoc; fd: the number of an fd the server opened for this client; newfd: a
 * WireNewFd; num, buf, bool: values of that type; name: a byte string (a symlink target,
 * an xattr name); size: a byte count up to MAX_IO; offset: a file offset or size, 0 to
 * MAX_OFFSET; attr: a SetAttr; lock: a Flock;
 * lockcmd, lockkind, whence: one of lk's commands and kinds, seek's 'data' or 'hole';
 * domain: an internal lock domain; maybename: a name or null (a whole directory);
 * entrycmd, entrytype, xattrop: entrylk's commands and types, xattrop's operations;
 * xattrs: internal xattrs (keys under INTERNAL_XATTR_PREFIX) and their values.
 */
export type ArgKind =
  | 'loc'
  | 'fd'
  | 'newfd'
  | 'num'
  | 'size'
  | 'offset'
  | 'name'
  | 'buf'
  | 'bool'
  | 'attr'
  | 'lock'
  | 'lockcmd'
  | 'lockkind'
  | 'whence'
  | 'domain'
  | 'maybename'
  | 'entrycmd'
  | 'entrytype'
  | 'xattrop'
  | 'xattrs';

/** Arguments of every fop after its frame; `resend`: harmless if it reaches the server twice. */
export const FOP_WIRE: Readonly<Record<FopName, { readonly args: readonly ArgKind[]; readonly resend: boolean }>> = {
  lookup: { args: ['loc'], resend: true },
  stat: { args: ['loc'], resend: true },
  fstat: { args: ['fd'], resend: true },
  access: { args: ['loc', 'num'], resend: true },
  readlink: { args: ['loc'], resend: true },
  mknod: { args: ['loc', 'num', 'num'], resend: false },
  mkdir: { args: ['loc', 'num'], resend: false },
  unlink: { args: ['loc'], resend: false },
  rmdir: { args: ['loc'], resend: false },
  symlink: { args: ['name', 'loc'], resend: false },
  rename: { args: ['loc', 'loc', 'num'], resend: false },
  link: { args: ['loc', 'loc'], resend: false },
  truncate: { args: ['loc', 'offset'], resend: true },
  ftruncate: { args: ['fd', 'offset'], resend: true },
  open: { args: ['loc', 'newfd'], resend: true },
  create: { args: ['loc', 'num', 'newfd'], resend: false },
  read: { args: ['fd', 'size', 'offset'], resend: true },
  // At an explicit offset; the client refuses to resend a write on an O_APPEND fd.
  write: { args: ['fd', 'buf', 'offset'], resend: true },
  flush: { args: ['fd'], resend: true },
  fsync: { args: ['fd', 'bool'], resend: true },
  opendir: { args: ['loc', 'newfd'], resend: true },
  readdir: { args: ['fd', 'size', 'num'], resend: true },
  readdirp: { args: ['fd', 'size', 'num'], resend: true },
  fsyncdir: { args: ['fd', 'bool'], resend: true },
  statfs: { args: ['loc'], resend: true },
  setattr: { args: ['loc', 'attr'], resend: true },
  fsetattr: { args: ['fd', 'attr'], resend: true },
  getxattr: { args: ['loc', 'name'], resend: true },
  setxattr: { args: ['loc', 'name', 'buf', 'num'], resend: false },
  listxattr: { args: ['loc'], resend: true },
  removexattr: { args: ['loc', 'name'], resend: false },
  // A server that lost the connection dropped the locks with the fds: never taken again blindly.
  // A blocking lock ('wait') waits for its answer as long as the connection lives.
  lk: { args: ['fd', 'lockcmd', 'lock', 'lockkind'], resend: false },
  fallocate: { args: ['fd', 'num', 'offset', 'offset'], resend: true },
  seek: { args: ['fd', 'offset', 'whence'], resend: true },
  // Internal locks go with the connection that took them, like lk's.
  inodelk: { args: ['domain', 'loc', 'lockcmd', 'lock'], resend: false },
  entrylk: { args: ['domain', 'loc', 'maybename', 'entrycmd', 'entrytype'], resend: false },
  // An add twice is not the same add.
  xattrop: { args: ['loc', 'xattrop', 'xattrs'], resend: false },
};

/** Not a fop: the client is done with an fd (its last reference went). */
export const RELEASE = 'release';

export interface Request {
  readonly op: FopName | typeof RELEASE;
  readonly caller: Caller;
  /** The caller's lock owner (frame.lkOwner); the server prefixes it with the client's identity. */
  readonly lkOwner?: string;
  readonly args: readonly unknown[];
  /**
   * A fop not safe to carry out twice: the client's id for it, the same each time it is
   * sent (unique in the client process), by which the server recognises it when sent again.
   */
  readonly rid?: string;
  /** The client sent this request before, on a connection that broke. */
  readonly again?: boolean;
}

/** The longest request id. */
export const MAX_RID = 64;

/** The longest lock owner a request may carry (the kernel's are 64-bit numbers). */
export const MAX_LK_OWNER = 128;

export type Reply =
  /** `continued`: the new fd continues an open file the client's last connection left (its locks held). */
  | { readonly ok: true; readonly value?: unknown; readonly fd?: number; readonly continued?: boolean }
  | { readonly ok: false; readonly errno: string; readonly message?: string };

export interface Challenge {
  readonly nonce: string;
}

export interface Hello {
  readonly version: number;
  /** The volume the client wants: the server's subvolume name (remote-subvolume). */
  readonly volume: string;
  /** Who is asking (for logs and statedumps). */
  readonly client: string;
  /**
   * The client process, the same on each connection it makes (and each of its graphs): what
   * it holds on the server through one connection (locks, open files) carries over to the
   * next, and goes when no connection of it holds it any more.
   */
  readonly process?: string;
  /** Its answer to the challenge, when it has credentials (username, password). */
  readonly login?: Login;
  /** It takes UPCALL frames (a server sends none to a client that did not say so). */
  readonly upcalls?: boolean;
}

/** An UPCALL frame's body: what changed (see the engine's Upcall); GFIDs and byte-string names. */
export interface WireUpcall {
  readonly gfid?: Gfid;
  readonly attrs?: boolean;
  readonly data?: boolean;
  readonly xattrs?: boolean;
  readonly entries?: readonly { readonly parent: Gfid; readonly name: string }[];
}

/** The most entries one upcall names (a rename names two). */
const MAX_UPCALL_ENTRIES = 64;

/** The upcall a frame body describes, or undefined if it is malformed (a client trusts no more than a server does). */
export function checkUpcall(v: unknown): WireUpcall | undefined {
  if (!isObj(v)) return undefined;
  const flag = (x: unknown) => x === undefined || typeof x === 'boolean';
  if (!(v.gfid === undefined || isGfid(v.gfid)) || !flag(v.attrs) || !flag(v.data) || !flag(v.xattrs)) return undefined;
  const e = v.entries;
  if (e !== undefined && !(Array.isArray(e) && e.length <= MAX_UPCALL_ENTRIES && e.every((x) => isObj(x) && isGfid(x.parent) && isName(x.name)))) return undefined;
  return {
    gfid: v.gfid as Gfid | undefined,
    attrs: v.attrs as boolean | undefined,
    data: v.data as boolean | undefined,
    xattrs: v.xattrs as boolean | undefined,
    entries: (e as { parent: Gfid; name: string }[] | undefined)?.map((x) => ({ parent: x.parent, name: x.name })),
  };
}

/** `proof`: the server's answer over the same exchange, when the client logged in. */
export type Welcome = { readonly ok: true; readonly proof?: string } | { readonly ok: false; readonly reason: string };

// --- checks of what a peer sent (the server trusts nothing) --------------------------------

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Buffer.isBuffer(v);
const optStr = (v: unknown) => v === undefined || typeof v === 'string';
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);
/** A uid or gid: (uid_t)-1 means "unchanged" to chown(2), so it is nobody's id. */
const isId = (v: unknown): v is number => isInt(v) && v >= 0 && v < 0xffffffff;
/** NGROUPS_MAX on Linux. */
const MAX_GROUPS = 65536;
const isTime = (v: unknown): v is Timespec | 'now' =>
  v === 'now' || (isObj(v) && isInt(v.sec) && isInt(v.nsec) && (v.nsec as number) >= 0 && (v.nsec as number) < 1e9);

const isName = (v: unknown): v is string => typeof v === 'string' && isByteString(v);

const LOC_KEYS = new Set(['path', 'gfid', 'parent', 'name']);

/** A loc names something (a path, a GFID, or a parent), and has nothing else. */
export function isWireLoc(v: unknown): v is WireLoc {
  if (!isObj(v) || !Object.keys(v).every((k) => LOC_KEYS.has(k))) return false;
  const names = v.path !== undefined || v.gfid !== undefined || v.parent !== undefined;
  return names && optStr(v.path) && optStr(v.gfid) && optStr(v.parent) && (v.name === undefined || isName(v.name));
}

function isSetAttr(v: unknown): v is SetAttr {
  if (!isObj(v)) return false;
  const ids = ['mode', 'uid', 'gid'].every((k) => v[k] === undefined || isInt(v[k]));
  return ids && (v.atime === undefined || isTime(v.atime)) && (v.mtime === undefined || isTime(v.mtime));
}

function isFlock(v: unknown): v is Flock {
  return isObj(v) && ['read', 'write', 'unlock'].includes(v.type as string) && isInt(v.start) && isInt(v.end) && isInt(v.pid);
}

const CHECK: Record<ArgKind, (v: unknown) => boolean> = {
  loc: isWireLoc,
  fd: isInt,
  newfd: (v) => isObj(v) && isInt(v.flags) && (v.openId === undefined || (typeof v.openId === 'string' && v.openId.length <= MAX_IDENTITY)),
  num: (v) => typeof v === 'number' && Number.isFinite(v),
  size: (v) => isInt(v) && v >= 0 && v <= MAX_IO,
  // What no file can have never reaches storage (to Node, a negative position is the fd's own).
  offset: (v) => isInt(v) && v >= 0 && v <= MAX_OFFSET,
  name: isName,
  buf: (v) => Buffer.isBuffer(v),
  bool: (v) => typeof v === 'boolean',
  attr: isSetAttr,
  lock: isFlock,
  lockcmd: (v) => v === 'get' || v === 'set' || v === 'wait',
  lockkind: (v) => v === 'posix' || v === 'flock',
  whence: (v) => v === 'data' || v === 'hole',
  domain: (v) => typeof v === 'string' && v.length > 0 && v.length <= 128 && /^[\w.:-]+$/.test(v),
  // A name, or null: JSON has no undefined (the client sends null for a whole directory).
  maybename: (v) => v === null || isName(v),
  entrycmd: (v) => v === 'lock' || v === 'trylock' || v === 'unlock',
  entrytype: (v) => v === 'read' || v === 'write',
  xattrop: (v) => v === 'get' || v === 'set' || v === 'add',
  xattrs: (v) =>
    isObj(v) && Object.keys(v).length <= 64 && Object.entries(v).every(([k, b]) => k.startsWith(INTERNAL_XATTR_PREFIX) && k.length <= 255 && Buffer.isBuffer(b) && b.length <= 4096),
};

/** Why a request does not match its fop's arguments, or undefined if it does. */
export function checkRequest(req: unknown): string | undefined {
  if (!isObj(req) || typeof req.op !== 'string' || !Array.isArray(req.args)) return 'not a request';
  const c = req.caller;
  if (!isObj(c) || !isId(c.uid) || !isId(c.gid) || !isInt(c.pid) || !Array.isArray(c.groups) || !c.groups.every(isId) || c.groups.length > MAX_GROUPS) return 'bad caller';
  const o = req.lkOwner;
  if (o !== undefined && !(isName(o) && o.length <= MAX_LK_OWNER)) return 'bad lock owner';
  if (req.rid !== undefined && !(typeof req.rid === 'string' && req.rid.length <= MAX_RID && /^[\w.:-]+$/.test(req.rid))) return 'bad request id';
  if (req.again !== undefined && typeof req.again !== 'boolean') return 'bad again flag';
  const args = req.args as unknown[];
  if (req.op === RELEASE) return args.length === 1 && isInt(args[0]) ? undefined : 'bad release';
  const wire = Object.prototype.hasOwnProperty.call(FOP_WIRE, req.op) ? FOP_WIRE[req.op as FopName] : undefined;
  if (!wire) return `unknown op ${JSON.stringify(req.op)}`;
  if (args.length !== wire.args.length) return `${req.op} takes ${wire.args.length} arguments, got ${args.length}`;
  const bad = wire.args.findIndex((kind, i) => !CHECK[kind](args[i]));
  return bad < 0 ? undefined : `${req.op}: argument ${bad + 1} is not a ${wire.args[bad]}`;
}
