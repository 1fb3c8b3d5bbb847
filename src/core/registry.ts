import * as fs from 'fs';
import * as path from 'path';
import type { OptionSchema, OptionValues } from './options';
import type { Xlator, XlatorInit } from './xlator';

/** A translator type: what a volfile's `type` line names. */
export interface TranslatorDef<S extends OptionSchema = OptionSchema> {
  /** "category/name", e.g. "storage/posix". */
  readonly type: string;
  readonly description: string;
  readonly options: S;
  /** How many subvolumes a volume of this type takes. */
  readonly subvolumes: { readonly min: number; readonly max?: number };
  create(init: XlatorInit<OptionValues<S>>): Xlator;
}

/** Declares a translator type; gives `create` its typed options. */
export function defineTranslator<S extends OptionSchema>(def: TranslatorDef<S>): TranslatorDef<S> {
  return def;
}

const TYPE_RE = /^[a-z][a-z0-9_-]*\/[a-z][a-z0-9_-]*$/;

/** Where the translators are: the top-level xlators/ folder next to src/. */
export const XLATOR_DIR = path.resolve(__dirname, '../../xlators');

/**
 * Finds translator types by their type string. Like GlusterFS loading
 * `xlator/<category>/<name>.so`, a type is loaded from `xlators/<category>/<name>` on
 * first use, so the engine never names a translator. Tests may register extra types.
 */
export class Registry {
  private readonly defs = new Map<string, TranslatorDef>();

  constructor(private readonly dir: string = XLATOR_DIR) {}

  register(def: TranslatorDef): void {
    this.defs.set(def.type, def);
  }

  find(type: string): TranslatorDef | undefined {
    const known = this.defs.get(type);
    if (known) return known;
    if (!TYPE_RE.test(type)) return undefined;
    const file = this.moduleFile(type);
    if (!file) return undefined;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const def = (require(file) as { default?: TranslatorDef }).default;
    // A helper module next to the translators is not a type; a module that declares
    // another type than its path is a packaging bug.
    if (def?.type === undefined) return undefined;
    if (def.type !== type) throw new Error(`${file} does not export the translator ${type} (it declares ${def.type})`);
    this.defs.set(type, def);
    return def;
  }

  private moduleFile(type: string): string | undefined {
    const base = path.join(this.dir, ...type.split('/'));
    return [`${base}.js`, path.join(base, 'index.js')].find((f) => fs.existsSync(f));
  }
}
