// The volfile parser: GlusterFS's grammar (libglusterfs/src/graph.l + graph.y), made strict.
//
//   VOLUMES : VOLUME+
//   VOLUME  : 'volume' WORD DATA 'end-volume'
//   DATA    : 'type' WORD, then 'option' KEY VALUE lines and at most one 'subvolumes' WORD+ line
//   WORD    : bare word | "quoted string"
//
// Unlike GlusterFS the grammar is line-oriented: a statement's words are the ones on its
// keyword's line, so a forgotten value cannot silently swallow the next line. Syntax errors
// stop at the first one (later tokens mean nothing once the structure is lost); structural
// problems (unknown or cyclic subvolumes, volumes defined twice...) are collected in the
// Volfile, and checkVolfile (builder.ts) reports them with every other problem of the file,
// so that one run shows them all.
import { readFileSync } from 'fs';
import type { RawOption } from './options';

export interface SubvolumeRef {
  readonly name: string;
  readonly line: number;
}

export interface VolumeDecl {
  readonly name: string;
  /** Line of `volume NAME`. */
  readonly line: number;
  readonly type: string;
  readonly typeLine: number;
  readonly options: readonly RawOption[];
  readonly subvolumes: readonly SubvolumeRef[];
}

export interface Volfile {
  readonly file: string;
  /** In definition order; the last one is the top of the graph. */
  readonly volumes: readonly VolumeDecl[];
  /**
   * What is wrong with the structure, sorted by line. A volfile with problems is never
   * built: checkVolfile reports them, together with the problems of types and options.
   */
  readonly problems: readonly VolfileProblem[];
}

export interface VolfileProblem {
  readonly line: number;
  readonly message: string;
}

/** A volfile that cannot be used; `message` lists every problem as `file:line: what`. */
export class VolfileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: readonly VolfileProblem[],
  ) {
    super(problems.map((p) => `${file}:${p.line}: ${p.message}`).join('\n'));
    this.name = 'VolfileError';
  }
}

/**
 * Parses a volfile. Throws VolfileError for a syntax error (the first one) or a file without
 * volumes; every other problem is listed in the result's `problems`.
 */
export function parseVolfile(text: string, file: string): Volfile {
  let parsed: { volumes: VolumeDecl[]; problems: VolfileProblem[] };
  try {
    parsed = new Parser(lex(text)).parse();
  } catch (err) {
    if (err instanceof SyntaxStop) throw new VolfileError(file, [{ line: err.line, message: err.message }]);
    throw err;
  }
  const { volumes } = parsed;
  if (volumes.length === 0) throw new VolfileError(file, [{ line: 1, message: 'no volumes defined' }]);
  return { file, volumes, problems: byLine([...parsed.problems, ...checkSubvolumes(volumes)]) };
}

/** Sorted by line; problems on one line keep the order they were found in (the sort is stable). */
export const byLine = <P extends VolfileProblem>(problems: P[]): P[] => problems.sort((a, b) => a.line - b.line);

// ---------------------------------------------------------------------------------------------
// Lexer

type Keyword = 'volume' | 'type' | 'option' | 'subvolumes' | 'end-volume';

const KEYWORDS: ReadonlyMap<string, Keyword> = new Map<string, Keyword>([
  ['volume', 'volume'],
  ['type', 'type'],
  ['option', 'option'],
  ['subvolumes', 'subvolumes'],
  ['subvolume', 'subvolumes'],
  ['end-volume', 'end-volume'],
]);

interface Token {
  /** The word as written (for keywords) or its value (for quoted strings). */
  readonly text: string;
  /** Only bare words are keywords: a quoted "type" is an ordinary word. */
  readonly keyword?: Keyword;
  readonly line: number;
  /** Differs from `line` only for a quoted string spanning lines. */
  readonly endLine: number;
}

/** A syntax error: parsing stops here. */
class SyntaxStop extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

const BACKTICKS = 'backticks are not allowed (GlusterFS would run them as a shell command)';

function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n';
}

/** Tokens in file order; lazily, so a lexing error is reported only once the parser gets there. */
function* lex(text: string): Generator<Token, void, undefined> {
  let i = 0;
  let line = 1;
  while (i < text.length) {
    const c = text[i];
    if (c === '\n') {
      line++;
      i++;
    } else if (isSpace(c)) {
      i++;
    } else if (c === '#') {
      // Only reached at the start of a token: inside a bare word `#` is an ordinary character.
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '"') {
      const q = readQuoted(text, i, line);
      yield q.token;
      i = q.end;
      line = q.token.endLine;
    } else if (c === '\\') {
      throw new SyntaxStop(line, 'backslash outside a quoted string');
    } else {
      const start = i;
      while (i < text.length && !isSpace(text[i]) && text[i] !== '"' && text[i] !== '\\') i++;
      const word = text.slice(start, i);
      if (word.includes('`')) throw new SyntaxStop(line, BACKTICKS);
      yield { text: word, keyword: KEYWORDS.get(word), line, endLine: line };
    }
  }
}

/** Reads the string whose opening quote is at `start`; returns the token and the index after it. */
function readQuoted(text: string, start: number, line: number): { token: Token; end: number } {
  let value = '';
  let endLine = line;
  for (let i = start + 1; i < text.length; i++) {
    let c = text[i];
    if (c === '"') return { token: { text: value, line, endLine }, end: i + 1 };
    if (c === '\\' && i + 1 < text.length) c = text[++i];
    if (c === '`') throw new SyntaxStop(endLine, BACKTICKS);
    // GlusterFS accepts a value spanning lines but the line break is not part of it.
    if (c === '\n') endLine++;
    else if (c !== '\r') value += c;
  }
  throw new SyntaxStop(line, 'unterminated quoted string');
}

// ---------------------------------------------------------------------------------------------
// Parser

interface OpenVolume {
  readonly name: string;
  readonly line: number;
  type?: string;
  typeLine: number;
  readonly options: RawOption[];
  subvolumes: SubvolumeRef[];
  subvolumesLine?: number;
  /** Line of the first option or subvolumes, to insist that type comes first. */
  bodyLine?: number;
}

class Parser {
  private lookahead: Token | undefined;
  private hasLookahead = false;
  private current: OpenVolume | undefined;
  private readonly volumes: VolumeDecl[] = [];
  private readonly firstLine = new Map<string, number>();
  private readonly problems: VolfileProblem[] = [];

  constructor(private readonly tokens: Iterator<Token, void, undefined>) {}

  parse(): { volumes: VolumeDecl[]; problems: VolfileProblem[] } {
    for (let tok = this.next(); tok; tok = this.next()) this.statement(tok);
    if (this.current) {
      this.problem(this.current.line, `volume '${this.current.name}' is missing end-volume`);
      this.close(this.current.line);
    }
    return { volumes: this.volumes, problems: this.problems };
  }

  private statement(tok: Token): void {
    const args = this.restOfLine(tok);
    if (tok.keyword === 'volume') return this.volume(tok, args);
    if (!this.current) return this.outsideVolume(tok);
    switch (tok.keyword) {
      case 'type':
        return this.type(tok, args, this.current);
      case 'option':
        return this.option(tok, args, this.current);
      case 'subvolumes':
        return this.subvolumes(tok, args, this.current);
      case 'end-volume':
        expectCount(tok.line, args, 0, () => `unexpected '${args[0]?.text}' after end-volume`);
        return this.close(tok.line);
      default:
        throw new SyntaxStop(
          tok.line,
          `unexpected word '${tok.text}' in volume '${this.current.name}' (expected option, subvolumes or end-volume)`,
        );
    }
  }

  private outsideVolume(tok: Token): never {
    if (tok.keyword === 'end-volume') throw new SyntaxStop(tok.line, 'end-volume without a matching volume');
    if (tok.keyword) throw new SyntaxStop(tok.line, `'${tok.text}' outside a volume (expected 'volume')`);
    throw new SyntaxStop(tok.line, `unexpected word '${tok.text}' outside a volume (expected 'volume')`);
  }

  private volume(tok: Token, args: Token[]): void {
    if (args.length === 0) throw new SyntaxStop(tok.line, 'volume has no name');
    const name = wordOf(args[0], 'a volume name');
    expectCount(tok.line, args, 1, () => `volume takes one name, got ${args.length}`);
    if (this.current) {
      const open = this.current;
      this.problem(tok.line, `volume '${name}' starts before volume '${open.name}' (line ${open.line}) has end-volume`);
      this.close(open.line);
    }
    const first = this.firstLine.get(name);
    if (first !== undefined) this.problem(tok.line, `volume '${name}' is defined again (first on line ${first})`);
    else this.firstLine.set(name, tok.line);
    this.current = { name, line: tok.line, typeLine: tok.line, options: [], subvolumes: [] };
  }

  private type(tok: Token, args: Token[], vol: OpenVolume): void {
    if (args.length === 0) throw new SyntaxStop(tok.line, `type of volume '${vol.name}' has no value`);
    const type = wordOf(args[0], 'a translator type');
    expectCount(tok.line, args, 1, () => `type takes one word, got ${args.length}`);
    if (vol.type !== undefined) {
      this.problem(tok.line, `volume '${vol.name}' has type twice (first on line ${vol.typeLine})`);
      return;
    }
    if (vol.bodyLine !== undefined) {
      this.problem(
        tok.line,
        `type of volume '${vol.name}' must come before its options and subvolumes (line ${vol.bodyLine})`,
      );
    }
    vol.type = type;
    vol.typeLine = tok.line;
  }

  private option(tok: Token, args: Token[], vol: OpenVolume): void {
    if (args.length === 0) throw new SyntaxStop(tok.line, 'option has no key and no value');
    const key = wordOf(args[0], 'an option key');
    if (args.length === 1) throw new SyntaxStop(tok.line, `option '${key}' has no value`);
    const value = wordOf(args[1], 'a value');
    expectCount(tok.line, args, 2, () => `option '${key}' takes one value, got ${args.length - 1}`);
    vol.bodyLine ??= tok.line;
    vol.options.push({ key, value, line: tok.line });
  }

  private subvolumes(tok: Token, args: Token[], vol: OpenVolume): void {
    if (args.length === 0) throw new SyntaxStop(tok.line, `${tok.text} of volume '${vol.name}' has no names`);
    const names = args.map((a) => wordOf(a, 'a subvolume name'));
    vol.bodyLine ??= tok.line;
    if (vol.subvolumesLine !== undefined) {
      this.problem(tok.line, `volume '${vol.name}' has subvolumes twice (first on line ${vol.subvolumesLine})`);
      return;
    }
    vol.subvolumesLine = tok.line;
    for (const name of names) {
      if (vol.subvolumes.some((s) => s.name === name)) {
        this.problem(tok.line, `subvolume '${name}' is listed twice`);
      } else {
        vol.subvolumes.push({ name, line: tok.line });
      }
    }
  }

  /** Ends the open volume; `line` is where a missing type is reported. */
  private close(line: number): void {
    const vol = this.current;
    if (!vol) return;
    if (vol.type === undefined) this.problem(line, `volume '${vol.name}' has no type`);
    this.volumes.push({
      name: vol.name,
      line: vol.line,
      type: vol.type ?? '',
      typeLine: vol.typeLine,
      options: vol.options,
      subvolumes: vol.subvolumes,
    });
    this.current = undefined;
  }

  /** The tokens after `tok` that are on its line (a quoted string spanning lines extends it). */
  private restOfLine(tok: Token): Token[] {
    const args: Token[] = [];
    let endLine = tok.endLine;
    for (let next = this.peek(); next && next.line === endLine; next = this.peek()) {
      args.push(next);
      endLine = next.endLine;
      this.next();
    }
    return args;
  }

  private peek(): Token | undefined {
    if (!this.hasLookahead) {
      const r = this.tokens.next();
      this.lookahead = r.done ? undefined : r.value;
      this.hasLookahead = true;
    }
    return this.lookahead;
  }

  private next(): Token | undefined {
    const tok = this.peek();
    this.hasLookahead = false;
    return tok;
  }

  private problem(line: number, message: string): void {
    this.problems.push({ line, message });
  }
}

/** A bare keyword can never be a name or value: GlusterFS's lexer would read it as the keyword. */
function wordOf(tok: Token, expected: string): string {
  if (tok.keyword) throw new SyntaxStop(tok.line, `keyword '${tok.text}' where ${expected} was expected (quote it)`);
  return tok.text;
}

/** Rejects words beyond the first `count` on a statement's line, reported at `line`. */
function expectCount(line: number, args: readonly Token[], count: number, message: () => string): void {
  if (args.length <= count) return;
  const kw = args.slice(count).find((a) => a.keyword);
  const hint = kw ? ` ('${kw.text}' must start a new line)` : '';
  throw new SyntaxStop(line, message() + hint);
}

// ---------------------------------------------------------------------------------------------
// Subvolume references, checked once every volume is known

function checkSubvolumes(volumes: readonly VolumeDecl[]): VolfileProblem[] {
  const index = new Map<string, number>();
  volumes.forEach((v, i) => {
    if (!index.has(v.name)) index.set(v.name, i);
  });
  const edges = (name: string): readonly SubvolumeRef[] => volumes[index.get(name) ?? -1]?.subvolumes ?? [];
  const problems: VolfileProblem[] = [];
  const reportedCycles = new Set<string>();

  volumes.forEach((vol, i) => {
    for (const ref of vol.subvolumes) {
      const at = index.get(ref.name);
      if (ref.name === vol.name) {
        problems.push({ line: ref.line, message: `volume '${vol.name}' lists itself as a subvolume` });
      } else if (at === undefined) {
        problems.push({ line: ref.line, message: `unknown subvolume '${ref.name}'` });
      } else if (at > i) {
        // Every cycle has an edge to a later volume, so looking only here finds them all.
        const back = shortestPath(ref.name, vol.name, edges);
        if (!back) {
          problems.push({
            line: ref.line,
            message: `subvolume '${ref.name}' is used before it is defined (line ${volumes[at].line})`,
          });
        } else {
          const cycle = [vol.name, ...back];
          const key = cycleKey(cycle);
          if (!reportedCycles.has(key)) {
            reportedCycles.add(key);
            problems.push({ line: ref.line, message: `cycle: ${cycle.join(' -> ')}` });
          }
        }
      }
    }
  });
  return problems;
}

/** Breadth-first, so a reported cycle is as short as possible; includes both ends. */
function shortestPath(
  from: string,
  to: string,
  edges: (name: string) => readonly SubvolumeRef[],
): string[] | undefined {
  const parent = new Map<string, string | undefined>([[from, undefined]]);
  const queue = [from];
  for (let q = 0; q < queue.length; q++) {
    const name = queue[q];
    if (name === to) {
      const path: string[] = [];
      for (let n: string | undefined = name; n !== undefined; n = parent.get(n)) path.unshift(n);
      return path;
    }
    for (const ref of edges(name)) {
      if (!parent.has(ref.name)) {
        parent.set(ref.name, name);
        queue.push(ref.name);
      }
    }
  }
  return undefined;
}

/** The same cycle found from different edges (a->b->c->a, b->c->a->b) gets one key. */
function cycleKey(cycle: readonly string[]): string {
  const ring = cycle.slice(0, -1);
  let start = 0;
  ring.forEach((n, i) => {
    if (n < ring[start]) start = i;
  });
  return [...ring.slice(start), ...ring.slice(0, start)].join('\0');
}

/** Reads and parses a volfile from disk. */
export function readVolfile(file: string): Volfile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read volfile ${file}: ${(e as Error).message}`);
  }
  return parseVolfile(text, file);
}
