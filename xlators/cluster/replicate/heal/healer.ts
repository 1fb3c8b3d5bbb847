// When heals happen. In the background, by this client: an index pass when a child comes up
// (every object some brick's features/index lists as having a changelog that is not clear),
// and single objects a lookup or a read found needing it; a few at a time, each object once
// however often it is asked for; a pass that left work (a lock held elsewhere, a sink gone
// again) is tried again later. On request: a pass that heals everything it can (xlstack
// heal), a report of what still needs heal (heal info), and split-brain resolution.
import { FopError, ROOT_CALLER, ROOT_GFID, S_IFMT, isGfid } from '../../../../src/core/index';
import type { Frame, Gfid, Timer } from '../../../../src/core/index';
import { KINDS, Kind, judge } from '../changelog';
import type { HealTrigger, Replica } from '../context';
import { kindsOf } from '../inode-state';
import { readLogs } from '../lookup';
import { listCopy } from './copies';
import { ObjectHeal, healObject } from './object';

/** The virtual xattr features/index answers with the GFIDs it lists (a page after the one given). */
export const INDEX_KEY = 'trusted.xlstack.index.pending';

export interface HealerOptions {
  /** Index passes in the background (when a child comes up, and again while work is left). */
  readonly daemon: boolean;
  /** Objects found needing heal by lookups and reads are healed in the background. */
  readonly onAccess: boolean;
  readonly concurrency: number;
  readonly retryMs: number;
  readonly lockTimeoutMs: number;
}

export interface PassSummary {
  readonly examined: number;
  readonly healed: number;
  readonly clean: number;
  readonly splitBrain: Gfid[];
  /** Objects still needing heal after the pass (busy elsewhere, a sink gone, partly healed). */
  readonly remaining: Gfid[];
}

export interface InfoEntry {
  readonly gfid: Gfid;
  readonly path?: string;
  readonly type: 'file' | 'directory' | 'other';
  /** Per kind: the children whose copies are behind, or 'split-brain'. */
  readonly pending: Partial<Record<Kind, string[] | 'split-brain'>>;
  /** A change is in flight (or was cut short) and nobody is accused yet. */
  readonly inFlight?: boolean;
}

export class Healer implements HealTrigger {
  private readonly queue = new Set<Gfid>();
  private readonly running = new Map<Gfid, Promise<ObjectHeal>>();
  private readonly waiting = new Map<Gfid, { promise: Promise<ObjectHeal>; resolve: (h: ObjectHeal) => void }>();
  private passRunning?: Promise<PassSummary>;
  private passAgain = false;
  private retry?: Timer;
  private stopped = false;
  /** Counters for statedumps. */
  private readonly stats = { healed: 0, clean: 0, splitBrain: 0, failed: 0, passes: 0 };
  readonly splitBrains = new Set<Gfid>();

  constructor(
    private readonly r: Replica,
    private readonly options: () => HealerOptions,
  ) {}

  get quiet(): boolean {
    return this.queue.size === 0 && this.running.size === 0 && !this.passRunning && !this.retry;
  }

  private get canHeal(): boolean {
    return !this.stopped && this.r.subvols.upList().length >= 2;
  }

  // --- background ------------------------------------------------------------------

  soon(gfid: Gfid, why: string): void {
    if (this.options().onAccess) this.later(gfid, why);
  }

  /** Queues a background heal of `gfid` (once, however often asked). */
  private later(gfid: Gfid, why: string): void {
    if (!this.canHeal || this.queue.has(gfid) || this.running.has(gfid)) return;
    this.r.log.debug(`heal of ${gfid} queued: ${why}`);
    this.queue.add(gfid);
    this.pump();
  }

  /** Heals `gfid` through the queue; resolves with what happened to it. */
  private enqueue(gfid: Gfid): Promise<ObjectHeal> {
    const run = this.running.get(gfid);
    if (run) return run.then(() => this.enqueue(gfid));
    let w = this.waiting.get(gfid);
    if (!w) {
      let resolve!: (h: ObjectHeal) => void;
      const promise = new Promise<ObjectHeal>((r) => (resolve = r));
      this.waiting.set(gfid, (w = { promise, resolve }));
    }
    this.queue.add(gfid);
    this.pump();
    return w.promise;
  }

  private pump(): void {
    while (this.running.size < this.options().concurrency && this.queue.size > 0 && !this.stopped) {
      const [gfid] = this.queue;
      this.queue.delete(gfid);
      const p = healObject(this.r, gfid, { lockTimeoutMs: this.options().lockTimeoutMs });
      this.running.set(gfid, p);
      void p.then((h) => this.finished(h));
    }
  }

  private finished(h: ObjectHeal): void {
    this.running.delete(h.gfid);
    if (h.outcome === 'healed') this.stats.healed++;
    else if (h.outcome === 'clean') this.stats.clean++;
    else if (h.outcome === 'split-brain') this.stats.splitBrain++;
    else this.stats.failed++;
    if (h.outcome === 'split-brain') this.splitBrains.add(h.gfid);
    else if (h.outcome === 'healed' || h.outcome === 'clean') this.splitBrains.delete(h.gfid);
    const w = this.waiting.get(h.gfid);
    this.waiting.delete(h.gfid);
    // What entry heal made on a sink is healed next (it is marked, so a later pass would find it too).
    for (const g of h.made) this.later(g, `made by the entry heal of ${h.gfid}`);
    w?.resolve(h);
    this.pump();
  }

  /** A child came up: an index pass soon (after the one running, if any). */
  childCameUp(): void {
    if (!this.options().daemon || !this.canHeal) return;
    if (this.passRunning) {
      this.passAgain = true;
      return;
    }
    void this.backgroundPass();
  }

  private async backgroundPass(): Promise<void> {
    this.retry?.cancel();
    this.retry = undefined;
    let summary: PassSummary | undefined;
    try {
      summary = await this.pass();
    } catch (e) {
      this.r.log.warn(`background heal pass failed: ${(e as Error).message}`);
    }
    if (this.stopped || !this.options().daemon) return;
    if (this.passAgain) {
      this.passAgain = false;
      return void this.backgroundPass();
    }
    const left = summary ? summary.remaining.length : 1;
    if (left > 0 && this.canHeal) {
      this.r.log.info(`background heal: ${left} object(s) left to heal; trying again in ${this.options().retryMs / 1000} s`);
      this.retry = this.r.clock.timer(this.options().retryMs, () => {
        this.retry = undefined;
        void this.backgroundPass();
      });
    }
  }

  // --- passes ----------------------------------------------------------------------

  /** What the indexes of the children that are up list, with the root (whose changes no index may see if it was made before). */
  async listed(frame: Frame): Promise<Gfid[]> {
    const c = this.r.subvols;
    const all = new Set<Gfid>();
    await Promise.all(
      c.upList().map(async (i) => {
        let after = '';
        for (;;) {
          let page: string;
          try {
            const v = await c.call(i, frame, 'xattrop', { gfid: ROOT_GFID }, 'get', { [INDEX_KEY]: Buffer.from(after) });
            page = (v[INDEX_KEY] ?? Buffer.alloc(0)).toString('latin1');
          } catch (e) {
            this.r.log.debug(`listing the index of ${c.names[i]}: ${(e as Error).message}`);
            return;
          }
          const gfids = page.split('\n').filter(isGfid);
          for (const g of gfids) all.add(g);
          if (gfids.length === 0 || gfids[gfids.length - 1] <= after) return;
          after = gfids[gfids.length - 1];
        }
      }),
    );
    return [...all].sort();
  }

  /**
   * Heals everything the indexes list (and what those heals make), again while a round
   * makes progress. One pass at a time: a second caller waits for the one running.
   */
  pass(): Promise<PassSummary> {
    this.passRunning ??= this.runPass().finally(() => (this.passRunning = undefined));
    return this.passRunning;
  }

  private async runPass(): Promise<PassSummary> {
    this.stats.passes++;
    const frame = this.r.host.frame('heal-pass', ROOT_CALLER);
    try {
      const results = new Map<Gfid, ObjectHeal>();
      let examined = 0;
      for (let round = 0; round < 8 && this.canHeal; round++) {
        const todo = await this.listed(frame);
        const fresh = todo.filter((g) => !results.has(g) || results.get(g)!.outcome === 'healed' || results.get(g)!.outcome === 'partial');
        if (fresh.length === 0) break;
        examined += fresh.length;
        const done = await this.healAll(fresh);
        for (const h of done) results.set(h.gfid, h);
        if (!done.some((h) => h.outcome === 'healed' || h.made.length > 0)) break;
      }
      const final = [...results.values()];
      const listedNow = new Set(await this.listed(frame));
      return {
        examined,
        healed: final.filter((h) => h.outcome === 'healed').length,
        clean: final.filter((h) => h.outcome === 'clean').length,
        splitBrain: final.filter((h) => h.outcome === 'split-brain').map((h) => h.gfid),
        // Found clean is done (a change in flight since marks it again: that is not heal's to do).
        remaining: final.filter((h) => (h.outcome === 'busy' || h.outcome === 'partial' || h.outcome === 'failed') && listedNow.has(h.gfid)).map((h) => h.gfid),
      };
    } finally {
      frame.done();
    }
  }

  /** Heals these objects (and what their heals make), through the queue. */
  private async healAll(gfids: readonly Gfid[]): Promise<ObjectHeal[]> {
    const out: ObjectHeal[] = [];
    let batch = [...gfids];
    const seen = new Set(batch);
    while (batch.length > 0) {
      const done = await Promise.all(batch.map((g) => this.enqueue(g)));
      out.push(...done);
      batch = done.flatMap((h) => h.made).filter((g) => !seen.has(g) && seen.add(g));
    }
    return out;
  }

  /** Every object reachable from the root, healed (for bricks without an index, or one that was lost). */
  async full(): Promise<PassSummary> {
    const frame = this.r.host.frame('heal-full', ROOT_CALLER);
    const results: ObjectHeal[] = [];
    try {
      const dirs: Gfid[] = [ROOT_GFID];
      while (dirs.length > 0 && this.canHeal) {
        const dir = dirs.shift()!;
        results.push(...(await this.healAll([dir])));
        const src = this.r.subvols.upList()[0];
        if (src === undefined) break;
        const entries = await listCopy(this.r, frame, src, this.r.inode(dir, 0o040000)).catch(() => new Map());
        const files: Gfid[] = [];
        for (const e of entries.values()) {
          if (((e.iatt?.mode ?? 0) & S_IFMT) === 0o040000) dirs.push(e.iatt!.gfid);
          else if (e.iatt) files.push(e.iatt.gfid);
        }
        results.push(...(await this.healAll(files)));
      }
    } finally {
      frame.done();
    }
    return {
      examined: results.length,
      healed: results.filter((h) => h.outcome === 'healed').length,
      clean: results.filter((h) => h.outcome === 'clean').length,
      splitBrain: results.filter((h) => h.outcome === 'split-brain').map((h) => h.gfid),
      remaining: results.filter((h) => h.outcome === 'busy' || h.outcome === 'partial' || h.outcome === 'failed').map((h) => h.gfid),
    };
  }

  /** Heals one object with `source`'s copy winning where it is in split brain. */
  async resolve(gfid: Gfid, source: number): Promise<ObjectHeal> {
    // A heal of it running in this client first: it holds the object.
    await this.running.get(gfid);
    const h = await healObject(this.r, gfid, { lockTimeoutMs: this.options().lockTimeoutMs, source });
    if (h.outcome !== 'split-brain') this.splitBrains.delete(gfid);
    for (const g of h.made) this.later(g, `made by the split-brain resolution of ${gfid}`);
    return h;
  }

  // --- info ------------------------------------------------------------------------

  /** What still needs heal, by the changelogs as they are now (no locks taken). */
  async info(): Promise<InfoEntry[]> {
    const frame = this.r.host.frame('heal-info', ROOT_CALLER);
    try {
      const out: InfoEntry[] = [];
      for (const gfid of await this.listed(frame)) {
        const e = await this.describe(frame, gfid);
        if (e) out.push(e);
      }
      return out;
    } finally {
      frame.done();
    }
  }

  private async describe(frame: Frame, gfid: Gfid): Promise<InfoEntry | undefined> {
    const c = this.r.subvols;
    const found = await c.each(c.upList(), (i) => c.call(i, frame, 'lookup', { gfid }));
    const ok = [...found].filter(([, o]) => o.ok).map(([i]) => i);
    if (ok.length === 0) return undefined;
    const first = found.get(ok[0]) as { value: { mode: number } };
    const type = first.value.mode & S_IFMT;
    const logs = await readLogs(this.r, frame, { gfid }, ok);
    const pending: InfoEntry['pending'] = {};
    let inFlight = false;
    for (const k of kindsOf(type, type === 0o040000)) {
      const v = judge(logs, k);
      if (!v.needsHeal) continue;
      if (v.splitBrain) pending[k] = 'split-brain';
      else if (v.cutShort) inFlight = true;
      else pending[k] = v.sinks.map((i) => c.names[i]);
    }
    // Copies that are down are behind if a copy at hand says so.
    for (const k of KINDS) {
      const p = pending[k];
      if (!Array.isArray(p)) continue;
      const down = [...Array(c.n).keys()].filter((i) => !ok.includes(i) && logs.some((l) => l && l.pending[i][KINDS.indexOf(k)] > 0));
      pending[k] = [...p, ...down.map((i) => c.names[i])];
    }
    if (Object.keys(pending).length === 0 && !inFlight) {
      // A copy missing on an up child shows as pending in its directory; here nothing is.
      return undefined;
    }
    const path = this.r.host.itable.path(this.r.inode(gfid));
    return { gfid, path, type: type === 0o040000 ? 'directory' : type === 0o100000 ? 'file' : 'other', pending, ...(inFlight ? { inFlight } : {}) };
  }

  // --- lifecycle ---------------------------------------------------------------------

  /** The graph goes down: nothing new starts; what runs is waited for (each heal is bounded by its locks' and children's timeouts). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.retry?.cancel();
    this.retry = undefined;
    this.queue.clear();
    for (const [gfid, w] of this.waiting) {
      if (this.running.has(gfid)) continue;
      this.waiting.delete(gfid);
      w.resolve({ gfid, outcome: 'failed', kinds: {}, made: [], detail: 'the graph went down' });
    }
    await Promise.all([...this.running.values()]);
    await this.passRunning?.catch(() => undefined);
  }

  dump(): Record<string, unknown> {
    return { queued: this.queue.size, running: [...this.running.keys()], passRunning: !!this.passRunning, retryArmed: !!this.retry, ...this.stats, splitBrainNow: [...this.splitBrains] };
  }
}

/** Throws unless `e` is a split-brain resolution the command can do. */
export function checkResolvable(h: ObjectHeal): void {
  if (h.outcome === 'failed') throw new FopError('EIO', `split-brain resolution of ${h.gfid} failed: ${h.detail ?? ''}`);
  if (h.outcome === 'busy') throw new FopError('EAGAIN', `${h.gfid} is being healed by another healer; try again`);
}
