import * as fs from 'fs';
import * as path from 'path';
import { parseVolfile, VolfileError } from '../../src/core/volfile';
import type { Volfile, VolfileProblem } from '../../src/core/volfile';
import { vol } from '../helpers/core';
import { FIXTURES, volfilesUnder } from '../helpers/fixtures';

/**
 * Every problem the parser reports for `text`: the syntax error it stops at (thrown), or the
 * structural problems it lists in the Volfile; fails the test if there are none.
 */
function problemsOf(text: string): readonly VolfileProblem[] {
  let problems: readonly VolfileProblem[];
  try {
    problems = parseVolfile(text, 't.vol').problems;
  } catch (err) {
    if (!(err instanceof VolfileError)) throw err;
    problems = err.problems;
  }
  expect(problems.length).toBeGreaterThan(0);
  return problems;
}

/** The one problem reported for `text`, checked against its line and the words of its message. */
function expectOnlyProblem(text: string, line: number, ...words: string[]): void {
  const problems = problemsOf(text);
  expect(problems).toHaveLength(1);
  expect(problems[0].line).toBe(line);
  for (const w of words) expect(problems[0].message).toContain(w);
}

/** Parses a volfile that must have no problems at all. */
function parseOk(text: string, file: string): Volfile {
  const v = parseVolfile(text, file);
  expect(v.problems).toEqual([]);
  return v;
}

const posix = ['volume posix', '  type storage/posix', '  option directory /tmp/x', 'end-volume'];

describe('parseVolfile: valid volfiles', () => {
  it('parses a small volfile to the exact structure', () => {
    const text = vol(
      'volume posix', //                1
      '    type storage/posix', //      2
      '    option directory /data', //  3
      '    option o-direct off', //     4
      'end-volume', //                  5
      '', //                            6
      'volume locks', //                7
      '    type features/locks', //     8
      '    subvolumes posix', //        9
      'end-volume', //                  10
      'volume top', //                  11
      '    type debug/io-stats', //     12
      '    option log-level INFO', //   13
      '    subvolumes locks posix', //  14
      'end-volume', //                  15
    );
    expect(parseVolfile(text, 'small.vol')).toEqual({
      file: 'small.vol',
      volumes: [
        {
          name: 'posix',
          line: 1,
          type: 'storage/posix',
          typeLine: 2,
          options: [
            { key: 'directory', value: '/data', line: 3 },
            { key: 'o-direct', value: 'off', line: 4 },
          ],
          subvolumes: [],
        },
        {
          name: 'locks',
          line: 7,
          type: 'features/locks',
          typeLine: 8,
          options: [],
          subvolumes: [{ name: 'posix', line: 9 }],
        },
        {
          name: 'top',
          line: 11,
          type: 'debug/io-stats',
          typeLine: 12,
          options: [{ key: 'log-level', value: 'INFO', line: 13 }],
          subvolumes: [
            { name: 'locks', line: 14 },
            { name: 'posix', line: 14 },
          ],
        },
      ],
      problems: [],
    });
  });

  it('keeps options in file order, including repeated keys', () => {
    const v = parseOk(vol('volume a', 'type t', 'option k 1', 'option j 2', 'option k 3', 'end-volume'), 'f');
    expect(v.volumes[0].options).toEqual([
      { key: 'k', value: '1', line: 3 },
      { key: 'j', value: '2', line: 4 },
      { key: 'k', value: '3', line: 5 },
    ]);
  });

  it('ignores full-line and trailing comments and blank lines', () => {
    const text = vol(
      '# a comment', //                     1
      '', //                                2
      'volume a # trailing', //             3
      '   # indented comment', //           4
      '  type t/x   # why', //               5
      '', //                                6
      '  option k v #no space needed', //   7
      'end-volume # done', //               8
      '#volume b', //                       9
    );
    const [a, ...rest] = parseOk(text, 'f').volumes;
    expect(rest).toEqual([]);
    expect(a).toMatchObject({ name: 'a', line: 3, type: 't/x', typeLine: 5 });
    expect(a.options).toEqual([{ key: 'k', value: 'v', line: 7 }]);
  });

  it('treats # inside a word as part of the word', () => {
    const v = parseOk(vol('volume a', 'type t', 'option k abc#d', 'option x#y z', 'end-volume'), 'f');
    expect(v.volumes[0].options).toEqual([
      { key: 'k', value: 'abc#d', line: 3 },
      { key: 'x#y', value: 'z', line: 4 },
    ]);
  });

  it('accepts tabs and CRLF line endings', () => {
    const text = 'volume a\r\n\ttype\tt\r\n\t\toption\tk\tv\r\n\r\nend-volume\r\n';
    const [a] = parseOk(text, 'f').volumes;
    expect(a).toEqual({
      name: 'a',
      line: 1,
      type: 't',
      typeLine: 2,
      options: [{ key: 'k', value: 'v', line: 3 }],
      subvolumes: [],
    });
  });

  it('accepts a file without a final newline', () => {
    expect(parseOk('volume a\ntype t\nend-volume', 'f').volumes.map((v) => v.name)).toEqual(['a']);
  });

  it('reads quoted values with spaces and escapes', () => {
    const text = vol(
      'volume "my vol"',
      '  type t',
      '  option "a key" "two words"',
      '  option q "say \\"hi\\""',
      '  option b "back\\\\slash"',
      '  option e ""',
      '  option kw "type"',
      '  option hash "# not a comment"',
      'end-volume',
    );
    const [v] = parseOk(text, 'f').volumes;
    expect(v.name).toBe('my vol');
    expect(v.options).toEqual([
      { key: 'a key', value: 'two words', line: 3 },
      { key: 'q', value: 'say "hi"', line: 4 },
      { key: 'b', value: 'back\\slash', line: 5 },
      { key: 'e', value: '', line: 6 },
      { key: 'kw', value: 'type', line: 7 },
      { key: 'hash', value: '# not a comment', line: 8 },
    ]);
  });

  it('drops the line break from a quoted value spanning two lines and keeps counting lines', () => {
    const text = vol('volume a', 'type t', 'option k "first', 'second"', 'option j v', 'end-volume');
    const [a] = parseOk(text, 'f').volumes;
    expect(a.options).toEqual([
      { key: 'k', value: 'firstsecond', line: 3 },
      { key: 'j', value: 'v', line: 5 },
    ]);
  });

  it('drops CRLF inside a quoted value', () => {
    const [a] = parseOk('volume a\r\ntype t\r\noption k "x\r\ny"\r\nend-volume\r\n', 'f').volumes;
    expect(a.options).toEqual([{ key: 'k', value: 'xy', line: 3 }]);
  });

  it('accepts the singular subvolume keyword', () => {
    const v = parseOk(vol(...posix, 'volume b', 'type t', 'subvolume posix', 'end-volume'), 'f');
    expect(v.volumes[1].subvolumes).toEqual([{ name: 'posix', line: 7 }]);
  });

  it('treats keyword-like words that are not exactly keywords as words', () => {
    const text = vol('volume volumes', 'type Type', 'option option-x end-volumes', 'end-volume');
    const [v] = parseOk(text, 'f').volumes;
    expect(v).toMatchObject({ name: 'volumes', type: 'Type' });
    expect(v.options).toEqual([{ key: 'option-x', value: 'end-volumes', line: 3 }]);
  });

  it('allows backticks inside comments', () => {
    const text = vol('# `rm -rf /`', 'volume a', 'type t # `date`', 'end-volume');
    expect(parseOk(text, 'f').volumes).toHaveLength(1);
  });
});

describe('parseVolfile: syntax errors', () => {
  it('rejects an option with two values', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'option k v w', 'end-volume'), 3, "option 'k'", 'one value, got 2');
  });

  it('rejects an option with no value, even if the next line has words', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'option k', 'end-volume'), 3, "option 'k' has no value");
    expectOnlyProblem(vol('volume a', 'type t', 'option k', 'v', 'end-volume'), 3, "option 'k' has no value");
  });

  it('rejects an option with neither key nor value', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'option', 'end-volume'), 3, 'option has no key');
  });

  it('rejects words after a quoted value that ends on a later line', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'option k "x', 'y" z', 'end-volume'), 3, "option 'k'", 'got 2');
  });

  it('rejects a bare keyword as an option value or key', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'option k type', 'end-volume'), 3, "keyword 'type'", 'value', 'quote it');
    expectOnlyProblem(vol('volume a', 'type t', 'option volume v', 'end-volume'), 3, "keyword 'volume'", 'quote it');
  });

  it('rejects a bare keyword as a volume name, type or subvolume name', () => {
    expectOnlyProblem(vol('volume option', 'type t', 'end-volume'), 1, "keyword 'option'", 'volume name');
    expectOnlyProblem(vol('volume a', 'type end-volume'), 2, "keyword 'end-volume'", 'translator type');
    expectOnlyProblem(vol(...posix, 'volume b', 'type t', 'subvolumes posix type', 'end-volume'), 7, "keyword 'type'");
  });

  it('rejects a keyword that does not start its own line', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'option k v end-volume'), 3, "option 'k'", "'end-volume' must start a new line");
    expectOnlyProblem(vol('volume a', 'type t', 'end-volume volume b'), 3, "unexpected 'volume' after end-volume");
  });

  it('rejects statements with missing or extra words', () => {
    expectOnlyProblem(vol('volume', 'type t', 'end-volume'), 1, 'volume has no name');
    expectOnlyProblem(vol('volume a b', 'type t', 'end-volume'), 1, 'volume takes one name, got 2');
    expectOnlyProblem(vol('volume a', 'type', 'end-volume'), 2, "type of volume 'a' has no value");
    expectOnlyProblem(vol('volume a', 'type t u', 'end-volume'), 2, 'type takes one word, got 2');
    expectOnlyProblem(vol('volume a', 'type t', 'subvolumes', 'end-volume'), 3, "subvolumes of volume 'a' has no names");
  });

  it('rejects backticks in a bare word, a quoted string and an escaped quote', () => {
    const why = 'GlusterFS would run them as a shell command';
    expectOnlyProblem(vol('volume a', 'type t', 'option k `id`', 'end-volume'), 3, 'backticks are not allowed', why);
    expectOnlyProblem(vol('volume a', 'type t', 'option k "x`id`"', 'end-volume'), 3, 'backticks are not allowed');
    expectOnlyProblem(vol('volume a', 'type t', 'option k "x\\`"', 'end-volume'), 3, 'backticks are not allowed');
    expectOnlyProblem(vol('volume a', 'type t', 'option k "x', '`id`"', 'end-volume'), 4, 'backticks');
  });

  it('reports an unterminated quoted string at the line where it started', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'option k "abc', 'end-volume', ''), 3, 'unterminated quoted string');
  });

  it('rejects a backslash outside quotes', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'option k a\\b', 'end-volume'), 3, 'backslash');
  });

  it('rejects a stray word outside a volume', () => {
    expectOnlyProblem(vol(...posix, 'stray', 'volume b', 'type t', 'end-volume'), 5, "unexpected word 'stray'", 'outside a volume');
  });

  it('rejects statements outside a volume', () => {
    expectOnlyProblem(vol('type t'), 1, "'type' outside a volume");
    expectOnlyProblem(vol(...posix, 'option k v'), 5, "'option' outside a volume");
  });

  it('rejects a stray word inside a volume', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'directory /x', 'end-volume'), 3, "unexpected word 'directory'", "volume 'a'");
  });

  it('rejects end-volume without volume', () => {
    expectOnlyProblem(vol(...posix, 'end-volume'), 5, 'end-volume without a matching volume');
  });

  it('reports the first syntax error in file order', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'option k v w', 'option j `x`', 'end-volume'), 3, "option 'k'");
    expectOnlyProblem(vol('volume a', 'type t', 'option j `x`', 'option k v w', 'end-volume'), 3, 'backticks');
  });

  it('rejects an empty file and one with only comments', () => {
    expectOnlyProblem('', 1, 'no volumes defined');
    expectOnlyProblem(vol('# nothing', '', '   '), 1, 'no volumes defined');
  });
});

describe('parseVolfile: structural problems', () => {
  it('rejects an unknown subvolume', () => {
    expectOnlyProblem(vol(...posix, 'volume b', 'type t', 'subvolumes posix nope', 'end-volume'), 7, "unknown subvolume 'nope'");
  });

  it('rejects a volume listing itself', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'subvolumes a', 'end-volume'), 3, "volume 'a' lists itself as a subvolume");
  });

  it('reports a 2-volume cycle once, with its path', () => {
    const text = vol(
      'volume a', //         1
      'type t', //           2
      'subvolumes b', //     3
      'end-volume', //       4
      'volume b', //         5
      'type t', //           6
      'subvolumes a', //     7
      'end-volume', //       8
    );
    expectOnlyProblem(text, 3, 'cycle: a -> b -> a');
  });

  it('reports a 3-volume cycle once, with its path', () => {
    const text = vol(
      'volume a', 'type t', 'subvolumes b', 'end-volume', //      1-4
      'volume b', 'type t', 'subvolumes c', 'end-volume', //      5-8
      'volume c', 'type t', 'subvolumes a', 'end-volume', //      9-12
    );
    expectOnlyProblem(text, 3, 'cycle: a -> b -> c -> a');
  });

  it('reports a forward reference that is not a cycle, naming where it is defined', () => {
    const text = vol('volume top', 'type t', 'subvolumes posix', 'end-volume', ...posix);
    expectOnlyProblem(text, 3, "subvolume 'posix' is used before it is defined (line 5)");
  });

  it('rejects the same subvolume listed twice', () => {
    expectOnlyProblem(vol(...posix, 'volume b', 'type t', 'subvolumes posix posix', 'end-volume'), 7, "subvolume 'posix' is listed twice");
  });

  it('rejects a volume defined twice', () => {
    expectOnlyProblem(vol(...posix, ...posix), 5, "volume 'posix' is defined again (first on line 1)");
  });

  it('rejects a volume missing end-volume at the end of the file', () => {
    expectOnlyProblem(vol(...posix, 'volume b', 'type t', 'subvolumes posix'), 5, "volume 'b' is missing end-volume");
  });

  it('rejects a volume starting inside another', () => {
    const text = vol('volume a', 'type t', 'volume b', 'type t', 'end-volume');
    expectOnlyProblem(text, 3, "volume 'b' starts before volume 'a' (line 1) has end-volume");
  });

  it('rejects a volume without a type, at its end-volume line', () => {
    expectOnlyProblem(vol('volume a', 'option k v', 'end-volume'), 3, "volume 'a' has no type");
  });

  it('rejects type given twice', () => {
    expectOnlyProblem(vol('volume a', 'type t', 'type u', 'end-volume'), 3, "volume 'a' has type twice (first on line 2)");
  });

  it('rejects type after an option or subvolumes', () => {
    expectOnlyProblem(vol('volume a', 'option k v', 'type t', 'end-volume'), 3, "type of volume 'a' must come before", 'line 2');
    expectOnlyProblem(vol(...posix, 'volume b', 'subvolumes posix', 'type t', 'end-volume'), 7, "type of volume 'b' must come before");
  });

  it('rejects two subvolumes lines', () => {
    const text = vol(...posix, 'volume b', 'type t', 'subvolumes posix', 'subvolumes posix', 'end-volume');
    expectOnlyProblem(text, 8, "volume 'b' has subvolumes twice (first on line 7)");
  });

  it('reports several structural problems together, in line order', () => {
    const text = vol(
      'volume a', //                 1
      '  subvolumes z', //           2  forward reference, no cycle
      'end-volume', //               3  no type
      'volume b', //                 4
      '  type t', //                 5
      '  type u', //                 6  type twice
      '  subvolumes nope b', //      7  unknown + self
      'end-volume', //               8
      'volume a', //                 9  defined again
      '  type t', //                 10
      'end-volume', //               11
      'volume z', //                 12
      '  type t', //                 13
      'end-volume', //               14
      'volume open', //              15 missing end-volume
      '  type t', //                 16
    );
    const problems = problemsOf(text);
    expect(problems.map((p) => p.line)).toEqual([2, 3, 6, 7, 7, 9, 15]);
    const messages = problems.map((p) => p.message);
    expect(messages[0]).toContain("subvolume 'z' is used before it is defined (line 12)");
    expect(messages[1]).toContain("volume 'a' has no type");
    expect(messages[2]).toContain("volume 'b' has type twice");
    expect(messages[3]).toContain("unknown subvolume 'nope'");
    expect(messages[4]).toContain("volume 'b' lists itself");
    expect(messages[5]).toContain("volume 'a' is defined again (first on line 1)");
    expect(messages[6]).toContain("volume 'open' is missing end-volume");
  });

  it('formats the error message as file:line: message, one problem per line', () => {
    const text = vol('volume a', 'type t', 'subvolumes x', 'end-volume', 'volume b', 'end-volume');
    const { file, problems } = parseVolfile(text, 'dir/my.vol');
    expect(new VolfileError(file, problems).message).toBe("dir/my.vol:3: unknown subvolume 'x'\ndir/my.vol:6: volume 'b' has no type");
  });

  it('lists structural problems without throwing (checkVolfile reports them with the rest), sorted by line', () => {
    const text = vol('volume a', 'type t', 'subvolumes x', 'end-volume', 'volume b', 'end-volume', 'volume a', 'type t', 'end-volume');
    const v = parseVolfile(text, 't.vol');
    expect(v.volumes.map((d) => d.name)).toEqual(['a', 'b', 'a']);
    expect(v.problems.map((p) => p.line)).toEqual([3, 6, 7]);
  });
});

describe('parseVolfile: volfiles generated by GlusterFS', () => {
  function load(rel: string) {
    return parseOk(fs.readFileSync(path.join(FIXTURES, rel), 'utf8'), rel);
  }

  const files = volfilesUnder(FIXTURES);

  it('finds all the fixture volfiles', () => {
    expect(files).toHaveLength(31);
  });

  it.each(files.map((f) => [path.relative(FIXTURES, f)]))('parses %s', (rel) => {
    const text = fs.readFileSync(path.join(FIXTURES, rel), 'utf8');
    const v = parseOk(text, rel);
    expect(v.file).toBe(rel);
    expect(v.volumes.length).toBeGreaterThan(0);
    // The top is the last volume: nothing else lists it as a subvolume.
    const top = v.volumes[v.volumes.length - 1];
    const used = new Set(v.volumes.flatMap((d) => d.subvolumes.map((s) => s.name)));
    expect(used.has(top.name)).toBe(false);
    // Every volume but the top is used by some later volume.
    for (const d of v.volumes.slice(0, -1)) expect(used.has(d.name)).toBe(true);
    const lastVolumeLine = text.split('\n').map((l) => l.trim()).lastIndexOf(`volume ${top.name}`) + 1;
    expect(top.line).toBe(lastVolumeLine);
  });

  it('gv0.tcp-fuse.vol: top is gv0, an io-stats over gv0-io-threads', () => {
    const v = load('gv0/gv0.tcp-fuse.vol');
    expect(v.volumes).toHaveLength(9);
    const top = v.volumes[v.volumes.length - 1];
    expect(top).toMatchObject({ name: 'gv0', line: 55, type: 'debug/io-stats', typeLine: 56 });
    expect(top.subvolumes).toEqual([{ name: 'gv0-io-threads', line: 62 }]);
    expect(top.options).toContainEqual({ key: 'log-level', value: 'INFO', line: 61 });
  });

  it('brick volfile: a volume named by a path and option keys containing /', () => {
    const v = load('gvrep/gvrep.vm.srv-brick2r-b.vol');
    const byPath = v.volumes.find((d) => d.name === '/bricks/brick2r/b');
    expect(byPath).toMatchObject({ line: 116, type: 'debug/io-stats' });
    const top = v.volumes[v.volumes.length - 1];
    expect(top).toMatchObject({ name: 'gvrep-server', type: 'protocol/server' });
    expect(top.options).toContainEqual({ key: 'auth.addr./bricks/brick2r/b.allow', value: '*', line: 136 });
    expect(top.subvolumes.map((s) => s.name)).toEqual(['/bricks/brick2r/b']);
  });

  it('self-heal daemon graph: replicate over two clients', () => {
    const v = load('gvrep/gvrep-shd.vol');
    expect(v.volumes.map((d) => d.name)).toEqual(['gvrep-client-0', 'gvrep-client-1', 'gvrep-replicate-0', 'gvrep']);
    expect(v.volumes[2].subvolumes).toEqual([
      { name: 'gvrep-client-0', line: 48 },
      { name: 'gvrep-client-1', line: 48 },
    ]);
    expect(v.volumes[0].options).toContainEqual({ key: 'remote-subvolume', value: '/bricks/brick2r/b', line: 13 });
  });

  it('glusterd.vol: one management volume, commented-out options skipped', () => {
    const v = load('etc/glusterd.vol');
    expect(v.volumes).toHaveLength(1);
    const [m] = v.volumes;
    expect(m).toMatchObject({ name: 'management', type: 'mgmt/glusterd', subvolumes: [] });
    expect(m.options.map((o) => o.key)).not.toContain('base-port');
    expect(m.options[m.options.length - 1]).toEqual({ key: 'max-port', value: '60999', line: 14 });
    expect(m.options).toHaveLength(9);
  });
});
