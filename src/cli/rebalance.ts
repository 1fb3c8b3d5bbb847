// `xlstack rebalance`: walks a distribute volume and asks it, directory by directory, to fix
// the directory's layout over its current children, then to move each file whose hash moved
// (GlusterFS's rebalance, driven the same way: through virtual xattrs the cluster/distribute
// translator answers, so this knows no translator). It runs where the volume is served: in a
// mount's daemon (MOUNTPOINT: its active graph, with the files its users have open), or in
// this process for a volfile (VOLFILE: a volume over bricks, whose mounts coordinate with it
// through the bricks' locks, or a volume nobody has mounted).
import { constants } from 'fs';
import * as fs from 'fs';
import * as path from 'path';
import { buildGraph } from '../core/builder';
import { FopError } from '../core/errors';
import type { Frame } from '../core/frame';
import type { Graph } from '../core/graph';
import type { Inode } from '../core/inode';
import type { Logger } from '../core/log';
import { Registry } from '../core/registry';
import { isDir } from '../core/types';
import type { DirentPlus, Name } from '../core/types';
import { readVolfile } from '../core/volfile';
import { UsageError, parseArgs } from './args';
import { NoDaemonError, callControl } from './control';
import { controlSocket } from './runtime';

/** The virtual xattrs cluster/distribute answers to (xlators/cluster/distribute/index.ts). */
const FIX_LAYOUT = 'trusted.xlstack.dht.fix-layout';
const MIGRATE = 'trusted.xlstack.dht.migrate';
const REMOVING = 'trusted.xlstack.dht.removing';

/** How many files move at once. */
const CONCURRENCY = 4;
/** Entries asked for at once when listing a directory. */
const LIST_CHUNK = 128 * 1024;
/**
 * When removing children, walks are repeated (at most this many) while files are still found
 * on them: files created meanwhile by clients that had not yet read the new layouts.
 */
const MAX_PASSES = 3;
/** How long the command waits for a daemon's rebalance (it goes on in the daemon after that; its log says how it ends). */
const DAEMON_WAIT_MS = 6 * 3600_000;
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
/** A progress line every this many files. */
const PROGRESS_EVERY = 1000;

export interface RebalanceOptions {
  /** Children to drain (volume names in the volfile); none: spread over all of them. */
  readonly remove: readonly string[];
  readonly log: Logger;
}

export interface RebalanceReport {
  directories: number;
  layoutsChanged: number;
  files: number;
  moved: number;
  bytes: number;
  inPlace: number;
  skipped: Record<string, number>;
  failed: { path: string; error: string }[];
  /** Files still on the children being removed after the last pass. */
  left: number;
  passes: number;
}

interface FileReport {
  readonly result: 'moved' | 'in-place' | 'skipped';
  readonly child?: string;
  readonly bytes?: number;
  readonly reason?: string;
}

/** Rebalances the distribute volume `graph` serves (it must be started). */
export async function rebalanceGraph(graph: Graph, opts: RebalanceOptions): Promise<RebalanceReport> {
  const { log } = opts;
  const root = graph.itable.root;
  const inFrame = async <T>(fn: (f: Frame) => Promise<T>): Promise<T> => {
    const f = graph.frame('rebalance');
    try {
      return await fn(f);
    } finally {
      f.done();
    }
  };
  await inFrame((f) => graph.top.lookup(f, { path: '/', inode: root }));
  try {
    await inFrame((f) => graph.top.setxattr(f, { path: '/', inode: root }, REMOVING, Buffer.from(opts.remove.join(','), 'latin1'), 0));
  } catch (e) {
    const err = FopError.from(e);
    if (err.code === 'EPERM' || err.code === 'ENOTSUP' || err.code === 'EOPNOTSUPP') throw new Error(`this volume has no cluster/distribute to rebalance (${err.message})`);
    throw new Error(err.detail ?? err.message);
  }
  const removing = new Set(opts.remove);
  const report: RebalanceReport = { directories: 0, layoutsChanged: 0, files: 0, moved: 0, bytes: 0, inPlace: 0, skipped: {}, failed: [], left: 0, passes: 0 };
  for (;;) {
    report.passes++;
    report.left = 0;
    log.info(`rebalance: pass ${report.passes}${removing.size ? `, draining ${[...removing].join(', ')}` : ''}`);
    await walk(graph, inFrame, report, removing, log);
    if (removing.size === 0 || report.left === 0 || report.passes >= MAX_PASSES) break;
  }
  log.info(`rebalance: done: ${summary(report)}`);
  return report;
}

type InFrame = <T>(fn: (f: Frame) => Promise<T>) => Promise<T>;

/** One pass over every directory, depth first (a stack, not recursion: trees may be deep). */
async function walk(graph: Graph, inFrame: InFrame, report: RebalanceReport, removing: ReadonlySet<string>, log: Logger): Promise<void> {
  const top = graph.top;
  const stack: { inode: Inode; path: string }[] = [{ inode: graph.itable.root, path: '/' }];
  while (stack.length) {
    const dir = stack.pop()!;
    report.directories++;
    try {
      const fixed = JSON.parse((await inFrame((f) => top.getxattr(f, { path: dir.path, inode: dir.inode }, FIX_LAYOUT))).toString()) as { changed: boolean };
      if (fixed.changed) report.layoutsChanged++;
      // The whole listing first: moving files changes the children's listings under a cursor.
      const entries = await list(graph, inFrame, dir.inode, dir.path);
      const files: DirentPlus[] = [];
      for (const e of entries) {
        const p = `${dir.path === '/' ? '' : dir.path}/${e.name}`;
        if (e.iatt ? isDir(e.iatt.mode) : e.type === constants.S_IFDIR) {
          try {
            const iatt = await inFrame((f) => top.lookup(f, { path: p, parent: dir.inode, name: e.name }));
            stack.push({ inode: graph.itable.link(iatt, dir.inode, e.name), path: p });
          } catch (err) {
            report.failed.push({ path: p, error: (err as Error).message });
          }
        } else {
          files.push(e);
        }
      }
      await pool(files, CONCURRENCY, (e) => moveOne(graph, inFrame, report, removing, dir, e, log));
    } catch (e) {
      report.failed.push({ path: dir.path, error: (e as Error).message });
      log.warn(`rebalance: ${dir.path}: ${(e as Error).message}`);
    }
  }
}

async function moveOne(graph: Graph, inFrame: InFrame, report: RebalanceReport, removing: ReadonlySet<string>, dir: { inode: Inode; path: string }, e: DirentPlus, log: Logger): Promise<void> {
  const p = `${dir.path === '/' ? '' : dir.path}/${e.name}`;
  report.files++;
  if (report.files % PROGRESS_EVERY === 0) log.info(`rebalance: ${report.files} files seen, ${report.moved} moved`);
  try {
    // A listing may leave attributes out (write-behind does for files whose writes it holds): a lookup gets them.
    const gfid = e.iatt?.gfid ?? (await inFrame((f) => graph.top.lookup(f, { path: p, parent: dir.inode, name: e.name }))).gfid;
    const at = { path: p, parent: dir.inode, name: e.name as Name, inode: graph.itable.get(gfid) };
    const r = JSON.parse((await inFrame((f) => graph.top.getxattr(f, at, MIGRATE))).toString()) as FileReport;
    if (r.result === 'moved') {
      report.moved++;
      report.bytes += r.bytes ?? 0;
    } else if (r.result === 'in-place') {
      report.inPlace++;
    } else {
      const why = r.reason ?? 'no reason given';
      report.skipped[why] = (report.skipped[why] ?? 0) + 1;
      log.info(`rebalance: ${p} stays on ${r.child ?? '?'}: ${why}`);
    }
    if (r.result !== 'moved' && r.child !== undefined && removing.has(r.child)) report.left++;
  } catch (err) {
    report.failed.push({ path: p, error: (err as Error).message });
    log.warn(`rebalance: ${p}: ${(err as Error).message}`);
  }
}

async function list(graph: Graph, inFrame: InFrame, inode: Inode, p: string): Promise<DirentPlus[]> {
  const fd = graph.newFd(inode, constants.O_RDONLY, true);
  try {
    await inFrame((f) => graph.top.opendir(f, { path: p, inode }, fd));
    const out: DirentPlus[] = [];
    for (let cookie = 0; ; ) {
      const chunk = await inFrame((f) => graph.top.readdirp(f, fd, LIST_CHUNK, cookie));
      if (chunk.length === 0) return out;
      out.push(...chunk.filter((e) => e.name !== '.' && e.name !== '..'));
      cookie = chunk[chunk.length - 1].offset;
    }
  } finally {
    await fd.unref();
  }
}

/** Runs `fn` on every item, `n` at a time. */
async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

export function summary(r: RebalanceReport): string {
  const skipped = Object.entries(r.skipped).map(([why, n]) => `${n} (${why})`);
  return (
    `${r.directories} directories (${r.layoutsChanged} layouts changed), ${r.files} files: ${r.moved} moved (${r.bytes} bytes), ` +
    `${r.inPlace} already in place, ${skipped.length ? skipped.join(', ') : '0'} skipped, ${r.failed.length} failed` +
    (r.passes > 1 ? `, ${r.passes} passes` : '')
  );
}

/** The report as the command prints it; the exit code says whether the volume is as asked. */
function print(r: RebalanceReport, remove: readonly string[]): number {
  process.stdout.write(`rebalance: ${summary(r)}\n`);
  for (const f of r.failed) process.stdout.write(`  failed: ${f.path}: ${f.error}\n`);
  if (remove.length === 0) return r.failed.length ? 1 : 0;
  if (r.left === 0 && r.failed.length === 0) {
    process.stdout.write(`${remove.join(', ')}: drained; remove ${remove.length > 1 ? 'them' : 'it'} from the volfile and reload\n`);
    return 0;
  }
  process.stdout.write(`${remove.join(', ')}: ${r.left} file(s) still there: do not remove ${remove.length > 1 ? 'them' : 'it'} yet\n`);
  return 1;
}

/**
 * `xlstack rebalance MOUNTPOINT|VOLFILE [--remove CHILD,...]`: in the daemon serving the
 * mountpoint, or in this process over the volfile's graph.
 */
export async function rebalance(argv: string[], makeLog: (level?: string) => Logger): Promise<number> {
  const args = parseArgs(argv, { flags: ['passthrough-unknown'], options: ['remove', 'log-level'], positionals: ['target'] });
  const target = path.resolve(args.positionals[0]);
  const remove = (args.options.get('remove') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (args.options.has('remove') && remove.length === 0) throw new UsageError('--remove needs the names of the subvolumes to drain');
  let st: fs.Stats;
  try {
    st = fs.statSync(target);
  } catch (e) {
    throw new Error(`${target}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such mountpoint or volfile' : (e as Error).message}`);
  }
  if (st.isDirectory()) {
    let r: RebalanceReport;
    try {
      r = (await callControl(controlSocket(target), { cmd: 'rebalance', remove } as never, DAEMON_WAIT_MS)) as RebalanceReport;
    } catch (e) {
      if (e instanceof NoDaemonError) throw new NoDaemonError(`no xlstack daemon serves ${target}`);
      throw e;
    }
    return print(r, remove);
  }
  const log = makeLog(args.options.get('log-level') ?? 'warn');
  const graph = buildGraph(readVolfile(target), { id: 1, registry: new Registry(), log, passthroughUnknown: args.flags.has('passthrough-unknown') });
  try {
    const status = await graph.start(START_TIMEOUT_MS);
    if (status !== 'up') throw new Error(`${target}: the volume did not come up (${status === 'down' ? 'its children are down' : `no answer within ${START_TIMEOUT_MS / 1000} s`})`);
    return print(await rebalanceGraph(graph, { remove, log }), remove);
  } finally {
    await graph.stop(STOP_TIMEOUT_MS);
  }
}

/** What a daemon's control socket passes to rebalanceGraph: the request's `remove`, checked. */
export function removeOf(req: unknown): string[] {
  const r = (req as { remove?: unknown }).remove ?? [];
  if (!Array.isArray(r) || !r.every((x) => typeof x === 'string')) throw new Error('rebalance: remove must be a list of subvolume names');
  return r;
}
