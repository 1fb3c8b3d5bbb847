import * as path from 'path';
import { FOP_NAMES } from '../../src/core/fops';
import { opt, parseOptions, RawOption } from '../../src/core/options';

const ctx = { baseDir: '/srv/volfiles' };

/** The error message a parser throws for `raw`; fails the test if it parses. */
function parseError(parse: () => unknown): string {
  let result: unknown;
  try {
    result = parse();
  } catch (e) {
    expect(e).toBeInstanceOf(Error);
    return (e as Error).message;
  }
  throw new Error(`expected a parse error, got ${typeof result === 'function' ? `a function (${(result as { name: string }).name})` : JSON.stringify(result)}`);
}

describe('opt.bool', () => {
  const spec = opt.bool({ description: 'b' });

  it.each([
    ['on', true], ['off', false],
    ['yes', true], ['no', false],
    ['true', true], ['false', false],
    ['enable', true], ['disable', false],
    ['1', true], ['0', false],
  ])('parses %s as %s', (raw, want) => {
    expect(spec.parse(raw, ctx)).toBe(want);
  });

  it('is case-insensitive and ignores surrounding blanks', () => {
    expect(spec.parse('ON', ctx)).toBe(true);
    expect(spec.parse('Off', ctx)).toBe(false);
    expect(spec.parse('  Yes ', ctx)).toBe(true);
    expect(spec.parse('DISABLE', ctx)).toBe(false);
  });

  it.each(['maybe', '2', '', 'onn', 'y'])('rejects %j with a message naming the value', (raw) => {
    const msg = parseError(() => spec.parse(raw, ctx));
    expect(msg).toContain(`"${raw}"`);
    expect(msg).toContain('not a boolean');
  });

  // BOOL is a plain object literal: names inherited from Object.prototype must not count as spellings.
  it.each(['constructor', '__proto__'])('rejects %j (and never returns a non-boolean)', (raw) => {
    expect(parseError(() => spec.parse(raw, ctx))).toContain('not a boolean');
  });

  it('records its kind, description, default and aliases', () => {
    const s = opt.bool({ description: 'switch', default: 'on', aliases: ['sw'] });
    expect(s.type).toBe('bool');
    expect(s.description).toBe('switch');
    expect(s.default).toBe('on');
    expect(s.aliases).toEqual(['sw']);
    expect(spec.aliases).toEqual([]);
    expect(spec.default).toBeUndefined();
  });
});

describe('opt.int', () => {
  const spec = opt.int({ description: 'i', min: -5, max: 100 });

  it.each([
    ['0', 0], ['42', 42], ['-5', -5], ['+7', 7], ['100', 100], [' 12 ', 12],
  ])('parses %j as %d', (raw, want) => {
    expect(spec.parse(raw, ctx)).toBe(want);
  });

  it.each(['1.5', 'abc', '', '0x10', '1e3', '12k'])('rejects non-integer %j', (raw) => {
    expect(parseError(() => spec.parse(raw, ctx))).toContain('not an integer');
  });

  it('enforces min and max, naming the bound', () => {
    expect(parseError(() => spec.parse('-6', ctx))).toBe('must be at least -5');
    expect(parseError(() => spec.parse('101', ctx))).toBe('must be at most 100');
  });

  it('has no bounds when none are given', () => {
    const free = opt.int({ description: 'free' });
    expect(free.parse('-1000000', ctx)).toBe(-1000000);
    expect(free.parse('123456789', ctx)).toBe(123456789);
  });
});

describe('opt.percent', () => {
  const spec = opt.percent({ description: 'p' });

  it.each([
    ['10%', 10], ['10', 10], ['0', 0], ['0%', 0], ['100%', 100], ['12.5%', 12.5], ['33.3', 33.3],
  ])('parses %j as %d', (raw, want) => {
    expect(spec.parse(raw, ctx)).toBe(want);
  });

  it('rejects values above 100', () => {
    expect(parseError(() => spec.parse('101%', ctx))).toBe('must be at most 100%');
    expect(parseError(() => spec.parse('150', ctx))).toBe('must be at most 100%');
  });

  it.each(['-1%', 'ten', '%', '10%%', ''])('rejects %j', (raw) => {
    expect(parseError(() => spec.parse(raw, ctx))).toContain('not a percentage');
  });
});

describe('opt.size', () => {
  const spec = opt.size({ description: 's' });

  it.each([
    ['4096', 4096],
    ['100B', 100],
    ['4KB', 4 * 1024],
    ['4K', 4 * 1024],
    ['4kb', 4 * 1024],
    ['128KiB', 128 * 1024],
    ['64MB', 64 * 1024 * 1024],
    ['64MiB', 64 * 1024 * 1024],
    ['1GB', 1024 ** 3],
    ['2TB', 2 * 1024 ** 4],
    ['1.5K', 1536],
    ['16 MB', 16 * 1024 * 1024],
  ])('parses %j as %d bytes', (raw, want) => {
    expect(spec.parse(raw, ctx)).toBe(want);
  });

  it.each(['4XB', 'MB', '-1', 'lots', '4 K B', ''])('rejects %j', (raw) => {
    expect(parseError(() => spec.parse(raw, ctx))).toContain('not a size');
  });

  it('enforces min and max in bytes', () => {
    const bounded = opt.size({ description: 'b', min: 4096, max: 1024 * 1024 });
    expect(bounded.parse('4KB', ctx)).toBe(4096);
    expect(bounded.parse('1MB', ctx)).toBe(1024 * 1024);
    expect(parseError(() => bounded.parse('1KB', ctx))).toBe('must be at least 4096 bytes');
    expect(parseError(() => bounded.parse('2MB', ctx))).toBe(`must be at most ${1024 * 1024} bytes`);
  });
});

describe('opt.time (seconds)', () => {
  const spec = opt.time({ description: 't' });

  it.each([
    ['42', 42],
    ['42s', 42],
    ['42sec', 42],
    ['500ms', 0.5],
    ['2m', 120],
    ['2min', 120],
    ['1h', 3600],
    ['1.5h', 5400],
    ['1d', 86400],
    ['10 s', 10],
  ])('parses %j as %d s', (raw, want) => {
    expect(spec.parse(raw, ctx)).toBeCloseTo(want, 9);
  });

  it.each(['soon', '5x', '-1s', 'ms', ''])('rejects %j', (raw) => {
    expect(parseError(() => spec.parse(raw, ctx))).toContain('not a duration');
  });

  it('enforces min and max in seconds', () => {
    const bounded = opt.time({ description: 'b', min: 1, max: 60 });
    expect(bounded.parse('1m', ctx)).toBe(60);
    expect(parseError(() => bounded.parse('500ms', ctx))).toBe('must be at least 1s');
    expect(parseError(() => bounded.parse('2m', ctx))).toBe('must be at most 60s');
  });
});

describe('opt.string and opt.enum', () => {
  it('string keeps the value (trimmed)', () => {
    const spec = opt.string({ description: 's' });
    expect(spec.type).toBe('string');
    expect(spec.parse('hello world', ctx)).toBe('hello world');
    expect(spec.parse('  x  ', ctx)).toBe('x');
  });

  it('enum accepts exactly its values and lists them otherwise', () => {
    const spec = opt.enum({ description: 'e', values: ['fast', 'safe', 'off'] as const });
    expect(spec.type).toBe('enum');
    expect(spec.parse('fast', ctx)).toBe('fast');
    expect(spec.parse(' safe ', ctx)).toBe('safe');
    const msg = parseError(() => spec.parse('FAST', ctx));
    expect(msg).toContain('"FAST"');
    expect(msg).toContain('fast, safe, off');
    expect(() => spec.parse('', ctx)).toThrow(/not one of/);
  });
});

describe('opt.path', () => {
  const spec = opt.path({ description: 'p' });

  it('keeps an absolute path', () => {
    expect(spec.parse('/data/brick1', ctx)).toBe('/data/brick1');
  });

  it('takes a relative path relative to baseDir', () => {
    expect(spec.parse('bricks/b1', ctx)).toBe(path.join('/srv/volfiles', 'bricks/b1'));
    expect(spec.parse('../other', ctx)).toBe('/srv/other');
    expect(spec.parse('./x', { baseDir: '/a/b' })).toBe('/a/b/x');
  });

  it('normalises the path', () => {
    expect(spec.parse('/data//b1/../b2/', ctx)).toBe('/data/b2');
  });

  it('rejects an empty path', () => {
    expect(parseError(() => spec.parse('', ctx))).toContain('empty path');
    expect(parseError(() => spec.parse('   ', ctx))).toContain('empty path');
  });

  it('rejects a NUL byte anywhere in it (no system call would take it)', () => {
    for (const raw of ['/srv/a\0b', '\0', '/srv/b1\0', 'rel\0/x']) expect(parseError(() => spec.parse(raw, ctx))).toContain('NUL byte');
  });
});

describe('every kind of option', () => {
  it.each([
    ['string', opt.string({ description: 's' }), 'abc'],
    ['enum', opt.enum({ description: 'e', values: ['abc'] as const }), 'abc'],
    ['bool', opt.bool({ description: 'b' }), 'on'],
    ['int', opt.int({ description: 'i' }), '12'],
    ['size', opt.size({ description: 'z' }), '1MB'],
    ['time', opt.time({ description: 't' }), '1s'],
    ['fops', opt.fops({ description: 'f' }), 'open'],
    ['errno', opt.errno({ description: 'n' }), 'EIO'],
  ])('%s refuses a value with a NUL byte that would otherwise parse', (_kind, spec, good) => {
    expect(() => spec.parse(good, ctx)).not.toThrow();
    expect(parseError(() => spec.parse(`${good}\0`, ctx))).toContain('NUL byte');
  });
});

describe('opt.fops', () => {
  const spec = opt.fops({ description: 'f' });

  it('parses a comma-separated list into a set, tolerating blanks', () => {
    const set = spec.parse('open, read ,write,,', ctx)!;
    expect([...set].sort()).toEqual(['open', 'read', 'write']);
    expect(set.has('read')).toBe(true);
    expect(set.has('lookup')).toBe(false);
  });

  it('accepts every fop name', () => {
    expect([...spec.parse(FOP_NAMES.join(','), ctx)!]).toEqual(FOP_NAMES);
  });

  it('names one unknown fop', () => {
    expect(parseError(() => spec.parse('open,bogus,read', ctx))).toBe('unknown fop: bogus');
  });

  it('names every unknown fop', () => {
    expect(parseError(() => spec.parse('open,frob,READ', ctx))).toBe('unknown fops: frob, READ');
  });
});

describe('opt.errno', () => {
  const spec = opt.errno({ description: 'e' });

  it.each([
    ['EIO', 'EIO'], ['enoent', 'ENOENT'], ['EAcces', 'EACCES'], [' ENOSPC ', 'ENOSPC'],
  ])('parses %j as %s', (raw, want) => {
    expect(spec.parse(raw, ctx)).toBe(want);
  });

  it.each(['EFOO', 'ERR_INVALID_ARG_TYPE', '5', ''])('rejects %j', (raw) => {
    expect(parseError(() => spec.parse(raw, ctx))).toContain('not an errno name');
  });
});

// -------------------------------------------------------------------------------------

const schema = {
  enabled: opt.bool({ description: 'on or off', default: 'off', aliases: ['enable-it'] }),
  count: opt.int({ description: 'how many', default: '8', min: 1, max: 64 }),
  'cache-size': opt.size({ description: 'bytes', default: '32MB' }),
  dir: opt.path({ description: 'a directory' }),
  ops: opt.fops({ description: 'fops', aliases: ['fop-list', 'fops'] }),
};

function raw(key: string, value: string, line: number): RawOption {
  return { key, value, line };
}

const pctx = { baseDir: '/etc/xl', type: 'test/schema' };

describe('parseOptions', () => {
  it('applies defaults for options not given and leaves the others unset', () => {
    const r = parseOptions(schema, [], pctx);
    expect(r.problems).toEqual([]);
    expect(r.ignored).toEqual([]);
    expect(r.values.enabled).toBe(false);
    expect(r.values.count).toBe(8);
    expect(r.values['cache-size']).toBe(32 * 1024 * 1024);
    expect(r.values.dir).toBeUndefined();
    expect(r.values.ops).toBeUndefined();
    expect(Object.keys(r.values).sort()).toEqual(['cache-size', 'count', 'enabled']);
  });

  it('parses given options, overriding defaults, with the context baseDir', () => {
    const r = parseOptions(schema, [raw('enabled', 'yes', 3), raw('count', '16', 4), raw('dir', 'data', 5)], pctx);
    expect(r.problems).toEqual([]);
    expect(r.values.enabled).toBe(true);
    expect(r.values.count).toBe(16);
    expect(r.values.dir).toBe('/etc/xl/data');
    expect(r.values['cache-size']).toBe(32 * 1024 * 1024);
  });

  it('stores an option given by an alias under its canonical name', () => {
    const r = parseOptions(schema, [raw('enable-it', 'on', 2), raw('fop-list', 'open,read', 3)], pctx);
    expect(r.problems).toEqual([]);
    expect(r.values.enabled).toBe(true);
    expect([...r.values.ops!].sort()).toEqual(['open', 'read']);
    expect(Object.keys(r.values)).not.toContain('enable-it');
    expect(Object.keys(r.values)).not.toContain('fop-list');
  });

  it('reports an unknown option with its line and the known options', () => {
    const r = parseOptions(schema, [raw('count', '2', 4), raw('colour', 'blue', 7)], pctx);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0].line).toBe(7);
    const msg = r.problems[0].message;
    expect(msg).toContain("unknown option 'colour'");
    expect(msg).toContain('test/schema');
    for (const k of ['enabled', 'count', 'cache-size', 'dir', 'ops']) expect(msg).toContain(k);
    expect(r.ignored).toEqual([]);
    expect(r.values.count).toBe(2);
  });

  it('says a type takes no options when its schema is empty', () => {
    const r = parseOptions({}, [raw('anything', 'x', 9)], pctx);
    expect(r.problems).toEqual([{ line: 9, message: expect.stringContaining('takes no options') }]);
    expect(r.problems[0].message).toContain("unknown option 'anything'");
  });

  it('reports a duplicate key naming the first line, and keeps the first value', () => {
    const r = parseOptions(schema, [raw('count', '2', 3), raw('enabled', 'on', 4), raw('count', '5', 6)], pctx);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0].line).toBe(6);
    expect(r.problems[0].message).toContain("'count'");
    expect(r.problems[0].message).toContain('already set on line 3');
    expect(r.values.count).toBe(2);
  });

  it('treats an alias and its canonical name as the same key for duplicates', () => {
    const r = parseOptions(schema, [raw('fops', 'open', 2), raw('ops', 'read', 8)], pctx);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toEqual({ line: 8, message: expect.stringContaining('already set on line 2') });
    expect([...r.values.ops!]).toEqual(['open']);
  });

  it('reports a bad value with its line, the option and the reason', () => {
    const r = parseOptions(schema, [raw('count', '65', 4), raw('enabled', 'perhaps', 5), raw('ops', 'open,zap', 6)], pctx);
    expect(r.problems.map((p) => p.line)).toEqual([4, 5, 6]);
    expect(r.problems[0].message).toBe("bad value for option 'count': must be at most 64");
    expect(r.problems[1].message).toContain("bad value for option 'enabled'");
    expect(r.problems[1].message).toContain('"perhaps" is not a boolean');
    expect(r.problems[2].message).toBe("bad value for option 'ops': unknown fop: zap");
  });

  it('names the option as written (alias) in a bad-value problem', () => {
    const r = parseOptions(schema, [raw('fop-list', 'nope', 11)], pctx);
    expect(r.problems).toEqual([{ line: 11, message: "bad value for option 'fop-list': unknown fop: nope" }]);
  });

  it('collects every problem in one pass', () => {
    const r = parseOptions(
      schema,
      [raw('x', '1', 2), raw('count', 'many', 3), raw('count', '4', 4), raw('dir', '', 5)],
      pctx,
    );
    expect(r.problems.map((p) => p.line)).toEqual([2, 3, 4, 5]);
  });

  it('with tolerateUnknown, puts unknown options in `ignored` instead of problems', () => {
    const given = [raw('shared-brick-count', '1', 3), raw('count', '3', 4), raw('volume-id', 'abc', 5)];
    const r = parseOptions(schema, given, { ...pctx, tolerateUnknown: true });
    expect(r.problems).toEqual([]);
    expect(r.ignored).toEqual([given[0], given[2]]);
    expect(r.values.count).toBe(3);
  });

  it('with tolerateUnknown, still reports bad values of known options', () => {
    const r = parseOptions(schema, [raw('count', '0', 3), raw('zzz', '1', 4)], { ...pctx, tolerateUnknown: true });
    expect(r.problems).toEqual([{ line: 3, message: "bad value for option 'count': must be at least 1" }]);
    expect(r.ignored.map((o) => o.key)).toEqual(['zzz']);
  });
});
