// In-process replica sets for unit tests: cluster/replicate over N local "bricks" (each
// storage/posix, features/locks and features/index over a scratch directory), each behind a
// test/switch that a test turns off (every fop then fails with ENOTCONN at once, CHILD_DOWN
// goes up, and the brick forgets replicate's locks, as a restarted brick would) and on
// again (CHILD_UP). Several graphs over the same directories are several clients.
import * as fs from 'fs';
import * as path from 'path';
import { buildGraph } from '../../src/core/builder';
import { FopError } from '../../src/core/errors';
import { XlEvent } from '../../src/core/events';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { Logger } from '../../src/core/log';
import { Registry, defineTranslator } from '../../src/core/registry';
import type { Iatt } from '../../src/core/types';
import { parseVolfile } from '../../src/core/volfile';
import { Xlator } from '../../src/core/xlator';
import type { Replicate } from '../../xlators/cluster/replicate/index';
import { tempDir, within } from './graphs';

/** A child that can be switched off and on, as a brick that dies and comes back. */
export class Switch extends Xlator {
  private off = false;

  get isOn(): boolean {
    return !this.off;
  }

  /** The brick dies: fops fail, CHILD_DOWN goes up, its replicate locks are gone. */
  down(): void {
    this.off = true;
    this.children[0].clientGone('afr.');
    this.up(XlEvent.CHILD_DOWN);
  }

  /** The brick is back. */
  restore(): void {
    this.off = false;
    this.up(XlEvent.CHILD_UP);
  }

  override notify(event: XlEvent, from?: Xlator): void {
    if (this.off && (event === XlEvent.CHILD_UP || event === XlEvent.CHILD_DOWN)) return;
    super.notify(event, from);
  }
}

Xlator.interceptAll(Switch, (xl, op, _args, next) => {
  if (!xl.isOn) return Promise.reject(new FopError('ENOTCONN', `${xl.name} is switched off (${op})`));
  return next();
});

export const switchDef = defineTranslator({
  type: 'test/switch',
  description: 'a child a test turns off and on',
  options: {},
  subvolumes: { min: 1, max: 1 },
  create: (init) => new Switch(init),
});

export interface ReplicaSet {
  readonly graph: Graph;
  readonly afr: Replicate;
  /** The bricks' backing directories, by child. */
  readonly dirs: string[];
  readonly switches: Switch[];
  readonly logs: string[];
  log(): string;
  root(): Inode;
}

export interface ReplicaOptions {
  readonly n?: number;
  /** Options of the replicate volume (volfile lines). */
  readonly options?: string;
  /** Reuse these bricks (another client of the same set). */
  readonly dirs?: string[];
  readonly id?: number;
  /** Extra translators for brick i, between the switch and the index (e.g. debug/error-gen): volfile text whose top is named `extra-I`, over `index-I`. */
  readonly perBrick?: (i: number) => string | undefined;
}

const running: Graph[] = [];
let ids = 500;

export function replicaVolfile(dirs: string[], o: ReplicaOptions = {}): string {
  const parts = dirs.map((d, i) => {
    const extra = o.perBrick?.(i) ?? '';
    const below = extra ? `extra-${i}` : `index-${i}`;
    return `volume posix-${i}
  type storage/posix
  option directory ${d}
end-volume
volume locks-${i}
  type features/locks
  subvolumes posix-${i}
end-volume
volume index-${i}
  type features/index
  option directory ${d}-index
  subvolumes locks-${i}
end-volume
${extra}volume client-${i}
  type test/switch
  subvolumes ${below}
end-volume
`;
  });
  return `${parts.join('')}volume replica
  type cluster/replicate
${o.options ?? ''}  subvolumes ${dirs.map((_, i) => `client-${i}`).join(' ')}
end-volume
`;
}

/** Starts a replica set (new bricks, or `o.dirs`); it must come up. */
export async function startReplica(o: ReplicaOptions = {}): Promise<ReplicaSet> {
  const dirs = o.dirs ?? [...Array(o.n ?? 2).keys()].map(() => tempDir('xlstack-afr-'));
  const registry = new Registry();
  registry.register(switchDef);
  const logs: string[] = [];
  const graph = buildGraph(parseVolfile(replicaVolfile(dirs, o), 'replica-test.vol'), { id: o.id ?? ids++, registry, log: Logger.create('debug', (l) => logs.push(l)) });
  running.push(graph);
  const status = await within(graph.start(5000));
  if (status !== 'up') throw new Error(`the replica set did not come up (${status}):\n${logs.join('\n')}`);
  return {
    graph,
    afr: graph.xlators.get('replica') as Replicate,
    dirs,
    switches: dirs.map((_, i) => graph.xlators.get(`client-${i}`) as Switch),
    logs,
    log: () => logs.join('\n'),
    root: () => graph.itable.root,
  };
}

export async function stopReplicas(): Promise<void> {
  for (const g of running.splice(0)) await within(g.stop(5000)).catch(() => undefined);
}

/** The internal xattrs of a backing file, by name (getfattr-like, via the brick's own directory). */
export function changelogOf(dir: string, rel: string): Record<string, number[]> {
  const { execFileSync } = require('child_process') as typeof import('child_process');
  const out = execFileSync('getfattr', ['-h', '--absolute-names', '-d', '-m', '^trusted\\.xlstack\\.afr\\.', '-e', 'hex', path.join(dir, rel)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const res: Record<string, number[]> = {};
  for (const line of out.split('\n')) {
    const m = /^trusted\.xlstack\.afr\.(\S+)=0x([0-9a-f]+)$/.exec(line.trim());
    if (!m) continue;
    const b = Buffer.from(m[2], 'hex');
    res[m[1]] = [0, 4, 8].map((o) => b.readInt32BE(o));
  }
  return res;
}

/** Whether a changelog (as changelogOf reads it) is all zeros. */
export const clear = (log: Record<string, number[]>): boolean => Object.values(log).every((v) => v.every((n) => n === 0));

/** The GFIDs features/index lists for brick `dir`. */
export const indexed = (dir: string): string[] => (fs.existsSync(`${dir}-index`) ? fs.readdirSync(`${dir}-index`).sort() : []);

export type { Iatt };
