// The brick's memory of what it answered to requests that are not safe to carry out twice,
// kept on its disk so that a brick restarted after a crash still has it.
import * as fs from 'fs';
import * as path from 'path';
import type { Logger } from '../../src/core/index';

/** What a fop ended with, as a reply carries it (no fd: a replayed open gets a new one). */
export type Outcome = { readonly ok: true; readonly value?: unknown } | { readonly ok: false; readonly errno: string; readonly message?: string };

/** Noted before a fop that cannot be recognised as done afterwards (an append): what it saw. */
export interface Intent {
  /** The file's size before an append. */
  readonly size?: number;
}

/** One line of the log: an intent (`i`) or an outcome (`o`) for a key. */
interface Line {
  readonly k: string;
  readonly i?: Intent;
  readonly o?: Outcome;
}

export interface Entry {
  intent?: Intent;
  outcome?: Outcome;
}

/** How many requests are remembered (the oldest go first); a resend comes within frame-timeout. */
export const REPLY_CACHE_ENTRIES = 16384;
/** The log is rewritten with only what is remembered when it holds this many times as many lines. */
const COMPACT_FACTOR = 2;
/** A line longer than this is not kept (replies of the fops cached are an Iatt at most). */
const MAX_LINE = 4096;

/**
 * The reply cache of one protocol/server volume: key (client identity + request id) ->
 * intent and outcome, in memory (insertion order: the oldest are forgotten first, past
 * `capacity`) and in an append-only log of JSON lines, each written with one write(2)
 * before the reply leaves. A SIGKILLed brick loses nothing written (it is in the page
 * cache); a power cut may lose the last lines, as it may lose the fops themselves (posix
 * does not sync them either). The log is read back at start (a torn last line is skipped)
 * and compacted when it grows to twice the capacity. Without a directory the cache lives
 * in memory only. One cache per file in the process: a graph switch's new server shares it
 * with the old one.
 */
export class ReplyCache {
  private static readonly open = new Map<string, ReplyCache>();
  private readonly entries = new Map<string, Entry>();
  private fd?: number;
  private lines = 0;
  /** Released by its last user: what comes after is not kept (a stopped brick keeps nothing more). */
  private closed = false;
  private users = 0;

  private constructor(
    private readonly file: string | undefined,
    private readonly log: Logger,
    readonly capacity: number,
  ) {
    if (!file) return;
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    this.load(file);
    this.compact();
  }

  /** The cache kept in `file` (shared in this process), or a memory-only one. */
  static acquire(file: string | undefined, log: Logger, capacity = REPLY_CACHE_ENTRIES): ReplyCache {
    if (!file) return Object.assign(new ReplyCache(undefined, log, capacity), { users: 1 });
    let c = ReplyCache.open.get(file);
    if (!c) ReplyCache.open.set(file, (c = new ReplyCache(file, log, capacity)));
    c.users++;
    return c;
  }

  release(): void {
    if (--this.users > 0) return;
    this.closed = true;
    if (this.file && ReplyCache.open.get(this.file) === this) ReplyCache.open.delete(this.file);
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }

  get(key: string): Entry | undefined {
    return this.entries.get(key);
  }

  get size(): number {
    return this.entries.size;
  }

  intend(key: string, intent: Intent): void {
    this.remember(key, { intent });
    this.append({ k: key, i: intent });
  }

  /** Remembers how a request ended; written before its reply is sent. */
  put(key: string, outcome: Outcome): void {
    const e = this.entries.get(key);
    this.remember(key, { intent: e?.intent, outcome });
    this.append({ k: key, o: outcome });
  }

  dump(): Record<string, unknown> {
    return { file: this.file ?? '(memory only)', entries: this.entries.size, capacity: this.capacity, logLines: this.lines };
  }

  private remember(key: string, e: Entry): void {
    this.entries.delete(key);
    this.entries.set(key, e);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }

  private append(l: Line): void {
    if (!this.file || this.closed) return;
    const text = JSON.stringify(l) + '\n';
    if (text.length > MAX_LINE) return this.log.warn(`reply cache: a ${text.length}-byte record not kept on disk`);
    fs.writeSync(this.fd!, text);
    if (++this.lines >= COMPACT_FACTOR * this.capacity) this.compact();
  }

  private load(file: string): void {
    let text: string;
    try {
      text = fs.readFileSync(file, 'latin1');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    let bad = 0;
    for (const raw of text.split('\n')) {
      if (!raw) continue;
      let l: Line;
      try {
        l = JSON.parse(raw);
      } catch {
        bad++;
        continue;
      }
      if (typeof l?.k !== 'string') continue;
      const e = this.entries.get(l.k) ?? {};
      if (l.i) e.intent = l.i;
      if (l.o) e.outcome = l.o;
      this.remember(l.k, e);
    }
    // A brick killed in the middle of a write leaves its last line torn: that request was not answered.
    if (bad) this.log.info(`reply cache ${file}: ${bad} unreadable line(s) skipped`);
    this.log.info(`reply cache ${file}: ${this.entries.size} remembered request(s)`);
  }

  /** Rewrites the log with what is remembered (a new file renamed over the old: never half-made). */
  private compact(): void {
    const file = this.file!;
    const tmp = `${file}.new`;
    const out = fs.openSync(tmp, 'w', 0o600);
    try {
      const text = [...this.entries].map(([k, e]) => (e.intent ? JSON.stringify({ k, i: e.intent }) + '\n' : '') + (e.outcome ? JSON.stringify({ k, o: e.outcome }) + '\n' : '')).join('');
      fs.writeSync(out, text);
      fs.fsyncSync(out);
    } finally {
      fs.closeSync(out);
    }
    fs.renameSync(tmp, file);
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = fs.openSync(file, 'a', 0o600);
    this.lines = this.entries.size;
  }
}
