// In-process distribute volumes for unit tests: N storage/posix children (each under
// features/locks, optionally a debug/gate to hold its fops), cluster/distribute on top, and
// a path-based Bridge to drive it. Everything goes with cleanupGraphs().
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Graph } from '../../src/core/graph';
import type { Xlator } from '../../src/core/xlator';
import type { Bridge } from '../../src/fuse/bridge';
import { NameHasher, RSYNC_HASH_REGEX } from '../../xlators/cluster/distribute/hash';
import { Distribute, VIRTUAL } from '../../xlators/cluster/distribute/index';
import { hashedChild } from '../../xlators/cluster/distribute/layout';
import type { Gate } from '../../xlators/debug/gate';
import { newBridge, startGraph, tempDir } from '../helpers/graphs';

let nextVolume = 0;

export interface DhtVolume {
  readonly graph: Graph;
  readonly bridge: Bridge;
  /** Each child's backing directory. */
  readonly dirs: readonly string[];
  readonly dht: Distribute;
  /** Child i's gate (when asked for). */
  gate(i: number): Gate;
  /** Child i's volume of `type` (one of its layers). */
  layer<T = Xlator>(i: number, type: string): T;
  /** The volume's child names, as its volfile names them. */
  readonly names: readonly string[];
}

export interface DhtOptions {
  /** Backing directories to reuse (another "client" of the same bricks, a restart, a grown volume). */
  readonly dirs?: readonly string[];
  readonly gates?: boolean;
  /** Translator types stacked between each child's posix and its locks (after the gate, if any). */
  readonly layers?: readonly string[];
  readonly dhtOptions?: string;
  /** The volume's name prefix: graphs with the same prefix share their children's lock tables, as two clients of one brick do. */
  readonly prefix?: string;
}

/** A distribute volfile over `dirs`: child i is `<prefix>-c<i>` (locks over posix, a gate between if asked). */
export function dhtVolfile(dirs: readonly string[], o: DhtOptions = {}): { text: string; names: string[] } {
  const prefix = o.prefix ?? `v${++nextVolume}`;
  let text = '';
  const names: string[] = [];
  dirs.forEach((d, i) => {
    const name = `${prefix}-c${i}`;
    names.push(name);
    text += `volume ${name}-posix\n type storage/posix\n option directory ${d}\nend-volume\n`;
    let below = `${name}-posix`;
    for (const type of [...(o.gates ? ['debug/gate'] : []), ...(o.layers ?? [])]) {
      const layer = `${name}-${type.split('/')[1]}`;
      text += `volume ${layer}\n type ${type}\n subvolumes ${below}\nend-volume\n`;
      below = layer;
    }
    text += `volume ${name}\n type features/locks\n subvolumes ${below}\nend-volume\n`;
  });
  text += `volume ${prefix}-dht\n type cluster/distribute\n${o.dhtOptions ?? ''} subvolumes ${names.join(' ')}\nend-volume\n`;
  return { text, names };
}

let nextGraph = 1000;

/** Starts a distribute volume over `n` fresh children (or `o.dirs`). */
export async function startDht(n: number, o: DhtOptions = {}): Promise<DhtVolume> {
  const dirs = o.dirs ?? Array.from({ length: n }, (_, i) => tempDir(`xlstack-dht-c${i}-`));
  const { text, names } = dhtVolfile(dirs, o);
  const graph = await startGraph(dirs[0], nextGraph++, text);
  const byName = (name: string) => graph.xlators.get(name)!;
  return {
    graph,
    bridge: newBridge(graph),
    dirs,
    names,
    dht: graph.top as unknown as Distribute,
    gate: (i) => byName(`${names[i]}-gate`) as unknown as Gate,
    layer: <T>(i: number, type: string) => byName(`${names[i]}-${type.split('/')[1]}`) as unknown as T,
  };
}

/** The names in a child's backing directory `rel` (without posix's own .xlstack). */
export function onChild(dir: string, rel = ''): string[] {
  return fs.readdirSync(path.join(dir, rel)).filter((n) => n !== '.xlstack').sort();
}

/** Whether a backing file is a linkto file (sticky bit only). */
export function isLinkto(dir: string, rel: string): boolean {
  const st = fs.lstatSync(path.join(dir, rel));
  return st.isFile() && (st.mode & 0o7777) === 0o1000;
}

/** The children holding `rel` as data (not as a linkto file). */
export function dataOn(dirs: readonly string[], rel: string): number[] {
  return dirs.flatMap((d, i) => (fs.existsSync(path.join(d, rel)) && !isLinkto(d, rel) ? [i] : []));
}

/** Child index (in v.names) that `name` in directory `dir` (a volume path) hashes to, from the directory's layout. */
export async function hashedOf(v: DhtVolume, dir: string, name: string): Promise<number> {
  const info = JSON.parse((await v.bridge.getxattr(dir, VIRTUAL.pathinfo)).toString()) as { layout: Record<string, [number, number] | null> };
  const layout = v.names.map((n) => (info.layout[n] ? { start: info.layout[n]![0], stop: info.layout[n]![1] } : undefined));
  const h = hashedChild(layout, new NameHasher(RSYNC_HASH_REGEX).hash(name));
  if (h === undefined) throw new Error(`no child takes ${name} in ${dir}`);
  return h;
}

/** Where a file is, as the volume says (its child and its hashed child, as names). */
export async function pathinfo(v: DhtVolume, p: string): Promise<{ child: string; hashed: string }> {
  return JSON.parse((await v.bridge.getxattr(p, VIRTUAL.pathinfo)).toString());
}

/** An xattr of a backing file, as a Buffer (undefined: it has none). */
export function backingXattr(file: string, name: string): Buffer | undefined {
  const r = spawnSync('getfattr', ['--absolute-names', '-e', 'hex', '-n', name, file], { encoding: 'latin1' });
  const m = /=0x([0-9a-f]*)/.exec(r.stdout);
  return r.status === 0 && m ? Buffer.from(m[1], 'hex') : undefined;
}

/** A name (in `dir` of volume `v`) that hashes to child `want`, other than `avoid`. */
export async function nameOn(v: DhtVolume, dir: string, want: number, prefix = 'n', avoid: string[] = []): Promise<string> {
  for (let i = 0; i < 1000; i++) {
    const n = `${prefix}${i}`;
    if (!avoid.includes(n) && (await hashedOf(v, dir, n)) === want) return n;
  }
  throw new Error(`no name hashes to child ${want}`);
}
