// Healing one object: find its copies, take the self-heal lock (one healer at a time, any
// client), then for each kind of change it has (data and metadata for a file, metadata and
// entries for a directory) take that kind's lock, read the changelogs, judge, copy from a
// source to the sinks, and clear the changelogs of the copies made alike, all under that
// lock. A split brain is left alone unless a source is named (the split-brain command).
import { FopError, ROOT_CALLER, S_IFMT } from '../../../../src/core/index';
import type { Frame, Gfid, Iatt, Inode } from '../../../../src/core/index';
import { CopyLog, Kind, Verdict, clearing, judge } from '../changelog';
import type { Replica } from '../context';
import { kindsOf } from '../inode-state';
import { HeldLocks, LockTarget, newOwner } from '../locks';
import { readLogs } from '../lookup';
import { healData } from './data';
import { healEntries } from './entry';
import { healMetadata } from './metadata';

export type KindOutcome = 'clean' | 'healed' | 'split-brain' | 'partial';
export type Outcome = KindOutcome | 'busy' | 'missing' | 'failed';

export interface ObjectHeal {
  readonly gfid: Gfid;
  readonly outcome: Outcome;
  readonly kinds: Partial<Record<Kind, KindOutcome>>;
  /** Objects entry heal made on sinks (to heal next). */
  readonly made: Gfid[];
  readonly detail?: string;
}

export interface HealOptions {
  readonly lockTimeoutMs: number;
  /** Split-brain resolution: this child's copy wins, for the kinds in split brain. */
  readonly source?: number;
}

const RANK: readonly Outcome[] = ['clean', 'healed', 'partial', 'split-brain', 'busy', 'missing', 'failed'];
const worst = (a: Outcome, b: Outcome): Outcome => (RANK.indexOf(a) >= RANK.indexOf(b) ? a : b);

/** The copies of an object that the children that are up have, with their attributes. */
async function findCopies(r: Replica, frame: Frame, gfid: Gfid): Promise<Map<number, Iatt>> {
  const res = await r.subvols.each(r.subvols.upList(), (i) => r.subvols.call(i, frame, 'lookup', { gfid }));
  return new Map([...res].flatMap(([i, o]) => (o.ok ? [[i, o.value] as [number, Iatt]] : [])));
}

export async function healObject(r: Replica, gfid: Gfid, o: HealOptions): Promise<ObjectHeal> {
  const owner = newOwner('heal');
  const frame = r.host.frame('self-heal', { caller: ROOT_CALLER, lkOwner: owner });
  try {
    const copies = await findCopies(r, frame, gfid);
    if (copies.size === 0) return { gfid, outcome: 'missing', kinds: {}, made: [] };
    const types = new Set([...copies.values()].map((a) => a.mode & S_IFMT));
    if (types.size > 1) {
      r.log.error(`heal of ${gfid}: its copies are of different types; not healed`);
      return { gfid, outcome: 'failed', kinds: {}, made: [], detail: 'copies of different types' };
    }
    const [type] = types;
    const inode = r.inode(gfid, type);
    const on = [...copies.keys()];
    const healLock = new HeldLocks(r.subvols, r.host, r.log, owner, { kind: 'inode', domain: `${r.name}.self-heal`, inode }, o.lockTimeoutMs);
    if (!(await healLock.tryAcquire(on))) return { gfid, outcome: 'busy', kinds: {}, made: [] };
    try {
      const kinds: Partial<Record<Kind, KindOutcome>> = {};
      const made: Gfid[] = [];
      let outcome: Outcome = 'clean';
      for (const kind of kindsOf(type, type === 0o040000)) {
        const k = await healKind(r, frame, owner, inode, kind, healLock.on, o, made);
        kinds[kind] = k;
        outcome = worst(outcome, k);
      }
      return { gfid, outcome, kinds, made };
    } finally {
      await healLock.release();
    }
  } catch (e) {
    const err = FopError.from(e);
    r.log.warn(`heal of ${gfid} failed: ${err.message}`);
    return { gfid, outcome: 'failed', kinds: {}, made: [], detail: err.message };
  } finally {
    frame.done();
  }
}

function lockOf(r: Replica, inode: Inode, kind: Kind): LockTarget {
  const domain = `${r.name}.${kind}`;
  return kind === 'entry' ? { kind: 'entry', domain, names: [{ dir: inode }] } : { kind: 'inode', domain, inode };
}

async function healKind(r: Replica, frame: Frame, owner: string, inode: Inode, kind: Kind, on: readonly number[], o: HealOptions, made: Gfid[]): Promise<KindOutcome> {
  // This client's own changes hold the data or directory lock while they keep coming: let it go first.
  if (kind !== 'metadata') await r.txns.settle(inode.gfid, kind);
  const lock = new HeldLocks(r.subvols, r.host, r.log, owner, lockOf(r, inode, kind), o.lockTimeoutMs);
  const locked = await lock.acquire(on, frame);
  try {
    const logs = await readLogs(r, frame, inode, locked);
    const at = present(logs);
    const v = judge(logs, kind);
    r.states.judged(inode, new Map([[kind, v]]), r.subvols.generation);
    const plan = decide(r, inode, kind, v, logs, o);
    if (plan === 'clean') {
      r.states.healed(inode, kind, at);
      return 'clean';
    }
    if (plan === 'split-brain') return 'split-brain';
    const source = plan.mode === 'merge' ? at[0] : await pick(r, frame, inode, kind, plan.sources);
    // Accused copies are the sinks; when nobody is accused, every copy but the one picked.
    const sinks = at.filter((i) => i !== source && (plan.mode !== 'accused' || !plan.sources.includes(i)));
    let healed: number[];
    if (kind === 'data') healed = await healData(r, frame, inode, source, sinks, () => relock(r, frame, lock, inode, on, source, o));
    else if (kind === 'metadata') healed = await healMetadata(r, frame, inode, source, sinks);
    else {
      const res = await healEntries(r, frame, inode, source, sinks, plan.mode === 'merge', at);
      made.push(...res.made);
      healed = plan.mode === 'merge' ? (res.healed.length === at.length ? sinks : []) : res.healed;
    }
    const alike = at.filter((i) => i === source || healed.includes(i) || (plan.mode === 'accused' && plan.sources.includes(i)));
    const behind = at.filter((i) => !alike.includes(i));
    const deltas = clearing(logs.map((l, i) => (alike.includes(i) ? l : undefined)), kind, [source], behind);
    const res = await r.subvols.each([...deltas.keys()], (i) => r.subvols.call(i, frame, 'xattrop', { inode }, 'add', r.changelog.add(kind, deltas.get(i)!)));
    for (const [i, x] of res) if (!x.ok) r.log.warn(`heal of ${inode.gfid}: clearing the ${kind} changelog on ${r.subvols.names[i]} failed: ${x.error.message}`);
    const cleared = (i: number) => !deltas.has(i) || res.get(i)!.ok;
    r.states.healed(inode, kind, alike.filter(cleared));
    const full = behind.length === 0 && alike.every(cleared);
    if (sinks.length > 0) {
      const to = sinks.filter((x) => healed.includes(x)).map((x) => r.subvols.names[x]);
      r.log.info(`healed ${kind} of ${where(r, inode)} from ${r.subvols.names[source]} to ${to.join(', ') || '(none)'}${full ? '' : ' (not all copies: again later)'}`);
    }
    return full ? 'healed' : 'partial';
  } finally {
    await lock.release();
  }
}

/**
 * Between windows of a data heal: gives the data lock back (writers waiting get their turn),
 * takes it again, and says whether `source` is still a source (then the heal goes on).
 */
async function relock(r: Replica, frame: Frame, lock: HeldLocks, inode: Inode, on: readonly number[], source: number, o: HealOptions): Promise<boolean> {
  await lock.release();
  await r.txns.settle(inode.gfid);
  const again = await lock.acquire(on, frame);
  if (!again.includes(source)) return false;
  const v = judge(await readLogs(r, frame, inode, again), 'data');
  return v.sources.includes(source) || (o.source === source && v.splitBrain);
}

interface Plan {
  readonly sources: readonly number[];
  /** accused: the sources are right, the others are sinks; single: nobody is accused, one copy is picked; merge: entries of every copy are merged. */
  readonly mode: 'accused' | 'single' | 'merge';
}

function decide(r: Replica, inode: Inode, kind: Kind, v: Verdict, logs: readonly (CopyLog | undefined)[], o: HealOptions): Plan | 'clean' | 'split-brain' {
  if (o.source !== undefined && v.splitBrain) {
    if (!logs[o.source]) throw new FopError('ENOTCONN', `${r.subvols.names[o.source]} has no copy of ${inode.gfid} at hand`);
    r.log.info(`split brain of ${where(r, inode)} (${kind}): resolved with ${r.subvols.names[o.source]} as the source`);
    return { sources: [o.source], mode: 'accused' };
  }
  if (!v.needsHeal) return 'clean';
  if (v.splitBrain) {
    r.log.error(`split brain: ${where(r, inode)}: ${kind} changed on each side while the other was away; not healed (resolve with: xlstack heal VOLFILE split-brain --source CHILD PATH)`);
    return 'split-brain';
  }
  // Cut short (a client died mid-change): any copy may be the right one.
  if (v.cutShort) return { sources: v.sources, mode: kind === 'entry' ? 'merge' : 'single' };
  return { sources: v.sources, mode: 'accused' };
}

/** The source to copy from: for data, the largest of the candidates (a write cut short may have grown only some). */
async function pick(r: Replica, frame: Frame, inode: Inode, kind: Kind, sources: readonly number[]): Promise<number> {
  if (kind !== 'data' || sources.length === 1) return sources[0];
  const sizes = await r.subvols.each(sources, (i) => r.subvols.call(i, frame, 'stat', { inode }));
  let best = sources[0];
  let size = -1;
  for (const [i, x] of sizes) if (x.ok && x.value.size > size) [best, size] = [i, x.value.size];
  return best;
}

const present = (logs: readonly (CopyLog | undefined)[]): number[] => logs.flatMap((l, i) => (l ? [i] : []));

function where(r: Replica, inode: Inode): string {
  const p = r.host.itable.path(inode);
  return p ? `${p} (${inode.gfid})` : `<gfid:${inode.gfid}>`;
}
