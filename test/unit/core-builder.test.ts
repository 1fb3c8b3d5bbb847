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
import { newBridge, readAll, within, writeFile } from '../helpers/graphs';

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

  it('an unknown subvolume does not hide the other problems of the file: all of them, sorted by line', () => {
    const text = vol(
      'volume leaf', //                     1
      '  type test/rec', //                  2
      'end-volume', //                       3
      'volume tr', //                        4
      '  type debug/trace', //               5
      '  option log-history maybe', //       6
      '  subvolumes nowhere', //             7
      'end-volume', //                       8
      'volume x', //                         9
      '  type features/nope', //             10
      '  subvolumes tr', //                  11
      'end-volume', //                       12
      'volume tr', //                        13
      '  type debug/trace', //               14
      '  option colour blue', //             15
      '  subvolumes leaf', //                16
      'end-volume', //                       17
    );
    const err = volfileError(() => build(text));
    expect(err.problems.map((p) => p.line)).toEqual([6, 7, 10, 13, 15]);
    expectProblem(err.problems[0], 6, "'log-history'", 'maybe');
    expectProblem(err.problems[1], 7, "unknown subvolume 'nowhere'");
    expectProblem(err.problems[2], 10, "'features/nope'", 'not implemented');
    expectProblem(err.problems[3], 13, "volume 'tr' is defined again");
    expectProblem(err.problems[4], 15, "unknown option 'colour'");
    expect(err.message.split('\n').map((l) => l.slice(0, FILE.length + 4))).toEqual([6, 7, 10, 13, 15].map((n) => `${FILE}:${n}: `.slice(0, FILE.length + 4)));
  });

  it('checkVolfile reports the structural problems the parser found, with its own', () => {
    const text = vol('volume a', '  type test/rec', '  subvolumes b', 'end-volume', 'volume t', '  type debug/trace', '  option include-ops zap', '  subvolumes a', 'end-volume');
    const volfile = parse(text);
    expect(volfile.problems).toHaveLength(1);
    const err = volfileError(() => checkVolfile(volfile, { registry, log }));
    expect(err.problems.map((p) => p.line)).toEqual([3, 7]);
  });

  it('refuses a NUL byte in a path option (mount could never use it), on its line', () => {
    const text = vol('volume b', '  type storage/posix', '  option directory /srv/a\0b', 'end-volume');
    expectOnlyBuildProblem(text, 3, "volume 'b'", "'directory'", 'NUL byte');
    // Any kind of option: no option value has a use for one.
    expectOnlyBuildProblem(vol('volume l', '  type test/rec', 'end-volume', 'volume e', '  type debug/error-gen', '  option error-no EIO\0', '  subvolumes l', 'end-volume'), 6, 'NUL byte');
  });

  it('what a translator refuses when it is created is a problem of its volume, reported with the others', () => {
    const text = vol(
      'volume leaf', '  type test/rec', 'end-volume', //                            1-3
      'volume g1', '  type debug/gate', '  option hold zap:before', '  subvolumes leaf', 'end-volume', // 4-8
      'volume g2', '  type debug/gate', '  option hold open:sideways', '  subvolumes g1', 'end-volume', // 9-13
    );
    const err = volfileError(() => build(text));
    expect(err.problems.map((p) => p.line)).toEqual([4, 9]);
    expectProblem(err.problems[0], 4, "volume 'g1'", "bad hold 'zap:before'");
    expectProblem(err.problems[1], 9, "volume 'g2'", "bad hold 'open:sideways'");
  });

  it('a type whose module declares another type is a problem on its type line, not a crash', () => {
    const broken = new Registry();
    broken.find = (type: string) => {
      if (type === 'test/odd') throw new Error('xlators/test/odd.js does not export the translator test/odd (it declares test/even)');
      return registry.find(type);
    };
    const text = vol('volume leaf', '  type test/rec', 'end-volume', 'volume o', '  type test/odd', '  subvolumes leaf', '  option x 1', 'end-volume', 'volume t', '  type debug/trace', '  option bad 1', '  subvolumes o', 'end-volume');
    const err = volfileError(() => checkVolfile(parse(text), { registry: broken, log }));
    expect(err.problems.map((p) => p.line)).toEqual([5, 11]);
    expectProblem(err.problems[0], 5, "volume 'o'", 'cannot be loaded', 'declares test/even');
  });
});

describe('passthroughUnknown never makes a volume that spreads data serve from one child', () => {
  const leaves = ['volume a', '  type test/rec', 'end-volume', 'volume b', '  type test/rec', 'end-volume']; // 1-6

  it('refuses an unimplemented cluster/ type, even over one subvolume, naming volume, line and why', () => {
    const text = vol(...leaves, 'volume ec', '  type cluster/disperse', '  subvolumes a', 'end-volume');
    const err = volfileError(() => build(text, true));
    expect(err.problems).toHaveLength(1);
    expectProblem(err.problems[0], 8, "volume 'ec'", "type 'cluster/disperse'", 'cannot be passed through, even with --passthrough-unknown', 'silently');
    expect(err.message).toContain(`${FILE}:8: volume 'ec'`);
  });

  it('refuses an unimplemented type over several subvolumes: data would go to the first alone', () => {
    const text = vol(...leaves, 'volume m', '  type features/mirror', '  subvolumes a b', 'end-volume');
    const err = volfileError(() => build(text, true));
    expectProblem(err.problems[0], 8, "volume 'm'", "type 'features/mirror'", 'it has 2 subvolumes', "data would silently go to 'a' alone");
  });

  it('without the flag, says it cannot be passed through (not that the flag would help)', () => {
    const text = vol(...leaves, 'volume afr', '  type cluster/stripe', '  subvolumes a b', 'end-volume', 'volume u', '  type features/utime', '  subvolumes afr', 'end-volume');
    const err = volfileError(() => build(text));
    expect(err.problems.map((p) => p.line)).toEqual([8, 12]);
    expectProblem(err.problems[0], 8, 'cannot be passed through', "data would silently go to 'a' alone");
    expect(err.problems[0].message).not.toContain('passes such volumes through');
    expectProblem(err.problems[1], 12, "'features/utime'", '--passthrough-unknown passes such volumes through');
  });

  it('still passes through an unimplemented type over one subvolume, or none', () => {
    const text = vol(...leaves, 'volume u', '  type features/utime', '  subvolumes a', 'end-volume', 'volume m', '  type mgmt/thing', 'end-volume');
    const g = build(text, true);
    expect([...g.xlators.keys()]).toEqual(['a', 'b', 'u', 'm']);
  });
});

describe('a chain of 10,000 volumes', () => {
  const N = 10_000;
  // Every translator in the chain passes fops on. Near the bottom, a few that wait for
  // something before they wind (gate, write-behind) or inject nothing (error-gen); above them
  // thousands that wind on the caller's stack (default pass-throughs, trace), which is what
  // used to overflow it.
  const BOTTOM = ['debug/gate', 'performance/write-behind', 'debug/error-gen'];
  const typeOf = (i: number) => (i <= BOTTOM.length ? BOTTOM[i - 1] : i % 2 ? 'debug/trace' : 'features/not-here');
  const chain = (dir: string) => {
    const lines = ['volume v0', '  type storage/posix', `  option directory ${dir}`, 'end-volume'];
    for (let i = 1; i < N; i++) {
      const type = typeOf(i);
      lines.push(`volume v${i}`, `  type ${type}`, ...(type === 'debug/error-gen' ? ['  option failure 0'] : []), `  subvolumes v${i - 1}`, 'end-volume');
    }
    return vol(...lines);
  };
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xl-core-builder-deep-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('checks, builds, starts, serves a lookup and a write through all of it, and stops', async () => {
    const volfile = parse(chain(dir));
    expect(checkVolfile(volfile, { registry, log, passthroughUnknown: true })).toHaveLength(N);
    const g = buildGraph(volfile, { id: 1, registry, log, passthroughUnknown: true });
    try {
      expect(await within(g.start(30_000), 60_000)).toBe('up');
      const frame = g.frame('lookup');
      const iatt = await within(g.top.lookup(frame, { path: '/', inode: g.itable.root }));
      frame.done();
      expect(iatt.gfid).toBe(g.itable.root.gfid);
      const b = newBridge(g);
      await within(writeFile(b, '/deep', 'through 10,000 volumes'));
      expect(await within(readAll(b, '/deep'))).toBe('through 10,000 volumes');
      expect(fs.readFileSync(path.join(dir, 'deep'), 'utf8')).toBe('through 10,000 volumes');
    } finally {
      await within(g.stop(30_000), 60_000);
    }
    expect(g.state).toBe('dead');
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

    // A pass-through serves everything from its first subvolume: a replica or a distribute
    // passed through would silently stop writing to the other bricks.
    const refused = volfile.volumes.filter((v) => registry.find(v.type) === undefined && (v.type.startsWith('cluster/') || v.subvolumes.length > 1));

    it('names the GlusterFS fixtures with cluster translators (the ones passthroughUnknown must refuse)', () => {
      const clusterTypes = volfile.volumes.filter((v) => v.type.startsWith('cluster/') && registry.find(v.type) === undefined);
      expect(refused.map((v) => v.name)).toEqual(clusterTypes.map((v) => v.name));
    });

    if (refused.length > 0) {
      it('is refused even with passthroughUnknown: each cluster volume named on its type line, with why', () => {
        const err = volfileError(() => checkVolfile(volfile, { registry, log, passthroughUnknown: true }));
        expect(err.problems).toHaveLength(refused.length);
        err.problems.forEach((p, i) => {
          const v = refused[i];
          expect(p.line).toBe(v.typeLine);
          expect(p.message).toContain(`volume '${v.name}': type '${v.type}' is not implemented by xlstack and cannot be passed through, even with --passthrough-unknown`);
          expect(p.message).toContain('a cluster translator');
          expect(p.message).toContain('silently');
          if (v.subvolumes.length > 1) expect(p.message).toContain(`data would silently go to '${v.subvolumes[0].name}' alone`);
        });
        expect(() => buildGraph(volfile, { id: 9, registry, log, passthroughUnknown: true })).toThrow(VolfileError);
      });
      return;
    }

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

  it('with passthroughUnknown, those with a cluster type xlstack does not implement are refused and every other one loads', () => {
    const outcome = FIXTURE_FILES.map((f) => {
      try {
        buildGraph(parseVolfile(fs.readFileSync(f, 'utf8'), f), { id: 1, registry, log, passthroughUnknown: true });
        return 'loads';
      } catch (e) {
        if (e instanceof VolfileError && e.problems.every((p) => p.message.includes('cannot be passed through'))) return 'refused';
        throw e;
      }
    });
    const clustered = FIXTURE_FILES.map((f) => [...fs.readFileSync(f, 'utf8').matchAll(/^\s*type (cluster\/[a-z-]+)\s*$/gm)].some((m) => registry.find(m[1]) === undefined));
    expect(outcome).toEqual(clustered.map((c) => (c ? 'refused' : 'loads')));
    expect(outcome.filter((o) => o === 'loads').length).toBeGreaterThanOrEqual(10);
    // cluster/replicate is implemented: GlusterFS's replica volfiles load (its options it does not know ignored).
    const replicated = FIXTURE_FILES.filter((f, i) => !clustered[i] && /^\s*type cluster\/replicate\s*$/m.test(fs.readFileSync(f, 'utf8')));
    expect(replicated.length).toBeGreaterThan(0);
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
