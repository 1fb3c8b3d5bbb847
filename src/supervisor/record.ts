// What a mount's worker leaves for its supervisor, so that a new worker can honour what the
// kernel holds when the worker dies: the negotiated INIT, each nodeid (its GFID and lookup
// count), each open handle (GFID, open flags, openId), the locks taken through them. One line
// of JSON per change, written synchronously before the reply that hands it to the kernel, to
// a file in a directory the supervisor gave (on tmpfs: the page cache outlives the worker).
// Nobody reads it while the worker lives: the supervisor does no work per request, and reads
// it only when a worker is gone. Each file starts with a snapshot of the whole state; past a
// size the worker starts a new one and removes the old.
import * as fs from 'fs';
import * as path from 'path';
import type { ConnInfo } from '../fuse/kernel/fs';
import type { Flock, Gfid } from '../core/types';

/** A worker's exit code when it retired for a live upgrade (EX_TEMPFAIL): not a failure. */
export const RETIRED = 75;

/** A handle as the kernel holds it. */
export interface HandleRecord {
  readonly fh: number;
  readonly gfid: Gfid;
  readonly flags: number;
  readonly dir: boolean;
  readonly openId: string;
}

/** A lock taken (or given back) through a handle, as the kernel asked for it. */
export interface LockRecord {
  readonly fh: number;
  readonly gfid: Gfid;
  /** The kernel's lock owner, in hex (Req.lkOwner). */
  readonly owner: string;
  readonly flock: boolean;
  readonly lock: Flock;
}

/** ConnInfo as it travels (its flags are a bigint). */
export interface WireConn {
  readonly major: number;
  readonly minor: number;
  readonly maxWrite: number;
  readonly maxRead: number;
  readonly flags: string;
}

export type RecordEvent =
  | { readonly e: 'init'; readonly conn: WireConn }
  | { readonly e: 'look'; readonly id: number; readonly gfid: Gfid }
  | { readonly e: 'forget'; readonly id: number; readonly n: number }
  | { readonly e: 'open'; readonly h: HandleRecord }
  | { readonly e: 'close'; readonly fh: number }
  | { readonly e: 'intent'; readonly u: number; readonly gfid: Gfid }
  | { readonly e: 'append'; readonly u: number; readonly size: number }
  | { readonly e: 'lk'; readonly l: LockRecord }
  | { readonly e: 'flush'; readonly gfid: Gfid; readonly owner: string }
  /** The whole state: the first line of every file. */
  | { readonly e: 'snap'; readonly s: State };

/** What a new worker is given to go on from. */
export interface Resume extends State {
  readonly conn: WireConn;
  readonly generation: number;
}

/** Everything on record (no conn before INIT). */
export interface State {
  readonly conn?: WireConn;
  readonly nodes: [number, Gfid, number][];
  readonly handles: HandleRecord[];
  /** The highest nodeid ever given to the kernel: a new worker never gives one out again. */
  readonly maxNodeid: number;
  /** The GFIDs chosen for the latest requests that make objects, by unique. */
  readonly intents: [number, Gfid][];
  /** The file sizes the latest appends saw before writing, by unique. */
  readonly appends: [number, number][];
  /** The lock requests that made the locks held now, in order: a new worker takes them again. */
  readonly locks: LockRecord[];
}

/** Lock requests kept at most (a process locking and unlocking a file it keeps open adds to them). */
export const LOCKS_KEPT = 65536;

/** How many intents are kept: a request sent again was in flight when its worker died, so recent. */
export const INTENTS_KEPT = 4096;

export const toWireConn = (c: ConnInfo): WireConn => ({ major: c.major, minor: c.minor, maxWrite: c.maxWrite, maxRead: c.maxRead, flags: c.flags.toString() });
export const fromWireConn = (c: WireConn): ConnInfo => ({ major: c.major, minor: c.minor, maxWrite: c.maxWrite, maxRead: c.maxRead, flags: BigInt(c.flags) });

/** The supervisor's side: the state the events build up. */
export class MountRecord {
  conn?: WireConn;
  private readonly nodes = new Map<number, { gfid: Gfid; n: number }>();
  private readonly handles = new Map<number, HandleRecord>();
  private maxNodeid = 1;
  private readonly intents = new Map<number, Gfid>();
  private readonly appends = new Map<number, number>();
  private locks: LockRecord[] = [];
  /** Lock requests forgotten past LOCKS_KEPT (a new worker would not hold their locks). */
  private locksDropped = 0;
  private partial = '';
  /** Lines that could not be read (a worker killed in the middle of one). */
  bad = 0;

  /** Takes record text, in pieces or whole; a line cut by the writer's death is dropped at its end (see end()). */
  push(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop()!;
    for (const l of lines) if (l) this.apply(l);
  }

  /** The writer is gone: an unfinished line was never followed by its reply. */
  end(): void {
    if (this.partial) this.bad++;
    this.partial = '';
  }

  private apply(line: string): void {
    let ev: RecordEvent;
    try {
      ev = JSON.parse(line);
    } catch {
      this.bad++;
      return;
    }
    this.take(ev);
  }

  /** One event, as the worker writes it. */
  take(ev: RecordEvent): void {
    switch (ev.e) {
      case 'snap':
        return this.adopt(ev.s);
      case 'init':
        this.conn = ev.conn;
        return;
      case 'look': {
        this.maxNodeid = Math.max(this.maxNodeid, ev.id);
        const r = this.nodes.get(ev.id);
        if (r) r.n++;
        else this.nodes.set(ev.id, { gfid: ev.gfid, n: 1 });
        return;
      }
      case 'forget': {
        const r = this.nodes.get(ev.id);
        if (r && (r.n -= ev.n) <= 0) this.nodes.delete(ev.id);
        return;
      }
      case 'open':
        this.handles.set(ev.h.fh, ev.h);
        return;
      case 'close':
        this.handles.delete(ev.fh);
        // Its flock locks went with it; its POSIX locks with the flush that came before.
        this.locks = this.locks.filter((l) => l.fh !== ev.fh);
        return;
      case 'append':
        this.appends.set(ev.u, ev.size);
        if (this.appends.size > INTENTS_KEPT) this.appends.delete(this.appends.keys().next().value!);
        return;
      case 'lk':
        this.locks.push(ev.l);
        if (this.locks.length > LOCKS_KEPT) (this.locks.shift(), this.locksDropped++);
        return;
      case 'flush':
        // close(2) of any fd of the file: the owner's POSIX locks on it go.
        this.locks = this.locks.filter((l) => l.flock || l.owner !== ev.owner || l.gfid !== ev.gfid);
        return;
      case 'intent':
        this.intents.set(ev.u, ev.gfid);
        if (this.intents.size > INTENTS_KEPT) this.intents.delete(this.intents.keys().next().value!);
        return;
    }
  }

  /** Replaces everything with `s`. */
  adopt(s: State): void {
    this.conn = s.conn;
    this.nodes.clear();
    for (const [id, gfid, n] of s.nodes) this.nodes.set(id, { gfid, n });
    this.handles.clear();
    for (const h of s.handles) this.handles.set(h.fh, h);
    this.maxNodeid = s.maxNodeid;
    this.intents.clear();
    for (const [u, g] of s.intents) this.intents.set(u, g);
    this.appends.clear();
    for (const [u, n] of s.appends) this.appends.set(u, n);
    this.locks = [...s.locks];
  }

  state(): State {
    const nodes: [number, Gfid, number][] = [...this.nodes].map(([id, r]) => [id, r.gfid, r.n]);
    return { conn: this.conn, nodes, handles: [...this.handles.values()], maxNodeid: this.maxNodeid, intents: [...this.intents], appends: [...this.appends], locks: [...this.locks] };
  }

  resume(generation: number): Resume | undefined {
    const conn = this.conn;
    return conn && { ...this.state(), conn, generation };
  }

  dump(): Record<string, unknown> {
    return { init: !!this.conn, nodeids: this.nodes.size, handles: this.handles.size, intents: this.intents.size, lockRequests: this.locks.length, locksDropped: this.locksDropped, unreadable: this.bad };
  }
}

/**
 * Past this size, or twice its snapshot's if that is more (a snapshot costs about as much to
 * write as what it replaces), a worker starts a new record file.
 */
export const RECORD_FILE_BYTES = 4 << 20;

const fileSeq = (name: string): number => (/^(\d+)\.log$/.exec(name) ? Number(name.slice(0, -4)) : -1);
const recordFiles = (dir: string): number[] =>
  fs
    .readdirSync(dir)
    .map(fileSeq)
    .filter((n) => n >= 0)
    .sort((a, b) => b - a);

/** An event as one line; the two of nearly every lookup spelled out (JSON.stringify costs several times more). */
function lineOf(ev: RecordEvent): string {
  if (ev.e === 'look') return `{"e":"look","id":${ev.id},"gfid":${JSON.stringify(ev.gfid)}}\n`;
  if (ev.e === 'forget') return `{"e":"forget","id":${ev.id},"n":${ev.n}}\n`;
  return JSON.stringify(ev) + '\n';
}

/**
 * The supervisor's side, once a worker is gone: the newest record file that starts with a
 * whole snapshot (a worker may die while it writes the next one), with the events after it;
 * a line cut by the worker's death is dropped (its reply never left).
 */
export function readRecord(dir: string): MountRecord {
  for (const seq of recordFiles(dir)) {
    const text = fs.readFileSync(path.join(dir, `${seq}.log`), 'utf8');
    const first = text.indexOf('\n');
    if (first < 0 || !text.startsWith('{"e":"snap"')) continue;
    const r = new MountRecord();
    r.push(text);
    r.end();
    return r;
  }
  return new MountRecord();
}

/**
 * The worker's side. An event that must be on record before a fop is carried out (an
 * intent) is written at once; the others (a nodeid or handle the kernel is about to be
 * given) wait in a buffer that is written, in one write(2), before the next reply leaves.
 * It keeps the state too, to begin each new file with it.
 */
export class RecordWriter {
  private readonly record = new MountRecord();
  private pending = '';
  private fd = -1;
  private size = 0;
  private limit = RECORD_FILE_BYTES;

  constructor(
    private readonly dir: string,
    from?: State,
  ) {
    if (from) this.record.adopt(from);
    this.startFile();
  }

  /** Before the next reply. */
  add(ev: RecordEvent): void {
    this.pending += lineOf(ev);
    this.record.take(ev);
  }

  /** Now, with whatever waits. */
  write(ev: RecordEvent): void {
    this.add(ev);
    this.flush();
  }

  flush(): void {
    if (!this.pending) return;
    const text = this.pending;
    this.pending = '';
    this.writeAll(text);
    if (this.size > this.limit) this.startFile();
  }

  /** A new file that starts with the whole state; the older ones go once it is written. */
  private startFile(): void {
    const seq = (recordFiles(this.dir)[0] ?? 0) + 1;
    const fd = fs.openSync(path.join(this.dir, `${seq}.log`), 'wx', 0o600);
    const old = this.fd;
    this.fd = fd;
    this.size = 0;
    this.writeAll(lineOf({ e: 'snap', s: this.record.state() }));
    this.limit = Math.max(RECORD_FILE_BYTES, 2 * this.size);
    if (old >= 0) fs.closeSync(old);
    for (const n of recordFiles(this.dir)) if (n < seq) fs.rmSync(path.join(this.dir, `${n}.log`), { force: true });
  }

  private writeAll(text: string): void {
    try {
      // A regular file takes it whole; a short write (a full disk) is finished from a Buffer.
      let done = fs.writeSync(this.fd, text);
      const bytes = done === text.length ? done : Buffer.byteLength(text);
      if (done < bytes) for (const buf = Buffer.from(text); done < buf.length; ) done += fs.writeSync(this.fd, buf, done);
      this.size += bytes;
    } catch (e) {
      throw new Error(`the record for the supervisor could not be written: ${(e as Error).message}`);
    }
  }
}
