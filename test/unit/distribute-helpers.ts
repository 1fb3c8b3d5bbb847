// In-process distribute volumes for unit tests: N storage/posix children (each under
// features/locks, optionally a debug/gate to hold its fops), cluster/distribute on top, and
// a path-based Bridge to drive it. Everything goes with cleanupGraphs().
import * as fs from 'fs';
import * as path from 'path';
import type { Graph } from '../../src/core/graph';
import type { Bridge } from '../../src/fuse/bridge';
import type { Distribute } from '../../xlators/cluster/distribute/index';
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
  /** The volume's child names, as its volfile names them. */
  readonly names: readonly string[];
}

export interface DhtOptions {
  /** Backing directories to reuse (another "client" of the same bricks, a restart, a grown volume). */
  readonly dirs?: readonly string[];
  readonly gates?: boolean;
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
    const below = o.gates ? `${name}-gate` : `${name}-posix`;
    if (o.gates) text += `volume ${name}-gate\n type debug/gate\n subvolumes ${name}-posix\nend-volume\n`;
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
