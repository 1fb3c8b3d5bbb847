// A mount-less stack for race reproductions: a switcher and a bridge (real, or an older
// design with chosen flaws) over a scratch directory, volfiles written on demand, gates
// reached by graph, and bounded waits that tell a hang from an answer.
import * as fs from 'fs';
import { constants } from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Graph } from '../../src/core/graph';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import type { Bridge } from '../../src/fuse/bridge';
import type { MigrationBounds } from '../../src/fuse/migrator';
import { GraphSwitcher, ReloadResult } from '../../src/fuse/switcher';
import type { Gate } from '../../xlators/debug/gate';
import { BridgeFlaw, LegacyCore, LegacySwitcher, SwitcherFlaw, inodeSerializer } from './legacy';

export const O_RDWR = constants.O_RDWR;

export interface Stack {
  readonly backing: string;
  readonly switcher: GraphSwitcher;
  readonly bridge: Bridge;
  /** Writes the volfile (`@BACKING@` is the storage directory) and reloads. */
  reload(volfile: string): Promise<ReloadResult>;
  /** Writes the volfile without reloading. */
  write(volfile: string): void;
  graph(id: number): Graph;
  gate(graphId: number, name?: string): Gate;
  /** Graph ids still alive. */
  ids(): number[];
  close(): Promise<void>;
}

export interface StackOptions {
  readonly flaws?: readonly BridgeFlaw[];
  readonly switcherFlaws?: readonly SwitcherFlaw[];
  readonly passthroughUnknown?: boolean;
  readonly sweepAfterMs?: number;
  readonly bounds?: MigrationBounds;
}

const open: Stack[] = [];

export async function stack(volfile: string, opts: StackOptions = {}): Promise<Stack> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlstack-race-'));
  const backing = path.join(dir, 'backing');
  fs.mkdirSync(backing);
  const file = path.join(dir, 'race.vol');
  const write = (text: string) => fs.writeFileSync(file, text.replace(/@BACKING@/g, backing));
  write(volfile);
  const registry = new Registry();
  registry.register(inodeSerializer);
  const flaws = new Set(opts.flaws ?? []);
  const switcherOpts = {
    volfile: file,
    registry,
    // The schedules' outcomes are their assertions; the log stays quiet.
    log: Logger.create('error', () => undefined),
    passthroughUnknown: opts.passthroughUnknown,
    startTimeoutMs: 2000,
    stopTimeoutMs: 300,
    sweepAfterMs: opts.sweepAfterMs ?? 0,
    bounds: opts.bounds,
    core: flaws.size ? (g: Graph, log: Logger, o: object) => LegacyCore.make(g, log, o, flaws) : undefined,
  };
  const switcher = opts.switcherFlaws?.length ? new LegacySwitcher(switcherOpts, new Set(opts.switcherFlaws)) : new GraphSwitcher(switcherOpts);
  const bridge = await switcher.start();
  const graph = (id: number) => {
    const g = switcher.graphs().find((x) => x.id === id);
    if (!g) throw new Error(`graph ${id} is not alive (alive: ${switcher.graphs().map((x) => x.id)})`);
    return g;
  };
  const s: Stack = {
    backing,
    switcher,
    bridge,
    write,
    reload: (text) => (write(text), switcher.reload()),
    graph,
    gate: (id, name = 'gate') => graph(id).xlators.get(name) as Gate,
    ids: () => switcher.graphs().map((g) => g.id),
    async close() {
      bridge.stopSweeping();
      for (const b of [...bridge.basefds.all()]) await within(bridge.release(b.path, b.id).catch(() => undefined), 1000);
      await within(switcher.stopAll(), 3000);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  open.push(s);
  return s;
}

/** For afterEach: closes every stack a test made. */
export async function closeStacks(): Promise<void> {
  for (const s of open.splice(0)) await s.close();
}

export const HUNG = Symbol('hung');

/** Waits for `p` at most `ms`: its value, or HUNG. A hang is an outcome a test can assert. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | typeof HUNG> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<typeof HUNG>((r) => (timer = setTimeout(() => r(HUNG), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Settles to the value, or the errno of the error: an outcome to compare. */
export async function outcome<T>(p: Promise<T>): Promise<T | string> {
  try {
    return await p;
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

/** A promise and whether it has settled yet: a probe to read, not a wait. */
export interface Tracked<T> {
  readonly promise: Promise<T>;
  readonly settled: boolean;
}

export function track<T>(promise: Promise<T>): Tracked<T> {
  const t = { promise, settled: false };
  promise.then(
    () => (t.settled = true),
    () => (t.settled = true),
  );
  return t;
}

/**
 * Waits (bounded) until `t` settles or `blocked()` says it is stuck where the schedule holds
 * it; returns its outcome, or 'blocked'. Deterministic: in a correct run the request can only
 * be blocked there, so 'blocked' is a state observed, not a wait that timed out.
 */
export async function settledOrBlocked<T>(t: Tracked<T>, blocked: () => boolean): Promise<T | string> {
  if (!(await until(() => t.settled || blocked(), 10_000))) return HUNG.toString();
  return t.settled ? outcome(t.promise) : 'blocked';
}

export async function until(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

export async function createFile(b: Bridge, p: string, text: string): Promise<number> {
  const fh = await b.create(p, 0o644, O_RDWR);
  await b.write(p, fh, Buffer.from(text), 0);
  return fh;
}

export const read = async (b: Bridge, p: string, fh: number, n = 64) => (await b.read(p, fh, n, 0)).toString();

/** Volfile pieces. */
export const POSIX = 'volume posix\n    type storage/posix\n    option directory @BACKING@\nend-volume\n';
export const layer = (name: string, type: string, below: string, options = '') =>
  `volume ${name}\n    type ${type}\n${options}    subvolumes ${below}\nend-volume\n`;
