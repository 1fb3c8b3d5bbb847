/** What a command accepts: boolean flags and options that take a value. */
export interface ArgSpec {
  readonly flags?: readonly string[];
  readonly options?: readonly string[];
  readonly positionals: readonly string[];
  /**
   * Accept `-o a=1,b,...` (mount(8) style): each item is one of the flags or options above,
   * or one of these generic mount options, which are accepted and ignored.
   */
  readonly mountOptions?: readonly string[];
}

export interface ParsedArgs {
  readonly positionals: string[];
  readonly flags: Set<string>;
  readonly options: Map<string, string>;
}

export class UsageError extends Error {}

/** Parses `--flag`, `--opt value`, `--opt=value` and positionals, strictly. */
export function parseArgs(argv: readonly string[], spec: ArgSpec): ParsedArgs {
  const out: ParsedArgs = { positionals: [], flags: new Set(), options: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (spec.mountOptions && (a === '-o' || a.startsWith('-o'))) {
      const list = a === '-o' ? argv[++i] : a.slice(2);
      if (list === undefined) throw new UsageError('-o needs a list of options');
      mountOptions(list, spec, out);
      continue;
    }
    if (!a.startsWith('--') || a === '--') {
      out.positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (spec.flags?.includes(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      out.flags.add(name);
    } else if (spec.options?.includes(name)) {
      const value = eq >= 0 ? a.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new UsageError(`--${name} needs a value`);
      out.options.set(name, value);
    } else {
      throw new UsageError(`unknown option ${a}`);
    }
  }
  if (out.positionals.length !== spec.positionals.length) {
    throw new UsageError(`expected ${spec.positionals.map((p) => p.toUpperCase()).join(' ')}`);
  }
  return out;
}

/** Items of a `-o` list: known flags and options, and generic mount options (ignored). */
function mountOptions(list: string, spec: ArgSpec, out: ParsedArgs): void {
  for (const item of list.split(',').filter(Boolean)) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    if (spec.flags?.includes(key) && eq < 0) out.flags.add(key);
    else if (spec.options?.includes(key) && eq >= 0) out.options.set(key, item.slice(eq + 1));
    else if (!spec.mountOptions!.includes(key) && !key.startsWith('x-')) throw new UsageError(`unknown mount option '${item}'`);
  }
}
