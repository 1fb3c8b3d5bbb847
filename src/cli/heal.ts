// `xlstack heal VOLFILE ...`: builds the client graph of a volfile (as a mount would, without
// mounting), and drives every replicate translator in it through the virtual extended
// attributes they answer (see xlators/cluster/replicate/virtual.ts): a heal pass, a full heal,
// heal info, split-brain resolution. A replicate may be anywhere in the graph (the top of a
// replica volume, or each replica set under a distribute): each is asked directly, not through
// the translators above it (a distribute would send a directory's question to one set only).
// This process is one more client of the bricks: its heals take the same locks as every mount's.
import { constants } from 'fs';
import * as path from 'path';
import { buildGraph } from '../core/builder';
import { FopError } from '../core/errors';
import type { Graph } from '../core/graph';
import type { Inode } from '../core/inode';
import type { Xlator } from '../core/xlator';
import { LOG_LEVELS, LogLevel, Logger, stderrSink } from '../core/log';
import { Registry } from '../core/registry';
import { ROOT_CALLER, isDir, nameFromUtf8, nameToUtf8 } from '../core/types';
import { Volfile, readVolfile } from '../core/volfile';
import { UsageError, parseArgs } from './args';

// The names replicate answers (virtual.ts).
const HEAL_INFO = 'xlstack.replicate.heal-info';
const HEAL_INDEX = 'xlstack.replicate.heal';
const HEAL_FULL = 'xlstack.replicate.heal-full';
const SPLIT_BRAIN_SOURCE = 'xlstack.replicate.split-brain-source';

/** How long the graph may take to connect to the bricks. */
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
/** How long a heal keeps trying what another healer holds, by default. */
const DEFAULT_HEAL_TIMEOUT_S = 120;
/** Between two passes over what is left. */
const RETRY_MS = 1000;
/** Entries walked at most to find the paths of what heal info lists. */
const PATH_WALK_MAX = 100_000;

interface Child {
  readonly name: string;
  readonly up: boolean;
}

interface Summary {
  readonly children: Child[];
  readonly examined: number;
  readonly healed: number;
  readonly splitBrain: string[];
  readonly remaining: string[];
}

interface InfoEntry {
  readonly gfid: string;
  readonly type: string;
  readonly pending: Record<string, string[] | 'split-brain'>;
  readonly inFlight?: boolean;
}

const SUBCOMMANDS = ['info', 'full', 'split-brain'];
const VALUED = ['--log-level', '--timeout', '--source'];

export async function heal(argv: string[]): Promise<number> {
  const positional = argv.filter((a, i) => !a.startsWith('--') && !VALUED.includes(argv[i - 1]));
  const sub = positional[1];
  if (sub !== undefined && !SUBCOMMANDS.includes(sub)) throw new UsageError(`unknown heal command '${sub}' (info, full, split-brain)`);
  const common = ['log-level', 'timeout'];
  const args =
    sub === 'split-brain'
      ? parseArgs(argv, { options: [...common, 'source'], positionals: ['volfile', 'split-brain', 'path'] })
      : parseArgs(argv, { options: common, positionals: sub ? ['volfile', sub] : ['volfile'] });
  const level = (args.options.get('log-level') ?? 'warn') as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const timeoutS = Number(args.options.get('timeout') ?? DEFAULT_HEAL_TIMEOUT_S);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new UsageError('--timeout must be a number of seconds');
  if (sub === 'split-brain' && !args.options.get('source')) throw new UsageError('split-brain needs --source CHILD');
  const graph = await startGraph(path.resolve(args.positionals[0]), Logger.create(level, stderrSink()));
  try {
    switch (sub) {
      case 'info':
        return await info(graph);
      case 'split-brain':
        return await resolve(graph, args.options.get('source')!, args.positionals[2], timeoutS * 1000);
      default:
        return await runHeal(graph, sub === 'full' ? HEAL_FULL : HEAL_INDEX, timeoutS * 1000);
    }
  } finally {
    await graph.stop(STOP_TIMEOUT_MS);
  }
}

/**
 * The volfile as this command runs it: its replicate volumes heal only what the command asks
 * for (no background heals of their own, which would hold the very objects it heals).
 */
function forCommand(v: Volfile): Volfile {
  const quiet: Record<string, string> = { 'self-heal-daemon': 'off', 'background-self-heal-count': '0' };
  const volumes = v.volumes.map((d) => {
    if (d.type !== 'cluster/replicate') return d;
    const kept = d.options.filter((o) => !(o.key in quiet) && o.key !== 'self-heal');
    return { ...d, options: [...kept, ...Object.entries(quiet).map(([key, value]) => ({ key, value, line: d.typeLine }))] };
  });
  return { ...v, volumes };
}

async function startGraph(volfile: string, log: Logger): Promise<Graph> {
  const graph = buildGraph(forCommand(readVolfile(volfile)), { id: 1, registry: new Registry(), log });
  const status = await graph.start(START_TIMEOUT_MS);
  if (status !== 'up') {
    await graph.stop(STOP_TIMEOUT_MS);
    throw new Error(`${volfile}: no brick could be reached (${status === 'down' ? 'every child is down' : `no answer within ${START_TIMEOUT_MS / 1000} s`})`);
  }
  return graph;
}

/** The graph's replicate volumes, in volfile order. */
function replicas(g: Graph): Xlator[] {
  const found = [...g.xlators.values()].filter((xl) => xl.type === 'cluster/replicate');
  if (found.length === 0) throw new Error(`the volfile's graph has no cluster/replicate to heal`);
  return found;
}

async function ask<T>(g: Graph, afr: Xlator, name: string): Promise<T> {
  const frame = g.frame('heal', ROOT_CALLER);
  try {
    return JSON.parse((await afr.getxattr(frame, { inode: g.itable.root, path: '/' }, name)).toString()) as T;
  } finally {
    frame.done();
  }
}

/** Each replicate's answer, asked of all at once. */
const askAll = <T>(g: Graph, afrs: Xlator[], name: string): Promise<T[]> => Promise.all(afrs.map((afr) => ask<T>(g, afr, name)));

/** `NAME: ` before what a replicate says, when the graph has more than one. */
const label = (afrs: Xlator[], i: number): string => (afrs.length > 1 ? `${afrs[i].name}: ` : '');

const down = (children: Child[]) => children.filter((c) => !c.up).map((c) => c.name);

/** Heal passes (of every replicate) until nothing is left that can be healed now, or the time is up. */
async function runHeal(g: Graph, what: string, timeoutMs: number): Promise<number> {
  const afrs = replicas(g);
  const end = Date.now() + timeoutMs;
  const total = afrs.map(() => 0);
  const last: Summary[] = [];
  // The replicates still healing; one that is done is not asked again.
  let todo = afrs.map((_, i) => i);
  for (;;) {
    const got = await askAll<Summary>(g, todo.map((i) => afrs[i]), what);
    todo.forEach((i, k) => ((last[i] = got[k]), (total[i] += got[k].healed)));
    todo = todo.filter((i) => last[i].remaining.length > 0);
    if (todo.length === 0 || Date.now() + RETRY_MS > end) break;
    await new Promise((r) => setTimeout(r, RETRY_MS));
    what = HEAL_INDEX;
  }
  const out = [`healed ${total.reduce((a, b) => a + b, 0)} object(s)${afrs.length > 1 ? ` (${afrs.map((a, i) => `${a.name}: ${total[i]}`).join(', ')})` : ''}`];
  let failed = false;
  last.forEach((s, i) => {
    const l = label(afrs, i);
    if (down(s.children).length) out.push(`${l}down, not healed: ${down(s.children).join(', ')}`);
    if (s.splitBrain.length) out.push(`${l}in split brain (see 'xlstack heal VOLFILE info'; resolve with 'split-brain --source CHILD PATH'): ${s.splitBrain.length}`);
    if (s.remaining.length) out.push(`${l}still to heal after ${Math.round(timeoutMs / 1000)} s: ${s.remaining.length}`);
    failed ||= s.splitBrain.length > 0 || s.remaining.length > 0 || down(s.children).length > 0;
  });
  process.stdout.write(out.join('\n') + '\n');
  return failed ? 1 : 0;
}

async function info(g: Graph): Promise<number> {
  const afrs = replicas(g);
  const rs = await askAll<{ children: Child[]; entries: InfoEntry[] }>(g, afrs, HEAL_INFO);
  const all = rs.flatMap((r) => r.entries);
  const paths = await pathsOf(g, new Set(all.map((e) => e.gfid)));
  const lines: string[] = [];
  rs.forEach((r, i) => {
    const l = label(afrs, i);
    lines.push(`${l}children: ${r.children.map((c) => `${c.name} (${c.up ? 'up' : 'down'})`).join(', ')}`);
    for (const e of r.entries) {
      const what = Object.entries(e.pending)
        .map(([kind, v]) => (v === 'split-brain' ? `${kind}: split brain` : `${kind}: behind on ${v.join(', ')}`))
        .concat(e.inFlight ? ['a change in flight (or cut short)'] : []);
      lines.push(`${l}${paths.get(e.gfid) ?? `<gfid:${e.gfid}>`} (${e.type} ${e.gfid}): ${what.join('; ')}`);
    }
  });
  const split = all.filter((e) => Object.values(e.pending).includes('split-brain')).length;
  lines.push(`${all.length} object(s) need heal${split ? `, ${split} in split brain` : ''}`);
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

/** The paths of the GFIDs wanted, found by walking the tree from the root (bounded). */
async function pathsOf(g: Graph, want: Set<string>): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  if (want.has(g.itable.root.gfid)) found.set(g.itable.root.gfid, '/');
  const dirs: { inode: Inode; path: string }[] = [{ inode: g.itable.root, path: '' }];
  let walked = 0;
  const frame = g.frame('heal-paths', ROOT_CALLER);
  try {
    while (dirs.length > 0 && found.size < want.size && walked < PATH_WALK_MAX) {
      const d = dirs.shift()!;
      const fd = g.newFd(d.inode, constants.O_RDONLY, true);
      try {
        await g.top.opendir(frame, { inode: d.inode }, fd);
        for (let off = 0; walked < PATH_WALK_MAX; ) {
          const batch = await g.top.readdirp(frame, fd, 64 * 1024, off);
          if (batch.length === 0) break;
          for (const e of batch) {
            off = e.offset;
            if (e.name === '.' || e.name === '..') continue;
            walked++;
            let iatt = e.iatt;
            if (!iatt) iatt = await g.top.lookup(frame, { parent: d.inode, name: e.name }).catch(() => undefined);
            if (!iatt) continue;
            const p = `${d.path}/${nameToUtf8(e.name)}`;
            if (want.has(iatt.gfid)) found.set(iatt.gfid, p);
            if (isDir(iatt.mode)) dirs.push({ inode: g.itable.link(iatt, d.inode, e.name), path: p });
          }
        }
      } catch {
        // A directory that cannot be listed: its entries keep their GFIDs.
      } finally {
        await fd.unref();
      }
    }
  } finally {
    frame.done();
  }
  return found;
}

/** Looks up a path name by name from the root; the inode of the last name it could find, and what is left. */
async function walk(g: Graph, p: string): Promise<{ inode: Inode; rest: string[]; error?: FopError }> {
  const names = p.split('/').filter((n) => n !== '' && n !== '.');
  let inode = g.itable.root;
  const frame = g.frame('heal-lookup', ROOT_CALLER);
  try {
    for (let i = 0; i < names.length; i++) {
      const name = nameFromUtf8(names[i]);
      try {
        const iatt = await g.top.lookup(frame, { parent: inode, name });
        inode = g.itable.link(iatt, inode, name);
      } catch (e) {
        return { inode, rest: names.slice(i), error: FopError.from(e) };
      }
    }
    return { inode, rest: [] };
  } finally {
    frame.done();
  }
}

async function resolve(g: Graph, source: string, p: string, timeoutMs: number): Promise<number> {
  const afrs = replicas(g);
  // The replicate the source is a child of (with one replicate, it says what a wrong name is).
  const afr = afrs.length === 1 ? afrs[0] : afrs.find((a) => a.children.some((c) => c.name === source));
  if (!afr) throw new Error(`${source} is not a child of any replicate (${afrs.map((a) => `${a.name}: ${a.children.map((c) => c.name).join(', ')}`).join('; ')})`);
  const w = await walk(g, p);
  // A name whose copies are different objects cannot be looked up: its directory is resolved.
  const onDir = w.rest.length === 1 && w.error?.code === 'EIO';
  if (w.rest.length > 0 && !onDir) throw new Error(`${p}: ${w.error?.message ?? 'not found'}`);
  const end = Date.now() + timeoutMs;
  for (;;) {
    const frame = g.frame('split-brain', ROOT_CALLER);
    try {
      await afr.setxattr(frame, { inode: w.inode }, SPLIT_BRAIN_SOURCE, Buffer.from(source, 'latin1'), 0);
      break;
    } catch (e) {
      // Another client is healing it right now: its turn ends soon.
      const busy = e instanceof FopError && e.code === 'EAGAIN';
      if (!busy || Date.now() + RETRY_MS > end) throw new Error(`${p}: ${(e as Error).message}`);
    } finally {
      frame.done();
    }
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
  process.stdout.write(`resolved ${onDir ? `the entries of ${path.posix.dirname(p.startsWith('/') ? p : `/${p}`)} (${w.rest[0]} differed)` : p} with ${source} as the source\n`);
  return 0;
}
