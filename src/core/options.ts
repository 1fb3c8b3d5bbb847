import * as path from 'path';
import { ErrnoCode, isErrnoCode } from './errors';
import { FopName, isFopName } from './fops';

/** What a parser may need besides the text: where relative paths start. */
export interface OptionContext {
  readonly baseDir: string;
}

/** One declared option of a translator type. */
export interface OptionSpec<T> {
  readonly type: string;
  readonly description: string;
  /** The default, written as it would be in a volfile. */
  readonly default?: string;
  readonly aliases: readonly string[];
  /** false: changing it needs a new graph (a reload builds one); otherwise reconfigure applies it. */
  readonly reconfigurable: boolean;
  /** Throws an Error whose message says what is wrong with the value. */
  parse(raw: string, ctx: OptionContext): T;
  /**
   * Set for a family of options, whose schema key has one `*` (GlusterFS's
   * `auth.login.*.password`): adds the member whose name `*` stood for to the family's value.
   */
  member?(value: T, name: string, raw: string, ctx: OptionContext): T;
}

export type OptionSchema = Readonly<Record<string, OptionSpec<unknown>>>;

export type OptionValues<S extends OptionSchema> = {
  readonly [K in keyof S]: S[K] extends OptionSpec<infer T> ? T : never;
};

interface Common {
  readonly description: string;
  readonly default?: string;
  readonly aliases?: readonly string[];
  readonly reconfigurable?: boolean;
}

type Parsed<O, T> = OptionSpec<O extends { default: string } ? T : T | undefined>;

function kind<T, Extra = object>(type: string, parser: (raw: string, o: Extra & Common, ctx: OptionContext) => T) {
  return <O extends Common & Extra>(o: O): Parsed<O, T> =>
    ({
      type,
      description: o.description,
      default: o.default,
      aliases: o.aliases ?? [],
      reconfigurable: o.reconfigurable ?? true,
      parse: (raw: string, ctx: OptionContext) => {
        // No value may carry one: the system calls a path or name reaches would refuse it (or cut it short).
        if (raw.includes('\0')) throw new Error(`${JSON.stringify(raw)} contains a NUL byte`);
        return parser(raw.trim(), o, ctx);
      },
    }) as Parsed<O, T>;
}

const BOOL = new Map<string, boolean>([
  ['on', true], ['yes', true], ['true', true], ['enable', true], ['1', true],
  ['off', false], ['no', false], ['false', false], ['disable', false], ['0', false],
]);

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 };

const TIME_UNITS: Record<string, number> = { ms: 0.001, s: 1, sec: 1, m: 60, min: 60, h: 3600, d: 86400 };

function inRange(n: number, o: { min?: number; max?: number }, unit = ''): number {
  if (o.min !== undefined && n < o.min) throw new Error(`must be at least ${o.min}${unit}`);
  if (o.max !== undefined && n > o.max) throw new Error(`must be at most ${o.max}${unit}`);
  return n;
}

interface Range {
  readonly min?: number;
  readonly max?: number;
}

/** Option kinds, with GlusterFS's spellings (on/off, 64MB, 10%, 42s ...). */
export const opt = {
  bool: kind<boolean>('bool', (raw) => {
    const v = BOOL.get(raw.toLowerCase());
    if (v === undefined) throw new Error(`"${raw}" is not a boolean (use on/off, yes/no, true/false)`);
    return v;
  }),
  int: kind<number, Range>('int', (raw, o) => {
    if (!/^[+-]?\d+$/.test(raw)) throw new Error(`"${raw}" is not an integer`);
    return inRange(Number(raw), o);
  }),
  percent: kind<number>('percent', (raw) => {
    const m = /^(\d+(?:\.\d+)?)%?$/.exec(raw);
    if (!m) throw new Error(`"${raw}" is not a percentage`);
    return inRange(Number(m[1]), { min: 0, max: 100 }, '%');
  }),
  size: kind<number, Range>('size', (raw, o) => {
    const m = /^(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?$/i.exec(raw);
    if (!m) throw new Error(`"${raw}" is not a size (e.g. 4096, 128KB, 64MB, 1GB)`);
    return inRange(Math.round(Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()]), o, ' bytes');
  }),
  /** A duration, in seconds. */
  time: kind<number, Range>('time', (raw, o) => {
    const m = /^(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d)?$/.exec(raw);
    if (!m) throw new Error(`"${raw}" is not a duration (e.g. 42, 42s, 500ms, 2m)`);
    return inRange(Number(m[1]) * TIME_UNITS[m[2] ?? 's'], o, 's');
  }),
  string: kind<string>('string', (raw) => raw),
  enum: <V extends string, O extends Common & { values: readonly V[] }>(o: O) =>
    kind<V, { values: readonly V[] }>('enum', (raw, spec) => {
      if (!(spec.values as readonly string[]).includes(raw)) {
        throw new Error(`"${raw}" is not one of: ${spec.values.join(', ')}`);
      }
      return raw as V;
    })(o),
  /** A filesystem path; a relative one is taken relative to the volfile's directory. */
  path: kind<string>('path', (raw, _o, ctx) => {
    if (raw === '') throw new Error('an empty path');
    return path.resolve(ctx.baseDir, raw);
  }),
  /**
   * A family of options, declared under a key with one `*`: every option whose key matches
   * (`*` standing for a non-empty name) is parsed by `each`; the value maps each name to its
   * value (empty when none is given).
   */
  family: <V>(o: Omit<Common, 'default'> & { each: OptionSpec<V> }): OptionSpec<ReadonlyMap<string, V>> => ({
    type: `family of ${o.each.type}`,
    description: o.description,
    default: '',
    aliases: [],
    reconfigurable: o.reconfigurable ?? true,
    parse: () => new Map(),
    member: (value, name, raw, ctx) => new Map(value).set(name, o.each.parse(raw, ctx)),
  }),
  /** A comma-separated list of fop names, e.g. "open,read,write". */
  fops: kind<ReadonlySet<FopName>>('fops', (raw) => {
    const names = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const bad = names.filter((n) => !isFopName(n));
    if (bad.length) throw new Error(`unknown fop${bad.length > 1 ? 's' : ''}: ${bad.join(', ')}`);
    return new Set(names as FopName[]);
  }),
  errno: kind<ErrnoCode>('errno', (raw) => {
    const code = raw.toUpperCase();
    if (!isErrnoCode(code)) throw new Error(`"${raw}" is not an errno name (e.g. EIO, ENOENT)`);
    return code;
  }),
};

/** An option as written in a volfile. */
export interface RawOption {
  readonly key: string;
  readonly value: string;
  readonly line: number;
}

export interface OptionProblem {
  readonly line: number;
  readonly message: string;
}

const familyPattern = (key: string): RegExp =>
  new RegExp('^' + key.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('(.+)') + '$');

/** The family of options (schema key and what `*` stood for) that `key` belongs to, if any. */
function familyOf(schema: OptionSchema, key: string): { readonly family: string; readonly name: string } | undefined {
  for (const [family, spec] of Object.entries(schema)) {
    if (!spec.member) continue;
    const m = familyPattern(family).exec(key);
    if (m) return { family, name: m[1] };
  }
  return undefined;
}

/** Whether a schema takes an option of this key (by name, alias or family). */
export function knowsOption(schema: OptionSchema, key: string): boolean {
  return Object.entries(schema).some(([k, spec]) => k === key || spec.aliases.includes(key)) || familyOf(schema, key) !== undefined;
}

export interface ParsedOptions<S extends OptionSchema> {
  readonly values: OptionValues<S>;
  readonly problems: OptionProblem[];
  /** Options the schema does not know, when the caller chose to tolerate them. */
  readonly ignored: RawOption[];
}

/**
 * Validates the options of one volume against its type's schema. Every problem is
 * reported with its line; unknown keys are problems unless `tolerateUnknown`.
 */
export function parseOptions<S extends OptionSchema>(
  schema: S,
  given: readonly RawOption[],
  ctx: OptionContext & { readonly type: string; readonly tolerateUnknown?: boolean },
): ParsedOptions<S> {
  const byName = new Map<string, string>();
  for (const [key, spec] of Object.entries(schema)) {
    byName.set(key, key);
    for (const a of spec.aliases) byName.set(a, key);
  }
  const values: Record<string, unknown> = {};
  const problems: OptionProblem[] = [];
  const ignored: RawOption[] = [];
  const seen = new Map<string, number>();
  for (const o of given) {
    const key = byName.get(o.key);
    const member = key === undefined ? familyOf(schema, o.key) : undefined;
    if (member) {
      const prev = seen.get(o.key);
      if (prev !== undefined) {
        problems.push({ line: o.line, message: `option '${o.key}' is already set on line ${prev}` });
        continue;
      }
      seen.set(o.key, o.line);
      const spec = schema[member.family];
      try {
        values[member.family] = spec.member!(values[member.family] ?? spec.parse('', ctx), member.name, o.value, ctx);
      } catch (e) {
        problems.push({ line: o.line, message: `bad value for option '${o.key}': ${(e as Error).message}` });
      }
      continue;
    }
    if (key === undefined) {
      if (ctx.tolerateUnknown) ignored.push(o);
      else problems.push({ line: o.line, message: unknownOption(o.key, ctx.type, schema) });
      continue;
    }
    const prev = seen.get(key);
    if (prev !== undefined) {
      problems.push({ line: o.line, message: `option '${o.key}' is already set on line ${prev}` });
      continue;
    }
    seen.set(key, o.line);
    try {
      values[key] = schema[key].parse(o.value, ctx);
    } catch (e) {
      problems.push({ line: o.line, message: `bad value for option '${o.key}': ${(e as Error).message}` });
    }
  }
  for (const [key, spec] of Object.entries(schema)) {
    if (key in values || spec.default === undefined) continue;
    values[key] = spec.parse(spec.default, ctx);
  }
  return { values: values as OptionValues<S>, problems, ignored };
}

function unknownOption(key: string, type: string, schema: OptionSchema): string {
  const known = Object.keys(schema);
  const list = known.length ? `known options: ${known.join(', ')}` : 'it takes no options';
  return `unknown option '${key}' for ${type} (${list})`;
}
