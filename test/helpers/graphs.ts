// In-process graphs for unit tests: build and start a graph over a scratch directory, call
// fops on it directly or through a Bridge (a path-based driver; no FUSE), and clean up.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildGraph } from '../../src/core/builder';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import type { Iatt } from '../../src/core/types';
import { parseVolfile } from '../../src/core/volfile';
import { Bridge } from '../../src/fuse/bridge';

const temps: string[] = [];
const running: Graph[] = [];

export function tempDir(prefix = 'xlstack-test-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  temps.push(d);
  return d;
}

export const posixVolfile = (dir: string) => `volume p\n type storage/posix\n option directory ${dir}\nend-volume\n`;

/** Builds and starts graph `id` (storage/posix over `dir`, or the volfile given); it must come up. */
export async function startGraph(dir: string, id = 1, volfile = posixVolfile(dir)): Promise<Graph> {
  const graph = buildGraph(parseVolfile(volfile, 'test.vol'), { id, registry: new Registry(), log: Logger.create('error') });
  running.push(graph);
  expect(await within(graph.start(5000))).toBe('up');
  return graph;
}

export async function stopGraph(g: Graph): Promise<void> {
  const i = running.indexOf(g);
  if (i >= 0) running.splice(i, 1);
  await within(g.stop(5000));
}

/** For afterEach: stops every graph and removes every scratch directory a test made. */
export async function cleanupGraphs(): Promise<void> {
  for (const g of running.splice(0)) await within(g.stop(5000)).catch(() => undefined);
  for (const d of temps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

/** `p`, or a rejection after `ms`: a test never hangs. */
export function within<T>(p: Promise<T>, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

/** 'OK' or the error code a fop failed with. */
export async function errCode(p: Promise<unknown>): Promise<string> {
  try {
    await within(p);
    return 'OK';
  } catch (e) {
    return String((e as { code?: unknown }).code ?? (e as Error).message);
  }
}

export function lookup(g: Graph, parent: Inode, name: string): Promise<Iatt> {
  return g.top.lookup(g.frame('lookup'), { path: name, parent, name });
}

export async function lookupInode(g: Graph, parent: Inode, name: string): Promise<Inode> {
  return g.itable.link(await lookup(g, parent, name), parent, name);
}

/** A lookup by GFID alone. */
export function nameless(g: Graph, gfid: string): Promise<Iatt> {
  return g.top.lookup(g.frame('lookup'), { path: `<gfid:${gfid}>`, gfid });
}

export const hex = (gfid: string) => gfid.replace(/-/g, '');
export const handlePath = (dir: string, gfid: string) => path.join(dir, '.xlstack', 'handles', gfid.slice(0, 2), gfid);

/** A path-based driver for `g` that logs errors only. */
export const newBridge = (g: Graph): Bridge => new Bridge(g, Logger.create('error'));

export async function writeFile(b: Bridge, p: string, data: string): Promise<void> {
  const fh = await b.create(p, 0o644, fs.constants.O_RDWR);
  try {
    expect(await b.write(p, fh, Buffer.from(data), 0)).toBe(Buffer.byteLength(data));
  } finally {
    await b.release(p, fh);
  }
}

export async function readAll(b: Bridge, p: string): Promise<string> {
  const fh = await b.open(p, fs.constants.O_RDONLY);
  try {
    return (await b.read(p, fh, 4096, 0)).toString();
  } finally {
    await b.release(p, fh);
  }
}
