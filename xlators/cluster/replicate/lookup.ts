// Lookups over the copies: every child that is up is asked, their answers merged into one.
// The changelog of what was found is read at the same time, so the answer comes from a copy
// that is owed nothing (and this client knows which copies are readable afterwards). A name
// missing on a copy that is behind for its directory is not an error; copies found with
// different GFIDs under one name are (EIO, unless the directory's changelog says which
// copies are behind); whatever needs healing is handed to the healer.
import { FopError, ROOT_GFID, S_IFMT } from '../../../src/core/index';
import type { Frame, Gfid, Iatt, Inode, Loc } from '../../../src/core/index';
import { CopyLog, Kind, Verdict, judge } from './changelog';
import { isGone } from './children';
import type { Replica } from './context';
import { kindsOf } from './inode-state';
import { pickReadChild } from './read-child';

/** A GFID's inode number: the same whichever copy answers (each brick numbers its files its own way). */
export function inoOf(gfid: Gfid): number {
  return parseInt(gfid.replace(/-/g, '').slice(-13), 16);
}

export const withIno = (a: Iatt): Iatt => ({ ...a, ino: inoOf(a.gfid) });

/** Reads the changelog of `inode` from the children listed; undefined where it could not be read. */
export async function readLogs(r: Replica, frame: Frame, inode: Inode | { gfid: Gfid }, on: readonly number[]): Promise<(CopyLog | undefined)[]> {
  const loc: Loc = 'table' in inode ? { inode } : { gfid: inode.gfid };
  const res = await r.subvols.each(on, (i) => r.subvols.call(i, frame, 'xattrop', loc, 'get', r.changelog.query()));
  return [...Array(r.subvols.n).keys()].map((i) => {
    const o = res.get(i);
    if (!o?.ok) return undefined;
    try {
      return r.changelog.parse(o.value);
    } catch (e) {
      r.log.warn(`the changelog of ${inode.gfid} on ${r.subvols.names[i]} is malformed: ${(e as Error).message}`);
      return undefined;
    }
  });
}

export function verdicts(logs: readonly (CopyLog | undefined)[], kinds: readonly Kind[]): Map<Kind, Verdict> {
  return new Map(kinds.map((k) => [k, judge(logs, k)]));
}

/** Judges an object's copies afresh (a child came up since, or nothing is known yet). */
export async function refresh(r: Replica, frame: Frame, inode: Inode): Promise<void> {
  const logs = await readLogs(r, frame, inode, r.subvols.upList());
  const v = verdicts(logs, kindsOf(inode.type, inode.isDir));
  r.states.judged(inode, v, r.subvols.generation);
  noteHeal(r, inode.gfid, v);
}

/**
 * Queues a heal of what a judgement found behind. Dirty marks alone are not enough: every
 * change in flight (this client's too) sets them; those a change cut short left are found
 * by index passes.
 */
function noteHeal(r: Replica, gfid: Gfid, v: ReadonlyMap<Kind, Verdict>): void {
  const need = [...v].filter(([, x]) => x.splitBrain || x.sinks.length > 0).map(([k, x]) => (x.splitBrain ? `${k} split brain` : k));
  if (need.length > 0) r.heal.soon(gfid, `found needing heal (${need.join(', ')})`);
}

/** Logs a split brain once per object and episode; the error reads fail with. */
export function splitBrainError(r: Replica, inode: Inode, kinds: readonly Kind[], what: string): FopError {
  const s = r.states.get(inode);
  const split = kinds.filter((k) => s.splitBrain.has(k));
  const path = r.host.itable.path(inode);
  const name = `${path ?? `<gfid:${inode.gfid}>`}${path ? ` (${inode.gfid})` : ''}`;
  if (split.length > 0) {
    const fresh = split.filter((k) => !s.logged.has(k));
    if (fresh.length > 0) {
      for (const k of fresh) s.logged.add(k);
      r.log.error(`split brain: ${name}: ${split.join(' and ')} changed on each side while the other was away; not read (resolve with: xlstack heal VOLFILE split-brain --source CHILD PATH)`);
    }
    return new FopError('EIO', `${what}: ${name} is in ${split.join('/')} split brain`);
  }
  return new FopError('EIO', `${what}: no copy of ${name} that is up is current (the current one is down)`);
}

interface Found {
  readonly iatt: Iatt;
  readonly log?: CopyLog;
}

export async function lookup(r: Replica, frame: Frame, loc: Loc): Promise<Iatt> {
  const c = r.subvols;
  const up = c.upList();
  if (up.length === 0) throw new FopError('ENOTCONN', `${r.name}: no child is up`);
  // The GFID the name probably has (a revalidation, a lookup by GFID, a name this graph saw):
  // its changelog is read at the same time as the lookup.
  const known = loc.inode?.gfid ?? loc.gfid ?? (loc.parent && loc.name !== undefined ? r.host.itable.child(loc.parent, loc.name)?.inode.gfid : undefined);
  const res = await c.each(up, async (i): Promise<Found> => {
    const logOf = (gfid: Gfid) =>
      c
        .call(i, frame, 'xattrop', { gfid }, 'get', r.changelog.query())
        .then((v) => r.changelog.parse(v))
        .catch(() => undefined);
    const [iatt, early] = await Promise.all([c.call(i, frame, 'lookup', loc), known ? logOf(known) : undefined]);
    return { iatt, log: iatt.gfid === known ? early : await logOf(iatt.gfid) };
  });
  const found = new Map<number, Found>();
  for (const [i, o] of res) if (o.ok) found.set(i, o.value);
  const errors = [...res.values()].flatMap((o) => (o.ok ? [] : [o.error]));
  const missing = [...res].filter(([, o]) => !o.ok && o.error.code === 'ENOENT').map(([i]) => i);
  const gfids = new Set([...found.values()].map((f) => f.iatt.gfid));
  if (loc.parent && found.size > 0 && (missing.length > 0 || gfids.size > 1)) {
    // The copies disagree about the name: only the directory's current copies count.
    const current = await currentCopies(r, frame, loc.parent, up);
    if (current.some((i) => found.has(i) || missing.includes(i))) {
      for (const i of [...found.keys()]) if (!current.includes(i)) found.delete(i);
      r.heal.soon(loc.parent.gfid, `${describe(r, loc)} differs between copies`);
      if (found.size === 0) throw errors.find((e) => e.code === 'ENOENT') ?? new FopError('ENOENT');
    }
  }
  if (found.size === 0) {
    if (missing.length > 0) throw errors.find((e) => e.code === 'ENOENT')!;
    throw errors.find((e) => !isGone(e)) ?? errors[0];
  }
  const { gfid, on } = pickGfid(r, loc, found);
  const first = found.get(on[0])!.iatt;
  if (on.some((i) => (found.get(i)!.iatt.mode & S_IFMT) !== (first.mode & S_IFMT))) {
    throw new FopError('EIO', `${describe(r, loc)}: copies of ${gfid} are of different types`);
  }
  const inode = loc.inode?.gfid === gfid ? loc.inode : r.inode(gfid, first.mode & S_IFMT);
  const logs = [...Array(c.n).keys()].map((i) => (on.includes(i) ? found.get(i)!.log : undefined));
  const kinds = kindsOf(first.mode & S_IFMT, (first.mode & S_IFMT) === 0o040000);
  const v = verdicts(logs, kinds);
  r.states.judged(inode, v, c.generation);
  noteHeal(r, gfid, v);
  const readable = r.states.readable(inode, kinds, on, c.generation) ?? [];
  const child = pickReadChild(readable, gfid, r.readPolicy(), frame.caller.pid) ?? on[0];
  return withIno(found.get(child)!.iatt);
}

/** The copies of a directory that are current for its entries (judged afresh if need be). */
async function currentCopies(r: Replica, frame: Frame, dir: Inode, up: readonly number[]): Promise<number[]> {
  let current = r.states.readable(dir, ['entry'], up, r.subvols.generation);
  if (current === undefined) {
    await refresh(r, frame, dir);
    current = r.states.readable(dir, ['entry'], up, r.subvols.generation) ?? [];
  }
  return current;
}

/** The GFID a name stands for, and the copies that have it: they must agree (else GFID split brain, EIO). */
function pickGfid(r: Replica, loc: Loc, found: ReadonlyMap<number, Found>): { gfid: Gfid; on: number[] } {
  const groups = new Map<Gfid, number[]>();
  for (const [i, f] of found) groups.set(f.iatt.gfid, [...(groups.get(f.iatt.gfid) ?? []), i]);
  if (groups.size === 1) {
    const [[gfid, on]] = groups;
    return { gfid, on };
  }
  const list = [...groups].map(([g, on]) => `${g} on ${on.map((i) => r.subvols.names[i]).join(', ')}`).join('; ');
  r.log.error(`split brain: ${describe(r, loc)} names different objects on different copies (${list}); not served`);
  throw new FopError('EIO', `${describe(r, loc)}: GFID split brain (${list})`);
}

function describe(r: Replica, loc: Loc): string {
  if (loc.path) return loc.path;
  if (loc.parent && loc.name !== undefined) return `${r.host.itable.path(loc.parent) ?? `<gfid:${loc.parent.gfid}>`}/${loc.name}`;
  return `<gfid:${loc.inode?.gfid ?? loc.gfid ?? ROOT_GFID}>`;
}
