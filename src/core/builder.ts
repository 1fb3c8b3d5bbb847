import * as path from 'path';
import { Graph } from './graph';
import type { Logger } from './log';
import { OptionValues, parseOptions } from './options';
import { Registry, TranslatorDef, defineTranslator } from './registry';
import { Volfile, VolfileError, VolfileProblem, VolumeDecl } from './volfile';
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

/** Checks every volume against its type; all problems are reported together. */
export function checkVolfile(volfile: Volfile, opts: Pick<BuildOptions, 'registry' | 'passthroughUnknown' | 'log'>): Checked[] {
  const problems: VolfileProblem[] = [];
  const checked: Checked[] = [];
  const baseDir = path.dirname(path.resolve(volfile.file));
  for (const decl of volfile.volumes) {
    let def = opts.registry.find(decl.type);
    if (!def) {
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
  if (problems.length) throw new VolfileError(volfile.file, problems.sort((a, b) => a.line - b.line));
  return checked;
}

/** Builds graph `id` from a parsed volfile. Throws VolfileError naming file and line. */
export function buildGraph(volfile: Volfile, opts: BuildOptions): Graph {
  const checked = checkVolfile(volfile, opts);
  const graph = new Graph({ id: opts.id, volfile, log: opts.log, lruLimit: opts.lruLimit, entryTimeoutMs: opts.entryTimeoutMs });
  const byName = new Map<string, Xlator>();
  const list = checked.map(({ decl, def, options }) => {
    const xl = def.create({
      name: decl.name,
      type: decl.type,
      options,
      children: decl.subvolumes.map((s) => byName.get(s.name)!),
      host: graph,
    });
    byName.set(decl.name, xl);
    return xl;
  });
  graph.setXlators(list);
  return graph;
}
