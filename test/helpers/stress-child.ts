// Child process of test/races/stress.test.ts: for a fixed time, does seeded random file
// operations on a mount, then prints one JSON line (a StressReport) and exits.
//
// Two kinds of objects:
// - SHARED: a small namespace (SHARED_DIRS x SHARED_NAMES, sometimes one level deeper) that
//   every child works on at once. What an operation finds there depends on the others, so
//   only errnos that concurrency explains are accepted; anything else (EIO, EBADF, ENOTCONN,
//   ESTALE, ...) is reported as unacceptable.
// - PRIVATE: a directory only this child touches. Its names, inodes, contents, sizes, link
//   counts, modes, mtimes and xattrs are modelled exactly in memory, so every outcome is
//   predicted: a different errno, a wrong byte, a wrong size is a mismatch. (No hard links
//   there: libfuse's high-level API gives each name its own kernel inode, so the kernel's
//   cached size of one name legitimately lags writes through another for attr_timeout.)
// Some handles stay open for the whole run (anchors) and others for a while, so they are
// used across the graph switches the test makes meanwhile.
//
// Reproducibility: the sequence of operations and their arguments comes from a PRNG seeded
// by argv; only the interleaving with the other children (and so the outcomes of shared
// operations, which feed back into later choices) depends on timing.
//
// Operations are async so that a watchdog timer keeps running: an operation pending for
// `hangMs`, or the whole child running past `deadlineMs`, is reported as a hang and the
// child kills itself (a synchronous call stuck on FUSE could not be interrupted).
import { execFile } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';
import { Rng } from './rng';

const C = fs.constants;

export const SHARED_DIRS = ['d0', 'd1', 'd2'] as const;
const SHARED_NAMES = Array.from({ length: 12 }, (_, i) => `f${i}`);
export const PRIVATE_NAMES = ['q0', 'q1', 'q2', 'q3'] as const;
export const sharedRoot = (root: string) => path.join(root, 'shared');
export const privateDir = (root: string, index: number) => path.join(root, 'private', `c${index}`);

// ---------------------------------------------------------------------------------------
// Arguments and report

export interface StressArgs {
  /** The mount point; the test has made shared/d* and private/c<index> under it. */
  readonly root: string;
  readonly index: number;
  readonly seed: number;
  /** How long to do random operations; then the final checks and the report. */
  readonly durationMs: number;
  /** An operation pending this long is a hang. */
  readonly hangMs: number;
  /** The child never runs longer than this (from its start), final checks included. */
  readonly deadlineMs: number;
}

export interface Problem {
  /** ms since the child started, and the wall-clock time (to find the daemon's log lines). */
  readonly t: number;
  readonly at: string;
  readonly op: string;
  /** Relative to the mount point. */
  readonly path: string;
  readonly errno?: string;
  readonly detail?: string;
}

export interface StressReport {
  readonly index: number;
  readonly seed: number;
  /** False when the watchdog cut the run short. */
  readonly finished: boolean;
  readonly elapsedMs: number;
  readonly ops: number;
  /** System calls made, by name (`p.` for the private, modelled files). */
  readonly opCounts: Record<string, number>;
  /** Accepted errnos, as `op:ERRNO` -> count. */
  readonly errnos: Record<string, number>;
  readonly unacceptable: Problem[];
  readonly unacceptableCount: number;
  readonly mismatches: Problem[];
  readonly mismatchCount: number;
  /** What the model says each private name holds at the end. */
  readonly privateFinal: Record<string, { size: number; sha1: string }>;
}

const MAX_LISTED = 25;
/** XLSTACK_STRESS_TRACE=1: every call and its outcome goes to stderr (to narrow a failure down). */
const TRACE = process.env.XLSTACK_STRESS_TRACE === '1';

// ---------------------------------------------------------------------------------------
// Operation mix

/** Relative weights; an fd operation with no suitable open fd opens one instead. */
const WEIGHTS = {
  open: 6, write: 5, read: 5, append: 3, truncate: 2, stat: 5, rename: 6, unlink: 4, link: 2,
  symlink: 3, readlink: 2, mkdir: 3, rmdir: 3, readdir: 3, chmod: 1.5, utimes: 1.5, xattr: 0.15,
  'fd.read': 4, 'fd.write': 4, 'fd.stat': 3, 'fd.truncate': 1, 'fd.sync': 1, 'fd.attr': 1, 'fd.close': 2,
  'p.open': 3, 'p.write': 7, 'p.read': 7, 'p.truncate': 2, 'p.stat': 3, 'p.rename': 1.5, 'p.unlink': 1,
  'p.verify': 2, 'p.readdir': 1, 'p.utimes': 1, 'p.chmod': 1, 'p.xattr': 0.15, 'p.fsync': 1, 'p.close': 2,
} as const;
type StepName = keyof typeof WEIGHTS;

const SHARED_OPEN_FLAGS = [
  C.O_RDONLY,
  C.O_RDWR,
  C.O_WRONLY,
  C.O_RDWR | C.O_CREAT,
  C.O_WRONLY | C.O_CREAT | C.O_TRUNC,
  C.O_RDWR | C.O_CREAT | C.O_EXCL,
  C.O_WRONLY | C.O_CREAT | C.O_APPEND,
  C.O_RDWR | C.O_APPEND,
  C.O_RDONLY | C.O_DIRECTORY,
];
const PRIVATE_OPEN_FLAGS = [
  C.O_RDONLY,
  C.O_RDWR,
  C.O_WRONLY | C.O_APPEND,
  C.O_RDWR | C.O_APPEND | C.O_CREAT,
  C.O_RDWR | C.O_CREAT,
  C.O_WRONLY | C.O_CREAT | C.O_TRUNC,
  C.O_RDWR | C.O_CREAT | C.O_EXCL,
];
const MODES = [0o600, 0o640, 0o644, 0o664, 0o700, 0o755];
const MAX_HELD = 6;
const MAX_SIZE = 64 * 1024;

/** Errnos a concurrently changing namespace explains for any path lookup. */
const NS = ['ENOENT', 'ENOTDIR', 'ELOOP'];

// ---------------------------------------------------------------------------------------
// Small helpers

type Outcome<T> = { ok: true; value: T } | { ok: false; code: string };

function codeOf(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string') return code;
  return `EXCEPTION ${e instanceof Error ? e.message : String(e)}`;
}

/** Deterministic bytes whose value depends on their position: misplaced data shows. */
function pattern(rng: Rng, len: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  const start = rng.int(256);
  const step = 1 + rng.int(254);
  for (let i = 0; i < len; i++) b[i] = (start + i * step + (i >>> 8)) & 255;
  return b;
}

const sha1 = (b: Buffer) => crypto.createHash('sha1').update(b).digest('hex');
/** O_RDONLY, O_WRONLY or O_RDWR (O_ACCMODE is 3 on Linux; node does not export it). */
const accmode = (flags: number) => flags & 3;

/** Where two buffers first differ (for mismatch messages). */
function firstDiff(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** setxattr + getxattr through python3 (node has no xattr API); prints `ok VALUE` or `err ERRNO`. */
const XATTR_PY = [
  'import os, sys, errno',
  'p, name, value = sys.argv[1:4]',
  'try:',
  '    os.setxattr(p, name, value.encode())',
  '    print("ok " + os.getxattr(p, name).decode())',
  'except OSError as e:',
  '    print("err " + errno.errorcode.get(e.errno, str(e.errno)))',
].join('\n');

function xattrRoundTrip(file: string, value: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', XATTR_PY, file, 'user.stress', value], { timeout: timeoutMs }, (err, stdout) => {
      const out = stdout.trim();
      if (out.startsWith('ok ')) return resolve(out.slice(3));
      if (out.startsWith('err ')) return reject(Object.assign(new Error(out), { code: out.slice(4) }));
      reject(new Error(`python3 xattr helper failed: ${err?.message ?? out}`));
    });
  });
}

// ---------------------------------------------------------------------------------------
// The model of the private files

interface PInode {
  readonly id: number;
  data: Buffer;
  /** Permission bits, once this child set them. */
  mode?: number;
  /** What was already found wrong with it ('data', 'size', 'nlink', ...): reported once each. */
  readonly wrong: Set<string>;
}

interface Held {
  readonly fh: fsp.FileHandle;
  /** Relative to the mount point: the name it was opened by. */
  readonly path: string;
  readonly flags: number;
  readonly isDir: boolean;
  /** Kept open for the whole run. */
  readonly anchor: boolean;
  /** For a private file: the inode it is open on. */
  readonly inode?: PInode;
}

const readable = (h: Held) => !h.isDir && accmode(h.flags) !== C.O_WRONLY;
const writable = (h: Held) => !h.isDir && accmode(h.flags) !== C.O_RDONLY;
const appending = (h: Held) => (h.flags & C.O_APPEND) !== 0;

function writeModel(node: PInode, offset: number, data: Buffer): void {
  const end = offset + data.length;
  if (end > node.data.length) node.data = Buffer.concat([node.data, Buffer.alloc(end - node.data.length)]);
  data.copy(node.data, offset);
}

function truncateModel(node: PInode, size: number): void {
  node.data = size <= node.data.length ? Buffer.from(node.data.subarray(0, size)) : Buffer.concat([node.data, Buffer.alloc(size - node.data.length)]);
}

// ---------------------------------------------------------------------------------------
// The child

class StressChild {
  private readonly rng: Rng;
  private readonly t0 = Date.now();
  private readonly sharedFds: Held[] = [];
  private readonly privateFds: Held[] = [];
  /** Private name -> inode, exactly as the directory should be. */
  private readonly names = new Map<string, PInode>();
  private lastInode = 0;
  private current?: { op: string; path: string; since: number };
  private ops = 0;
  private readonly opCounts: Record<string, number> = {};
  private readonly errnos: Record<string, number> = {};
  private readonly unacceptable: Problem[] = [];
  private unacceptableCount = 0;
  private readonly mismatches: Problem[] = [];
  private mismatchCount = 0;
  private finished = false;
  private readonly steps: Record<StepName, () => Promise<void>>;

  constructor(private readonly args: StressArgs) {
    this.rng = new Rng(args.seed);
    this.steps = {
      open: () => this.sharedOpen(),
      write: () => this.sharedWrite(),
      read: () => this.sharedRead(),
      append: () => this.sharedAppend(),
      truncate: () => this.sharedTruncate(),
      stat: () => this.sharedStat(),
      rename: () => this.sharedRename(),
      unlink: () => this.sharedUnlink(),
      link: () => this.sharedLink(),
      symlink: () => this.sharedSymlink(),
      readlink: () => this.sharedReadlink(),
      mkdir: () => this.sharedMkdir(),
      rmdir: () => this.sharedRmdir(),
      readdir: () => this.sharedReaddir(),
      chmod: () => this.sharedChmod(),
      utimes: () => this.sharedUtimes(),
      xattr: () => this.sharedXattr(),
      'fd.read': () => this.fdRead(),
      'fd.write': () => this.fdWrite(),
      'fd.stat': () => this.fdStat(),
      'fd.truncate': () => this.fdTruncate(),
      'fd.sync': () => this.fdSync(),
      'fd.attr': () => this.fdAttr(),
      'fd.close': () => this.fdClose(),
      'p.open': () => this.privOpen(),
      'p.write': () => this.privWrite(),
      'p.read': () => this.privRead(),
      'p.truncate': () => this.privTruncate(),
      'p.stat': () => this.privStat(),
      'p.rename': () => this.privRename(),
      'p.unlink': () => this.privUnlink(),
      'p.verify': () => this.privVerify(this.rng.pick(PRIVATE_NAMES)),
      'p.readdir': () => this.privReaddir(),
      'p.utimes': () => this.privUtimes(),
      'p.chmod': () => this.privChmod(),
      'p.xattr': () => this.privXattr(),
      'p.fsync': () => this.privFsync(),
      'p.close': () => this.privClose(),
    };
  }

  async run(): Promise<void> {
    this.startWatchdog();
    await this.openAnchors();
    while (Date.now() - this.t0 < this.args.durationMs) await this.steps[this.rng.weighted(WEIGHTS)]();
    await this.finish();
    this.finished = true;
    this.emit();
  }

  // --- bookkeeping ----------------------------------------------------------------------

  private abs(rel: string): string {
    return path.join(this.args.root, rel);
  }

  private problem(list: Problem[], op: string, p: string, errno?: string, detail?: string, since = Date.now()): void {
    if (list === this.unacceptable) this.unacceptableCount++;
    else this.mismatchCount++;
    if (list.length < MAX_LISTED) list.push({ t: since - this.t0, at: new Date(since).toISOString(), op, path: p, errno, detail });
  }

  private mismatch(op: string, p: string, detail: string): void {
    this.problem(this.mismatches, op, p, undefined, detail);
  }

  /** Runs one system call, counted and watched by the watchdog. */
  private async attempt<T>(op: string, p: string, fn: () => Promise<T>): Promise<Outcome<T> & { since: number }> {
    this.ops++;
    this.opCounts[op] = (this.opCounts[op] ?? 0) + 1;
    const since = Date.now();
    this.current = { op, path: p, since };
    let r: Outcome<T>;
    try {
      r = { ok: true, value: await fn() };
    } catch (e) {
      r = { ok: false, code: codeOf(e) };
    }
    this.current = undefined;
    if (TRACE) process.stderr.write(`child ${this.args.index} +${since - this.t0} ${op} ${p}: ${r.ok ? 'ok' : r.code}\n`);
    return { ...r, since };
  }

  /** A call whose only acceptable errors are `allowed` (what concurrency explains). */
  private async tolerate<T>(op: string, p: string, allowed: readonly string[], fn: () => Promise<T>): Promise<Outcome<T>> {
    const r = await this.attempt(op, p, fn);
    if (!r.ok) {
      if (allowed.includes(r.code)) this.errnos[`${op}:${r.code}`] = (this.errnos[`${op}:${r.code}`] ?? 0) + 1;
      else this.problem(this.unacceptable, op, p, r.code, undefined, r.since);
    }
    return r;
  }

  /** A call that must succeed (an operation on an fd this child holds, say). */
  private must<T>(op: string, p: string, fn: () => Promise<T>): Promise<Outcome<T>> {
    return this.tolerate(op, p, [], fn);
  }

  /**
   * A call on a shared fd this child holds. It must succeed, with one exception a
   * documented limit of the FUSE transport explains (README, "Requests need a path"):
   * libfuse answers ENOENT for fstat/fchmod/futimes/fsync on a directory another child
   * removed, before the request reaches xlstack.
   */
  private onHeld<T>(h: { isDir: boolean; path: string }, op: string, fn: () => Promise<T>): Promise<Outcome<T>> {
    return this.tolerate(op, h.path, h.isDir ? ['ENOENT'] : [], fn);
  }

  /** A call on the private files: the model predicts `expected` ('ok' or an errno). */
  private async predict<T>(op: string, p: string, expected: string, fn: () => Promise<T>): Promise<Outcome<T>> {
    const r = await this.attempt(op, p, fn);
    const got = r.ok ? 'ok' : r.code;
    if (got === expected) return r;
    if (!r.ok && expected === 'ok') this.problem(this.unacceptable, op, p, r.code, 'the model expected success', r.since);
    else this.problem(this.mismatches, op, p, r.ok ? undefined : r.code, `expected ${expected}, got ${got}`, r.since);
    return r;
  }

  // --- watchdog and report --------------------------------------------------------------

  private startWatchdog(): void {
    const timer = setInterval(() => {
      const now = Date.now();
      const c = this.current;
      if (c && now - c.since > this.args.hangMs) {
        this.problem(this.unacceptable, c.op, c.path, 'HANG', `no answer after ${now - c.since} ms`, c.since);
      } else if (now - this.t0 > this.args.deadlineMs) {
        this.problem(this.unacceptable, 'run', '', 'DEADLINE', `still running after ${now - this.t0} ms`);
      } else return;
      this.emit();
      process.kill(process.pid, 'SIGKILL'); // a stuck FUSE call would keep a normal exit waiting
    }, 250);
    timer.unref();
  }

  private report(): StressReport {
    const privateFinal: Record<string, { size: number; sha1: string }> = {};
    for (const [name, node] of this.names) privateFinal[name] = { size: node.data.length, sha1: sha1(node.data) };
    return {
      index: this.args.index,
      seed: this.args.seed,
      finished: this.finished,
      elapsedMs: Date.now() - this.t0,
      ops: this.ops,
      opCounts: this.opCounts,
      errnos: this.errnos,
      unacceptable: this.unacceptable,
      unacceptableCount: this.unacceptableCount,
      mismatches: this.mismatches,
      mismatchCount: this.mismatchCount,
      privateFinal,
    };
  }

  private emit(): void {
    fs.writeSync(1, JSON.stringify(this.report()) + '\n');
  }

  // --- paths ----------------------------------------------------------------------------

  private sharedPath(): string {
    let p = `shared/${this.rng.pick(SHARED_DIRS)}/${this.rng.pick(SHARED_NAMES)}`;
    if (this.rng.chance(0.2)) p += `/${this.rng.pick(SHARED_NAMES)}`;
    return p;
  }

  /** Symlink targets stay inside the shared namespace (a dangling one may be created through). */
  private symlinkTarget(): string {
    const name = this.rng.pick(SHARED_NAMES);
    switch (this.rng.int(3)) {
      case 0:
        return name;
      case 1:
        return `../${this.rng.pick(SHARED_DIRS)}/${name}`;
      default:
        return `${this.rng.pick(SHARED_NAMES)}/${name}`;
    }
  }

  private privatePath(name: string): string {
    return `private/c${this.args.index}/${name}`;
  }

  // --- held fds -------------------------------------------------------------------------

  private async openAnchors(): Promise<void> {
    const i = this.args.index;
    await this.holdShared(`shared/${SHARED_DIRS[i % 3]}/${SHARED_NAMES[i]}`, C.O_RDWR | C.O_CREAT, true);
    await this.holdShared(`shared/${SHARED_DIRS[(i + 1) % 3]}`, C.O_RDONLY | C.O_DIRECTORY, true);
    await this.openPrivate('q0', C.O_RDWR | C.O_CREAT, true);
  }

  /** Opens a shared path; keeps it open if `keep` (and there is room), else closes it. */
  private async holdShared(p: string, flags: number, keep: boolean): Promise<void> {
    const allowed = [...NS, 'EISDIR', ...((flags & C.O_EXCL) !== 0 ? ['EEXIST'] : [])];
    const r = await this.tolerate('open', p, allowed, () => fsp.open(this.abs(p), flags, 0o644));
    if (!r.ok) return;
    const st = await this.must('fstat', p, () => r.value.stat());
    const held: Held = { fh: r.value, path: p, flags, isDir: st.ok && st.value.isDirectory(), anchor: keep && this.sharedFds.length < 2 };
    if (keep && this.sharedFds.length < MAX_HELD) this.sharedFds.push(held);
    else await this.must('close', p, () => held.fh.close());
  }

  private pickFd(list: Held[], pred: (h: Held) => boolean): Held | undefined {
    const fit = list.filter(pred);
    return fit.length ? this.rng.pick(fit) : undefined;
  }

  /** Closes and forgets a held fd. */
  private async release(list: Held[], h: Held, op: string): Promise<void> {
    list.splice(list.indexOf(h), 1);
    await this.must(op, h.path, () => h.fh.close());
  }

  // --- shared namespace -----------------------------------------------------------------

  private sharedOpen(): Promise<void> {
    return this.holdShared(this.sharedPath(), this.rng.pick(SHARED_OPEN_FLAGS), this.rng.chance(0.5));
  }

  /** open + fn + close on a shared path: the open may fail as concurrency explains, the rest may not (but `fnAllowed`). */
  private async withFile(op: string, p: string, flags: number, fn: (fh: fsp.FileHandle) => Promise<unknown>, fnAllowed: string[] = []): Promise<void> {
    const r = await this.tolerate(`${op}/open`, p, [...NS, 'EISDIR'], () => fsp.open(this.abs(p), flags, 0o644));
    if (!r.ok) return;
    await this.tolerate(op, p, fnAllowed, () => fn(r.value));
    await this.must(`${op}/close`, p, () => r.value.close());
  }

  private sharedWrite(): Promise<void> {
    const [offset, data] = [this.rng.int(MAX_SIZE), pattern(this.rng, 1 + this.rng.int(8192))];
    return this.withFile('write', this.sharedPath(), C.O_WRONLY | C.O_CREAT, (fh) => fh.write(data, 0, data.length, offset));
  }

  private sharedRead(): Promise<void> {
    const [offset, len] = [this.rng.int(MAX_SIZE), 1 + this.rng.int(16384)];
    // O_RDONLY opens a directory too; reading it is EISDIR.
    return this.withFile('read', this.sharedPath(), C.O_RDONLY, (fh) => fh.read(Buffer.alloc(len), 0, len, offset), ['EISDIR']);
  }

  private sharedAppend(): Promise<void> {
    const data = pattern(this.rng, 1 + this.rng.int(4096));
    return this.withFile('append', this.sharedPath(), C.O_WRONLY | C.O_CREAT | C.O_APPEND, (fh) => fh.write(data, 0, data.length, null));
  }

  private async sharedTruncate(): Promise<void> {
    const [p, size] = [this.sharedPath(), this.rng.int(MAX_SIZE)];
    await this.tolerate('truncate', p, [...NS, 'EISDIR'], () => fsp.truncate(this.abs(p), size));
  }

  private async sharedStat(): Promise<void> {
    const [p, follow] = [this.sharedPath(), this.rng.chance(0.5)];
    await this.tolerate(follow ? 'stat' : 'lstat', p, NS, () => (follow ? fsp.stat(this.abs(p)) : fsp.lstat(this.abs(p))));
  }

  private async sharedRename(): Promise<void> {
    const [a, b] = [this.sharedPath(), this.sharedPath()];
    // EINVAL: a directory into itself; EISDIR/ENOTDIR/ENOTEMPTY/EEXIST: file over directory and back.
    await this.tolerate('rename', `${a} -> ${b}`, [...NS, 'EISDIR', 'ENOTEMPTY', 'EEXIST', 'EINVAL'], () => fsp.rename(this.abs(a), this.abs(b)));
  }

  private async sharedUnlink(): Promise<void> {
    const p = this.sharedPath();
    await this.tolerate('unlink', p, [...NS, 'EISDIR'], () => fsp.unlink(this.abs(p)));
  }

  private async sharedLink(): Promise<void> {
    const [a, b] = [this.sharedPath(), this.sharedPath()];
    await this.tolerate('link', `${a} -> ${b}`, [...NS, 'EEXIST', 'EPERM'], () => fsp.link(this.abs(a), this.abs(b)));
  }

  private async sharedSymlink(): Promise<void> {
    const [p, target] = [this.sharedPath(), this.symlinkTarget()];
    await this.tolerate('symlink', p, [...NS, 'EEXIST'], () => fsp.symlink(target, this.abs(p)));
  }

  private async sharedReadlink(): Promise<void> {
    const p = this.sharedPath();
    const r = await this.tolerate('readlink', p, [...NS, 'EINVAL'], () => fsp.readlink(this.abs(p)));
    if (r.ok && !/^(\.\.\/d[0-2]\/f\d+|f\d+(\/f\d+)?)$/.test(r.value)) this.mismatch('readlink', p, `a target no child wrote: ${JSON.stringify(r.value)}`);
  }

  private async sharedMkdir(): Promise<void> {
    const p = this.sharedPath();
    await this.tolerate('mkdir', p, [...NS, 'EEXIST'], () => fsp.mkdir(this.abs(p), 0o755));
  }

  private async sharedRmdir(): Promise<void> {
    const p = this.sharedPath();
    await this.tolerate('rmdir', p, [...NS, 'ENOTEMPTY'], () => fsp.rmdir(this.abs(p)));
  }

  /** Lists a shared directory (or the fixed levels above): only names the children use may appear. */
  private async sharedReaddir(): Promise<void> {
    const level = this.rng.int(10);
    const p = level === 0 ? '' : level === 1 ? 'shared' : level < 5 ? `shared/${this.rng.pick(SHARED_DIRS)}` : this.sharedPath();
    const r = await this.tolerate('readdir', p, NS, () => fsp.readdir(this.abs(p)));
    if (!r.ok) return;
    const names = [...r.value].sort();
    if (level === 0 && names.join() !== 'private,shared') this.mismatch('readdir', '/', `the mount root lists ${JSON.stringify(names)}`);
    else if (level === 1 && names.join() !== SHARED_DIRS.join()) this.mismatch('readdir', p, `lists ${JSON.stringify(names)}`);
    else if (level > 1 && !names.every((n) => SHARED_NAMES.includes(n))) this.mismatch('readdir', p, `names no child made: ${JSON.stringify(names)}`);
  }

  private async sharedChmod(): Promise<void> {
    const [p, mode] = [this.sharedPath(), this.rng.pick(MODES)];
    await this.tolerate('chmod', p, NS, () => fsp.chmod(this.abs(p), mode));
  }

  private async sharedUtimes(): Promise<void> {
    const [p, t] = [this.sharedPath(), 1e9 + this.rng.int(7e8)];
    await this.tolerate('utimes', p, NS, () => fsp.utimes(this.abs(p), t, t));
  }

  private async sharedXattr(): Promise<void> {
    const [p, value] = [this.sharedPath(), `v${this.rng.int(1e6)}`];
    // ENODATA: renamed over between the set and the get.
    await this.tolerate('xattr', p, [...NS, 'ENODATA'], () => xattrRoundTrip(this.abs(p), value, this.args.hangMs));
  }

  // --- held shared fds: every call must succeed -----------------------------------------

  private async fdRead(): Promise<void> {
    const h = this.pickFd(this.sharedFds, readable);
    if (!h) return this.sharedOpen();
    const [offset, len] = [this.rng.int(MAX_SIZE), 1 + this.rng.int(16384)];
    await this.must('fd.read', h.path, () => h.fh.read(Buffer.alloc(len), 0, len, offset));
  }

  private async fdWrite(): Promise<void> {
    const h = this.pickFd(this.sharedFds, writable);
    if (!h) return this.sharedOpen();
    const [offset, data] = [this.rng.int(MAX_SIZE), pattern(this.rng, 1 + this.rng.int(8192))];
    const r = await this.must('fd.write', h.path, () => h.fh.write(data, 0, data.length, appending(h) ? null : offset));
    if (r.ok && r.value.bytesWritten !== data.length) this.mismatch('fd.write', h.path, `wrote ${r.value.bytesWritten} of ${data.length} bytes`);
  }

  private async fdStat(): Promise<void> {
    const h = this.pickFd(this.sharedFds, () => true);
    if (!h) return this.sharedOpen();
    const r = await this.onHeld(h, 'fd.stat', () => h.fh.stat());
    if (r.ok && r.value.isDirectory() !== h.isDir) this.mismatch('fd.stat', h.path, `isDirectory ${r.value.isDirectory()} on an fd opened as ${h.isDir ? 'a directory' : 'a file'}`);
  }

  private async fdTruncate(): Promise<void> {
    const h = this.pickFd(this.sharedFds, writable);
    if (!h) return this.sharedOpen();
    const size = this.rng.int(MAX_SIZE);
    await this.must('fd.truncate', h.path, () => h.fh.truncate(size));
  }

  private async fdSync(): Promise<void> {
    const h = this.pickFd(this.sharedFds, () => true);
    if (!h) return this.sharedOpen();
    const data = this.rng.chance(0.5);
    await this.onHeld(h, data ? 'fd.datasync' : 'fd.fsync', () => (data ? h.fh.datasync() : h.fh.sync()));
  }

  private async fdAttr(): Promise<void> {
    const h = this.pickFd(this.sharedFds, () => true);
    if (!h) return this.sharedOpen();
    const [mode, t] = [this.rng.pick(MODES), 1e9 + this.rng.int(7e8)];
    if (this.rng.chance(0.5)) await this.onHeld(h, 'fd.chmod', () => h.fh.chmod(h.isDir ? mode | 0o700 : mode));
    else await this.onHeld(h, 'fd.utimes', () => h.fh.utimes(t, t));
  }

  private async fdClose(): Promise<void> {
    const h = this.pickFd(this.sharedFds, (x) => !x.anchor);
    if (!h) return this.sharedOpen();
    await this.release(this.sharedFds, h, 'fd.close');
  }

  // --- private files: every outcome predicted -------------------------------------------

  /** Opens a private name as the model says it should go; keeps the fd if `keep`. */
  private async openPrivate(name: string, flags: number, keep: boolean): Promise<void> {
    const p = this.privatePath(name);
    const node = this.names.get(name);
    const creat = (flags & C.O_CREAT) !== 0;
    const expected = node ? (creat && (flags & C.O_EXCL) !== 0 ? 'EEXIST' : 'ok') : creat ? 'ok' : 'ENOENT';
    const r = await this.predict('p.open', p, expected, () => fsp.open(this.abs(p), flags, 0o644));
    if (!r.ok) return;
    if (expected !== 'ok') return void (await this.must('p.close', p, () => r.value.close()));
    const inode = node ?? { id: ++this.lastInode, data: Buffer.alloc(0), wrong: new Set<string>() };
    if (!node) this.names.set(name, inode);
    if ((flags & C.O_TRUNC) !== 0) inode.data = Buffer.alloc(0);
    const held: Held = { fh: r.value, path: p, flags, isDir: false, anchor: keep && this.privateFds.length === 0, inode };
    if (keep && this.privateFds.length < MAX_HELD) this.privateFds.push(held);
    else await this.must('p.close', p, () => held.fh.close());
  }

  private privOpen(): Promise<void> {
    return this.openPrivate(this.rng.pick(PRIVATE_NAMES), this.rng.pick(PRIVATE_OPEN_FLAGS), this.rng.chance(0.6));
  }

  private async privWrite(): Promise<void> {
    const h = this.pickFd(this.privateFds, writable);
    if (!h) return this.privOpen();
    const node = h.inode!;
    const offset = appending(h) ? node.data.length : this.rng.int(Math.min(node.data.length + 4096, 4 * MAX_SIZE));
    const data = pattern(this.rng, 1 + this.rng.int(8192));
    const r = await this.predict('p.write', h.path, 'ok', () => h.fh.write(data, 0, data.length, appending(h) ? null : offset));
    if (!r.ok) return;
    if (r.value.bytesWritten !== data.length) this.mismatch('p.write', h.path, `wrote ${r.value.bytesWritten} of ${data.length} bytes at ${offset}`);
    writeModel(node, offset, data.subarray(0, r.value.bytesWritten));
  }

  /** Reads [offset, offset+len) through a held fd and compares with the model. */
  private async checkRead(h: Held, offset: number, len: number, op: string): Promise<void> {
    const node = h.inode!;
    const r = await this.predict(op, h.path, 'ok', () => h.fh.read(Buffer.alloc(len), 0, len, offset));
    if (!r.ok) return;
    const want = node.data.subarray(Math.min(offset, node.data.length), Math.min(offset + len, node.data.length));
    const got = r.value.buffer.subarray(0, r.value.bytesRead);
    if (!got.equals(want) && this.firstTime(node, 'data')) {
      this.mismatch(op, h.path, `inode ${node.id} [${offset}, +${len}): got ${got.length} bytes, want ${want.length}; first difference at +${firstDiff(got, want)} (file size ${node.data.length})`);
    }
  }

  private async privRead(): Promise<void> {
    const h = this.pickFd(this.privateFds, readable);
    if (!h) return this.privOpen();
    const size = h.inode!.data.length;
    await this.checkRead(h, this.rng.int(size + 2048), 1 + this.rng.int(16384), 'p.read');
  }

  private async privTruncate(): Promise<void> {
    const size = this.rng.int(MAX_SIZE);
    const h = this.rng.chance(0.5) ? this.pickFd(this.privateFds, writable) : undefined;
    if (h) {
      const r = await this.predict('p.ftruncate', h.path, 'ok', () => h.fh.truncate(size));
      if (r.ok) truncateModel(h.inode!, size);
      return;
    }
    const name = this.rng.pick(PRIVATE_NAMES);
    const node = this.names.get(name);
    const p = this.privatePath(name);
    const r = await this.predict('p.truncate', p, node ? 'ok' : 'ENOENT', () => fsp.truncate(this.abs(p), size));
    if (r.ok && node) truncateModel(node, size);
  }

  /** True the first time a kind of damage is found on an inode (later ones would only repeat it). */
  private firstTime(node: PInode, what: string): boolean {
    if (node.wrong.has(what)) return false;
    node.wrong.add(what);
    return true;
  }

  private describe(node: PInode): string {
    const names = [...this.names].filter(([, n]) => n === node).map(([name]) => name);
    return names.length ? `named ${names.join(', ')}` : 'unlinked, still open';
  }

  /** Checks a stat result against the model: type, size, link count, permission bits. */
  private checkStat(op: string, p: string, st: fs.Stats, node: PInode): void {
    const links = [...this.names.values()].filter((n) => n === node).length;
    const want = { file: true, size: node.data.length, nlink: links, mode: node.mode ?? st.mode & 0o7777 };
    const got = { file: st.isFile(), size: st.size, nlink: st.nlink, mode: st.mode & 0o7777 };
    const wrong = (Object.keys(want) as (keyof typeof want)[]).filter((k) => got[k] !== want[k]);
    if (wrong.length === 0 || !this.firstTime(node, wrong.join())) return;
    this.mismatch(op, p, `inode ${node.id}: ${wrong.map((k) => `${k} ${got[k]}, want ${want[k]}`).join('; ')} (${this.describe(node)})`);
  }

  private async privStat(): Promise<void> {
    const h = this.rng.chance(0.5) ? this.pickFd(this.privateFds, () => true) : undefined;
    if (h) {
      const r = await this.predict('p.fstat', h.path, 'ok', () => h.fh.stat());
      if (r.ok) this.checkStat('p.fstat', h.path, r.value, h.inode!);
      return;
    }
    const name = this.rng.pick(PRIVATE_NAMES);
    const node = this.names.get(name);
    const p = this.privatePath(name);
    const r = await this.predict('p.stat', p, node ? 'ok' : 'ENOENT', () => fsp.stat(this.abs(p)));
    if (r.ok && node) this.checkStat('p.stat', p, r.value, node);
  }

  private async privRename(): Promise<void> {
    const [a, b] = [this.rng.pick(PRIVATE_NAMES), this.rng.pick(PRIVATE_NAMES)];
    const node = this.names.get(a);
    const r = await this.predict('p.rename', `${this.privatePath(a)} -> ${b}`, node ? 'ok' : 'ENOENT', () =>
      fsp.rename(this.abs(this.privatePath(a)), this.abs(this.privatePath(b))),
    );
    if (!r.ok || !node || a === b) return;
    this.names.set(b, node);
    this.names.delete(a);
  }

  private async privUnlink(): Promise<void> {
    const name = this.rng.pick(PRIVATE_NAMES);
    const p = this.privatePath(name);
    const r = await this.predict('p.unlink', p, this.names.has(name) ? 'ok' : 'ENOENT', () => fsp.unlink(this.abs(p)));
    if (r.ok) this.names.delete(name);
  }

  /** Opens a private name afresh and reads all of it. */
  private async privVerify(name: string): Promise<void> {
    const p = this.privatePath(name);
    const node = this.names.get(name);
    const r = await this.predict('p.open', p, node ? 'ok' : 'ENOENT', () => fsp.open(this.abs(p), C.O_RDONLY));
    if (!r.ok) return;
    if (node) await this.checkRead({ fh: r.value, path: p, flags: C.O_RDONLY, isDir: false, anchor: false, inode: node }, 0, node.data.length + 4096, 'p.verify');
    await this.must('p.close', p, () => r.value.close());
  }

  private async privReaddir(): Promise<void> {
    const p = `private/c${this.args.index}`;
    const r = await this.predict('p.readdir', p, 'ok', () => fsp.readdir(this.abs(p)));
    const want = [...this.names.keys()].sort().join();
    if (r.ok && [...r.value].sort().join() !== want) this.mismatch('p.readdir', p, `lists [${[...r.value].sort()}], want [${want}]`);
  }

  private async privUtimes(): Promise<void> {
    const name = this.rng.pick(PRIVATE_NAMES);
    const [p, t, node] = [this.privatePath(name), 1e9 + this.rng.int(7e8), this.names.get(name)];
    const r = await this.predict('p.utimes', p, node ? 'ok' : 'ENOENT', () => fsp.utimes(this.abs(p), t, t));
    if (!r.ok || !node) return;
    const st = await this.predict('p.stat', p, 'ok', () => fsp.stat(this.abs(p)));
    if (st.ok && st.value.mtimeMs !== t * 1000) this.mismatch('p.utimes', p, `mtime ${st.value.mtimeMs / 1000} after utimes to ${t}`);
  }

  private async privChmod(): Promise<void> {
    const name = this.rng.pick(PRIVATE_NAMES);
    const [p, mode, node] = [this.privatePath(name), this.rng.pick(MODES), this.names.get(name)];
    const r = await this.predict('p.chmod', p, node ? 'ok' : 'ENOENT', () => fsp.chmod(this.abs(p), mode));
    if (r.ok && node) node.mode = mode;
  }

  private async privXattr(): Promise<void> {
    const name = this.rng.pick(PRIVATE_NAMES);
    const [p, value, node] = [this.privatePath(name), `v${this.rng.int(1e6)}`, this.names.get(name)];
    const r = await this.predict('p.xattr', p, node ? 'ok' : 'ENOENT', () => xattrRoundTrip(this.abs(p), value, this.args.hangMs));
    if (!r.ok || !node) return;
    if (r.value !== value) this.mismatch('p.xattr', p, `getxattr gave ${JSON.stringify(r.value)} after setting ${JSON.stringify(value)}`);
  }

  private async privFsync(): Promise<void> {
    const h = this.pickFd(this.privateFds, () => true);
    if (!h) return this.privOpen();
    await this.predict('p.fsync', h.path, 'ok', () => h.fh.sync());
  }

  private async privClose(): Promise<void> {
    const h = this.pickFd(this.privateFds, (x) => !x.anchor);
    if (!h) return this.privOpen();
    await this.release(this.privateFds, h, 'p.close');
  }

  // --- the end --------------------------------------------------------------------------

  /** Checks and closes every held fd, then every private name and the private directory. */
  private async finish(): Promise<void> {
    for (const h of [...this.privateFds]) {
      const st = await this.predict('p.fstat', h.path, 'ok', () => h.fh.stat());
      if (st.ok) this.checkStat('p.fstat', h.path, st.value, h.inode!);
      if (readable(h)) await this.checkRead(h, 0, h.inode!.data.length + 4096, 'p.final-read');
      await this.release(this.privateFds, h, 'p.close');
    }
    for (const h of [...this.sharedFds]) {
      await this.onHeld(h, 'fd.stat', () => h.fh.stat());
      await this.release(this.sharedFds, h, 'fd.close');
    }
    for (const name of PRIVATE_NAMES) await this.privVerify(name);
    await this.privReaddir();
  }
}

if (require.main === module) {
  const args = JSON.parse(process.argv[2]) as StressArgs;
  new StressChild(args).run().then(
    () => process.exit(0),
    (e) => {
      process.stderr.write(`stress child ${args.index}: ${(e as Error).stack ?? e}\n`);
      process.exit(2);
    },
  );
}
