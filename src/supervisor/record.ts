// What a mount's worker tells its supervisor, so that a new worker can honour what the
// kernel holds when the worker dies: the negotiated INIT, each nodeid (its GFID and lookup
// count), each open handle (GFID, open flags, openId). One line of JSON per change, written
// synchronously to a pipe the supervisor reads, before the reply that hands it to the kernel.
import * as fs from 'fs';
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
  | { readonly e: 'flush'; readonly gfid: Gfid; readonly owner: string };

/** What a new worker is given to go on from. */
export interface Resume {
  readonly conn: WireConn;
  readonly nodes: [number, Gfid, number][];
  readonly handles: HandleRecord[];
  readonly generation: number;
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

  /** Takes a chunk of the pipe; a line cut by the writer's death is dropped at its end (see end()). */
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
    switch (ev.e) {
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

  resume(generation: number): Resume | undefined {
    if (!this.conn) return undefined;
    return { conn: this.conn, nodes: [...this.nodes].map(([id, r]) => [id, r.gfid, r.n]), handles: [...this.handles.values()], generation, maxNodeid: this.maxNodeid, intents: [...this.intents], appends: [...this.appends], locks: [...this.locks] };
  }

  dump(): Record<string, unknown> {
    return { init: !!this.conn, nodeids: this.nodes.size, handles: this.handles.size, intents: this.intents.size, lockRequests: this.locks.length, locksDropped: this.locksDropped, unreadable: this.bad };
  }
}

/** How long a record write may keep retrying a full pipe (the supervisor reads it as it comes). */
const WRITE_BOUND_MS = 5000;

/**
 * The worker's side. An event that must be on record before a fop is carried out (an
 * intent) is written at once; the others (a nodeid or handle the kernel is about to be
 * given) wait in a buffer that is written, in one write(2), before the next reply leaves.
 */
export class RecordWriter {
  private pending = '';

  constructor(private readonly fd: number) {}

  /** Before the next reply. */
  add(ev: RecordEvent): void {
    this.pending += JSON.stringify(ev) + '\n';
  }

  /** Now, with whatever waits. */
  write(ev: RecordEvent): void {
    this.add(ev);
    this.flush();
  }

  flush(): void {
    if (!this.pending) return;
    let buf = Buffer.from(this.pending);
    this.pending = '';
    const until = Date.now() + WRITE_BOUND_MS;
    while (buf.length) {
      try {
        buf = buf.subarray(fs.writeSync(this.fd, buf));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > until) throw new Error(`the record for the supervisor could not be written: ${(e as Error).message}`);
      }
    }
  }
}
