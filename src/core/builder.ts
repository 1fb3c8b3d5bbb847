import * as path from 'path';
import { Graph } from './graph';
import type { Logger } from './log';
import { OptionValues, parseOptions } from './options';
import { Registry, TranslatorDef, defineTranslator } from './registry';
import { Volfile, VolfileError, VolfileProblem, VolumeDecl, byLine } from './volfile';
import { Xlator } from './xlator';

export interface BuildOptions {
  readonly id: number;
  readonly registry: Registry;
  readonly log: Logger;
  /**
   * Accept GlusterFS volfiles: volumes of types xlstack does not implement pass every
   * fop through unchanged, and options a type does not know are ignored (both logged).
   */
  readonly passthroughUnknown?: boolean;
  readonly lruLimit?: number;
  readonly entryTimeoutMs?: number;
}

/** Stand-in for a type xlstack does not implement (only with passthroughUnknown). */
const passThrough = (type: string): TranslatorDef =>
  defineTranslator({
    type,
    description: 'not implemented by xlstack: passes every fop to its first subvolume',
    options: {},
    subvolumes: { min: 0 },
    create: (init) => new Xlator(init),
  });

interface Checked {
  readonly decl: VolumeDecl;
  readonly def: TranslatorDef;
  readonly options: OptionValues<TranslatorDef['options']>;
}

/**
 * Why a volume of an unimplemented type may not become a pass-through, if it may not: a
 * pass-through serves every fop from its first subvolume, which for a cluster translator
 * (replicate, distribute...) or any volume over several subvolumes means the data silently
 * stops reaching the others.
 */
function passThroughRefusal(decl: VolumeDecl): string | undefined {
  const n = decl.subvolumes.length;
  const alone = `passed through, data would silently go to '${decl.subvolumes[0]?.name}' alone`;
  if (decl.type.startsWith('cluster/')) {
    return n > 1
      ? `a cluster translator spreads or copies data over its ${n} subvolumes; ${alone}`
      : 'a cluster translator decides where data goes and keeps metadata for it (layouts, copies); passed through, that would silently be skipped';
  }
  if (n > 1) return `it has ${n} subvolumes; ${alone}`;
  return undefined;
}

/**
 * The validation of a volfile: its structure (parser), each volume's type, options and
 * number of subvolumes; every problem is reported together, sorted by line. buildGraph runs
 * it first, so `xlstack check`, mount, brick and reload all judge a volfile by this.
 */
export function checkVolfile(volfile: Volfile, opts: Pick<BuildOptions, 'registry' | 'passthroughUnknown' | 'log'>): Checked[] {
  const problems: VolfileProblem[] = [...volfile.problems];
  const checked: Checked[] = [];
  const baseDir = path.dirname(path.resolve(volfile.file));
  for (const decl of volfile.volumes) {
    // A volume without a type is a structural problem, reported already.
    if (decl.type === '') continue;
    let def: TranslatorDef | undefined;
    try {
      def = opts.registry.find(decl.type);
    } catch (e) {
      problems.push({ line: decl.typeLine, message: `volume '${decl.name}': type '${decl.type}' cannot be loaded: ${(e as Error).message}` });
      continue;
    }
    if (!def) {
      const refusal = passThroughRefusal(decl);
      if (refusal) {
        problems.push({
          line: decl.typeLine,
          message: `volume '${decl.name}': type '${decl.type}' is not implemented by xlstack and cannot be passed through, even with --passthrough-unknown: ${refusal}`,
        });
        continue;
      }
      if (!opts.passthroughUnknown) {
        problems.push({
          line: decl.typeLine,
          message: `volume '${decl.name}': type '${decl.type}' is not implemented by xlstack (--passthrough-unknown passes such volumes through)`,
        });
        continue;
      }
      opts.log.warn(`${volfile.file}:${decl.typeLine}: volume '${decl.name}': type '${decl.type}' is not implemented; passing it through`);
      def = passThrough(decl.type);
    }
    const n = decl.subvolumes.length;
    const { min, max } = def.subvolumes;
    if (n < min || (max !== undefined && n > max)) {
      const want = max === undefined ? `at least ${min}` : min === max ? `${min}` : `${min} to ${max}`;
      problems.push({ line: decl.subvolumes[0]?.line ?? decl.line, message: `volume '${decl.name}': ${decl.type} takes ${want} subvolume(s), got ${n}` });
    }
    const parsed = parseOptions(def.options, decl.options, {
      baseDir,
      type: decl.type,
      tolerateUnknown: opts.passthroughUnknown,
    });
    for (const p of parsed.problems) problems.push({ line: p.line, message: `volume '${decl.name}': ${p.message}` });
    for (const o of parsed.ignored) opts.log.warn(`${volfile.file}:${o.line}: volume '${decl.name}': ignoring option '${o.key}' that ${decl.type} does not know`);
    checked.push({ decl, def, options: parsed.values });
  }
  if (problems.length) throw new VolfileError(volfile.file, byLine(problems));
  return checked;
}

/**
 * Builds graph `id` from a parsed volfile: checkVolfile, then each translator, children
 * first. What a translator refuses when it is created is a problem of its volume too. Throws
 * VolfileError naming file and line. Nothing is started: `xlstack check` builds and drops
 * the graph, so it refuses exactly what mount would refuse before starting anything.
 */
export function buildGraph(volfile: Volfile, opts: BuildOptions): Graph {
  const checked = checkVolfile(volfile, opts);
  const graph = new Graph({ id: opts.id, volfile, log: opts.log, lruLimit: opts.lruLimit, entryTimeoutMs: opts.entryTimeoutMs });
  const byName = new Map<string, Xlator>();
  const problems: VolfileProblem[] = [];
  const list = checked.map(({ decl, def, options }) => {
    const init = { name: decl.name, type: decl.type, options, children: decl.subvolumes.map((s) => byName.get(s.name)!), host: graph };
    let xl: Xlator;
    try {
      xl = def.create(init);
    } catch (e) {
      problems.push({ line: decl.line, message: `volume '${decl.name}': ${(e as Error).message}` });
      // A stand-in, so the volumes above are still created and their problems found too.
      xl = new Xlator(init);
    }
    byName.set(decl.name, xl);
    return xl;
  });
  if (problems.length) throw new VolfileError(volfile.file, problems);
  graph.setXlators(list);
  return graph;
}
