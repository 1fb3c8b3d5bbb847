import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildGraph, checkVolfile } from '../../src/core/builder';
import { FopName } from '../../src/core/fops';
import { Graph } from '../../src/core/graph';
import { Logger } from '../../src/core/log';
import { knowsOption } from '../../src/core/options';
import { Registry, defineTranslator } from '../../src/core/registry';
import { Volfile, VolfileError, VolfileProblem, parseVolfile } from '../../src/core/volfile';
import { Xlator } from '../../src/core/xlator';
import { expectSame, vol } from '../helpers/core';
import { FIXTURES, volfilesUnder } from '../helpers/fixtures';

// --- a test translator that records the fops it sees ----------------------------------

class Rec extends Xlator {
  readonly fops: Array<{ op: FopName; args: unknown[] }> = [];
}
Xlator.interceptAll(Rec, async (xl, op, args, next) => {
  xl.fops.push({ op, args });
  if (xl.children.length === 0) return { answeredBy: xl.name, op };
  return next();
});

const registry = new Registry();
registry.register(
  defineTranslator({
    type: 'test/rec',
    description: 'records fops; a leaf answers them',
    options: {},
    subvolumes: { min: 0 },
    create: (init) => new Rec(init),
  }),
);

let logs: string[];
let log: Logger;
beforeEach(() => {
  logs = [];
  log = Logger.create('warn', (l) => logs.push(l));
});

const FILE = '/etc/xlstack/t.vol';

function parse(text: string, file = FILE): Volfile {
  return parseVolfile(text, file);
}

/** The VolfileError `fn` throws; fails the test if it throws nothing or something else. */
function volfileError(fn: () => unknown): VolfileError {
  try {
    fn();
  } catch (e) {
    if (e instanceof VolfileError) return e;
    throw new Error(`expected a VolfileError, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
  }
  throw new Error('expected a VolfileError, nothing was thrown');
}

function build(text: string, passthroughUnknown = false): Graph {
  return buildGraph(parse(text), { id: 1, registry, log, passthroughUnknown });
}

function expectProblem(p: VolfileProblem, line: number, ...words: string[]): void {
  expect(p.line).toBe(line);
  for (const w of words) expect(p.message).toContain(w);
}

/** Building `text` fails with exactly one problem, on `line`, naming `words`; returns the error. */
function expectOnlyBuildProblem(text: string, line: number, ...words: string[]): VolfileError {
  const err = volfileError(() => build(text));
  expect(err.problems).toHaveLength(1);
  expectProblem(err.problems[0], line, ...words);
  return err;
}

// --- building -----------------------------------------------------------------------

describe('buildGraph', () => {
  it('builds translators in definition order, wired to their subvolumes, hosted by the graph', () => {
    const text = vol(
      'volume brick', '  type storage/posix', '  option directory /nonexistent/for/build', 'end-volume',
      'volume tr', '  type debug/trace', '  option log-history on', '  subvolumes brick', 'end-volume',
      'volume top', '  type test/rec', '  subvolumes tr', 'end-volume',
    );
    const volfile = parse(text);
    const g = buildGraph(volfile, { id: 42, registry, log });
    expect(g.id).toBe(42);
    expectSame(g.volfile, volfile, 'volfile');
    expect(g.state).toBe('built');
    expect([...g.xlators.keys()]).toEqual(['brick', 'tr', 'top']);
    const [brick, tr, top] = ['brick', 'tr', 'top'].map((n) => g.xlators.get(n)!);
    expectSame(g.top, top, 'top');
    expect(top instanceof Rec).toBe(true);
    expect(brick.type).toBe('storage/posix');
    expect(tr.type).toBe('debug/trace');
    const names = (xs: readonly Xlator[]) => xs.map((x) => x.name);
    expect(names(top.children)).toEqual(['tr']);
    expect(names(tr.children)).toEqual(['brick']);
    expect(names(brick.parents)).toEqual(['tr']);
    expectSame(top.children[0], tr, 'child of top');
    expectSame(tr.children[0], brick, 'child of tr');
    expect(brick.children).toEqual([]);
    for (const xl of [brick, tr, top]) expectSame(xl.host, g, `host of ${xl.name}`);
    expect((tr.options as Record<string, unknown>)['log-history']).toBe(true);
    expect((tr.options as Record<string, unknown>)['history-size']).toBe(1024);
    expect((brick.options as Record<string, unknown>).directory).toBe('/nonexistent/for/build');
  });

  it('takes a relative path option relative to the volfile directory', () => {
    const checked = checkVolfile(
      parse(vol('volume b', '  type storage/posix', '  option directory bricks/b1', 'end-volume'), '/srv/conf/my.vol'),
      { registry, log },
    );
    expect(checked).toHaveLength(1);
    expectSame(checked[0].def, registry.find('storage/posix'), 'def');
    expect(checked[0].decl.name).toBe('b');
    expect((checked[0].options as Record<string, unknown>).directory).toBe('/srv/conf/bricks/b1');
  });

  it('rejects an unknown type with a VolfileError naming the type on its type line', () => {
    const text = vol(
      'volume leaf', '  type test/rec', 'end-volume', //   1-3
      '', //                                                  4
      'volume mid', //                                        5
      '  # a comment', //                                     6
      '  type features/nope', //                              7
      '  subvolumes leaf', //                                 8
      'end-volume', //                                        9
    );
    const err = expectOnlyBuildProblem(text, 7, "'features/nope'", "volume 'mid'", 'not implemented');
    expect(err.file).toBe(FILE);
    expect(err.message).toContain(`${FILE}:7:`);
  });

  it('with passthroughUnknown, builds and the unknown volume passes fops through unchanged', async () => {
    const text = vol(
      'volume leaf', '  type test/rec', 'end-volume',
      'volume mid', '  type features/nope', '  option some-knob 17', '  subvolumes leaf', 'end-volume',
      'volume top', '  type test/rec', '  subvolumes mid', 'end-volume',
    );
    const g = build(text, true);
    const mid = g.xlators.get('mid')!;
    expect(mid.type).toBe('features/nope');
    expect(mid.options).toEqual({});
    const leaf = g.xlators.get('leaf') as Rec;
    const frame = g.frame('lookup');
    const loc = { path: '/x', parent: g.itable.root, name: 'x' };
    const result = await g.top.lookup(frame, loc);
    frame.done();
    expect(result).toEqual({ answeredBy: 'leaf', op: 'lookup' });
    expect(leaf.fops).toHaveLength(1);
    expect(leaf.fops[0].op).toBe('lookup');
    expectSame(leaf.fops[0].args[0], frame, 'frame');
    expectSame(leaf.fops[0].args[1], loc, 'loc');
    expect(logs.some((l) => l.includes('WARN') && l.includes("type 'features/nope' is not implemented"))).toBe(true);
    expect(logs.some((l) => l.includes("ignoring option 'some-knob'") && l.includes(`${FILE}:6`))).toBe(true);
  });

  it('reports a bad option value naming volume, option, value and line', () => {
    const text = vol(
      'volume leaf', '  type test/rec', 'end-volume',
      'volume tr', '  type debug/trace', '  option log-history maybe', '  subvolumes leaf', 'end-volume',
    );
    const err = expectOnlyBuildProblem(text, 6, "volume 'tr'", "'log-history'", '"maybe"');
    expect(err.message).toContain(`${FILE}:6: volume 'tr': bad value for option 'log-history'`);
  });

  it('reports a bad value of a known option even with passthroughUnknown', () => {
    const text = vol(
      'volume leaf', '  type test/rec', 'end-volume',
      'volume eg', '  type debug/error-gen', '  option error-no EWHAT', '  subvolumes leaf', 'end-volume',
    );
    const err = volfileError(() => build(text, true));
    expectProblem(err.problems[0], 6, "volume 'eg'", "'error-no'", 'EWHAT');
  });

  it('reports an unknown option, listing the known ones', () => {
    const text = vol(
      'volume leaf', '  type test/rec', 'end-volume',
      'volume tr', '  type debug/trace', '  subvolumes leaf', '  option colour blue', 'end-volume',
    );
    expectOnlyBuildProblem(text, 7, "volume 'tr'", "unknown option 'colour'", 'debug/trace', 'include-ops', 'log-history');
  });

  it('ignores an unknown option of a known type with passthroughUnknown, with a warning', () => {
    const text = vol(
      'volume leaf', '  type test/rec', 'end-volume',
      'volume tr', '  type debug/trace', '  option colour blue', '  subvolumes leaf', 'end-volume',
    );
    const g = build(text, true);
    expect(g.xlators.get('tr')!.type).toBe('debug/trace');
    expect(logs.some((l) => l.includes("ignoring option 'colour'") && l.includes('debug/trace'))).toBe(true);
  });

  it('rejects storage/posix with a subvolume, on the subvolumes line', () => {
    const text = vol(
      'volume leaf', '  type test/rec', 'end-volume',
      'volume brick', '  type storage/posix', '  option directory /x', '  subvolumes leaf', 'end-volume',
    );
    expectOnlyBuildProblem(text, 7, "volume 'brick'", 'storage/posix', 'takes 0 subvolume(s), got 1');
  });

  it('rejects debug/trace without a subvolume, on the volume line', () => {
    const text = vol('volume tr', '  type debug/trace', 'end-volume');
    expectOnlyBuildProblem(text, 1, "volume 'tr'", 'debug/trace', 'takes 1 subvolume(s), got 0');
  });

  it('rejects debug/delay-gen with two subvolumes', () => {
    const text = vol(
      'volume x', '  type test/rec', 'end-volume',
      'volume y', '  type test/rec', 'end-volume',
      'volume dg', '  type debug/delay-gen', '  subvolumes x y', 'end-volume',
    );
    expectProblem(volfileError(() => build(text)).problems[0], 9, 'takes 1 subvolume(s), got 2');
  });

  it('reports several problems together, sorted by line', () => {
    const text = vol(
      'volume leaf', //                        1
      '  type test/rec', //                     2
      'end-volume', //                          3
      'volume other', //                        4
      '  type test/rec', //                     5
      'end-volume', //                          6
      'volume tr', //                           7
      '  type debug/trace', //                  8
      '  option history-size 0', //             9
      '  option include-ops open,zap', //       10
      '  subvolumes leaf other', //             11  (one too many)
      '  option bogus 1', //                    12
      'end-volume', //                          13
      'volume x', //                            14
      '  type storage/bd', //                   15
      '  subvolumes tr', //                     16
      'end-volume', //                          17
      'volume brick', //                        18
      '  type storage/posix', //                19
      '  option directory', //                  20 (no value: a syntax error)
      'end-volume', //                          21
    );
    // Line 20 would stop the parser; keep the rest of the test about the builder.
    const fixed = text.replace('  option directory\n', '  option directory ""\n');
    const err = volfileError(() => build(fixed));
    expect(err.problems.map((p) => p.line)).toEqual([9, 10, 11, 12, 15, 20]);
    expectProblem(err.problems[0], 9, "'history-size'", 'at least 1');
    expectProblem(err.problems[1], 10, "'include-ops'", 'zap');
    expectProblem(err.problems[2], 11, 'takes 1 subvolume(s), got 2');
    expectProblem(err.problems[3], 12, "unknown option 'bogus'");
    expectProblem(err.problems[4], 15, "'storage/bd'");
    expectProblem(err.problems[5], 20, "'directory'", 'empty path');
    const lines = err.message.split('\n');
    expect(lines).toHaveLength(6);
    expect(lines[0].startsWith(`${FILE}:9: `)).toBe(true);
    expect(lines[5].startsWith(`${FILE}:20: `)).toBe(true);
  });

  it('passes the inode-table settings to the graph', () => {
    const g = buildGraph(parse(vol('volume a', '  type test/rec', 'end-volume')), {
      id: 3,
      registry,
      log,
      lruLimit: 7,
      entryTimeoutMs: 123_456,
    });
    const t = { sec: 0, nsec: 0 };
    g.itable.link(
      { gfid: '00000000-0000-4000-8000-00000000abcd', ino: 1, mode: fs.constants.S_IFREG, nlink: 1, uid: 0, gid: 0, rdev: 0, size: 0, blksize: 0, blocks: 0, atime: t, mtime: t, ctime: t },
      g.itable.root,
      'f',
    );
    const until = g.itable.child(g.itable.root, 'f')!.validUntil - Date.now();
    expect(until).toBeGreaterThan(120_000);
    expect(until).toBeLessThanOrEqual(123_456);
  });

  // xlators/debug/describe.js is a helper module, not a translator. buildGraph promises a
  // VolfileError naming file and line for a volfile it cannot use.
  it('reports a type naming a non-translator module (debug/describe) as a VolfileError on its type line', () => {
    const text = vol('volume leaf', '  type test/rec', 'end-volume', 'volume d', '  type debug/describe', '  subvolumes leaf', 'end-volume');
    const err = volfileError(() => build(text));
    expectProblem(err.problems[0], 5, 'debug/describe');
  });
});

// --- the GlusterFS volfiles in test/fixtures ----------------------------------------------

const FIXTURE_FILES = volfilesUnder(FIXTURES);

describe('GlusterFS volfiles (test/fixtures/volfiles-glusterfs)', () => {
  it('are there to test', () => {
    expect(FIXTURE_FILES.length).toBeGreaterThanOrEqual(20);
    expect(FIXTURE_FILES.map((f) => path.basename(f))).toEqual(expect.arrayContaining(['glusterd.vol', 'thin-arbiter.vol', 'gv0.tcp-fuse.vol']));
  });

  describe.each(FIXTURE_FILES.map((f) => [path.relative(FIXTURES, f), f]))('%s', (_rel, file) => {
    const text = fs.readFileSync(file, 'utf8');
    const textLines = text.split('\n');
    const volfile = parseVolfile(text, file);

    it('fails without passthroughUnknown, naming unimplemented types on their type lines', () => {
      const err = volfileError(() => checkVolfile(volfile, { registry, log }));
      expect(err.file).toBe(file);
      const unimplemented = volfile.volumes.filter((v) => registry.find(v.type) === undefined);
      expect(unimplemented.length).toBeGreaterThan(0);
      const typeProblems = err.problems.filter((p) => p.message.includes('is not implemented'));
      expect(typeProblems.length).toBe(unimplemented.length);
      for (const v of unimplemented) {
        const p = typeProblems.find((q) => q.message.includes(`type '${v.type}'`) && q.message.includes(`volume '${v.name}'`));
        expect(p).toBeDefined();
        expect(p!.line).toBe(v.typeLine);
        expect(textLines[p!.line - 1].trim()).toBe(`type ${v.type}`);
      }
      expect(
        typeProblems.some((p) => ['debug/io-stats', 'protocol/client', 'protocol/server', 'mgmt/glusterd'].some((t) => p.message.includes(`'${t}'`))),
      ).toBe(true);
      expect(err.problems.map((p) => p.line)).toEqual([...err.problems.map((p) => p.line)].sort((a, b) => a - b));
    });

    it('passes checkVolfile and builds with passthroughUnknown', () => {
      const checked = checkVolfile(volfile, { registry, log, passthroughUnknown: true });
      expect(checked.map((c) => c.decl.name)).toEqual(volfile.volumes.map((v) => v.name));
      // Options a known type does not know are ignored, each with a warning.
      for (const c of checked) {
        const known = registry.find(c.decl.type);
        if (!known) continue;
        for (const o of c.decl.options) {
          if (knowsOption(known.options, o.key)) continue;
          expect(logs.some((l) => l.includes(`${file}:${o.line}:`) && l.includes(`ignoring option '${o.key}'`))).toBe(true);
        }
      }
      const g = buildGraph(volfile, { id: 9, registry, log, passthroughUnknown: true });
      expect(g.state).toBe('built');
      expect(g.xlators.size).toBe(volfile.volumes.length);
      expect(g.top.name).toBe(volfile.volumes[volfile.volumes.length - 1].name);
      for (const v of volfile.volumes) {
        const xl = g.xlators.get(v.name)!;
        expect(xl.type).toBe(v.type);
        expect(xl.children.map((c) => c.name)).toEqual(v.subvolumes.map((s) => s.name));
      }
    });
  });

  it('some brick volfiles carry storage/posix options posix does not know (so the warning path is exercised)', () => {
    const bricks = FIXTURE_FILES.map((f) => parseVolfile(fs.readFileSync(f, 'utf8'), f)).flatMap((v) =>
      v.volumes.filter((d) => d.type === 'storage/posix'),
    );
    expect(bricks.length).toBeGreaterThan(0);
    const withExtra = bricks.filter((b) => b.options.some((o) => o.key === 'shared-brick-count'));
    expect(withExtra.length).toBeGreaterThan(0);
  });
});

// Keep temp-dir helpers honest: checkVolfile never touches `option directory`.
describe('checkVolfile does not access the filesystem', () => {
  it('accepts a storage/posix directory that does not exist', () => {
    const missing = path.join(os.tmpdir(), `xl-core-builder-missing-${process.pid}-${Date.now()}`);
    const checked = checkVolfile(parse(vol('volume b', '  type storage/posix', `  option directory ${missing}`, 'end-volume')), { registry, log });
    expect((checked[0].options as Record<string, unknown>).directory).toBe(missing);
    expect(fs.existsSync(missing)).toBe(false);
  });
});
