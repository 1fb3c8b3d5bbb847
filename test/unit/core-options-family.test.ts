// Option families: one schema key with a `*` takes every option whose key matches it
// (GlusterFS's auth.login.<user>.password), as a map from what `*` stood for to the value.
import { knowsOption, opt, parseOptions, RawOption } from '../../src/core/options';

const ctx = { baseDir: '/srv', type: 'test/family' };
const schema = {
  plain: opt.string({ description: 'a plain option', default: 'x', aliases: ['plain.alias'] }),
  'auth.login.*.password': opt.family({ description: 'passwords by user', each: opt.string({ description: 'a password' }) }),
  'limit.*': opt.family({ description: 'limits by name', each: opt.int({ description: 'a limit', min: 0 }) }),
};
const raw = (...pairs: [string, string][]): RawOption[] => pairs.map(([key, value], i) => ({ key, value, line: i + 1 }));

describe('opt.family', () => {
  it('maps each name `*` stood for to its parsed value', () => {
    const r = parseOptions(schema, raw(['auth.login.alice.password', 's3cret'], ['auth.login.bob.password', 'hunter2'], ['limit.a', '5'], ['plain', 'y']), ctx);
    expect(r.problems).toEqual([]);
    expect([...r.values['auth.login.*.password']]).toEqual([
      ['alice', 's3cret'],
      ['bob', 'hunter2'],
    ]);
    expect([...r.values['limit.*']]).toEqual([['a', 5]]);
    expect(r.values.plain).toBe('y');
  });

  it('is an empty map when no member is given', () => {
    const r = parseOptions(schema, [], ctx);
    expect(r.values['auth.login.*.password'].size).toBe(0);
    expect(r.values['limit.*'].size).toBe(0);
  });

  it('names may contain dots and slashes (GlusterFS names volumes by brick path)', () => {
    const r = parseOptions(schema, raw(['auth.login./bricks/b1.password', 'p']), ctx);
    expect(r.problems).toEqual([]);
    expect(r.values['auth.login.*.password'].get('/bricks/b1')).toBe('p');
  });

  it('reports a bad member value and a repeated member with their lines', () => {
    const r = parseOptions(schema, raw(['limit.a', '-1'], ['auth.login.u.password', 'a'], ['auth.login.u.password', 'b']), ctx);
    expect(r.problems).toEqual([
      { line: 1, message: "bad value for option 'limit.a': must be at least 0" },
      { line: 3, message: "option 'auth.login.u.password' is already set on line 2" },
    ]);
  });

  it('does not match an empty name or a key that only starts like the family', () => {
    const r = parseOptions(schema, raw(['auth.login..password', 'p'], ['auth.login.u.passwordx', 'p'], ['limit.', '1']), ctx);
    expect(r.problems.map((p) => p.line)).toEqual([1, 2, 3]);
    expect(r.problems.every((p) => p.message.startsWith('unknown option'))).toBe(true);
  });

  it('knowsOption: names, aliases and family members', () => {
    expect(knowsOption(schema, 'plain')).toBe(true);
    expect(knowsOption(schema, 'plain.alias')).toBe(true);
    expect(knowsOption(schema, 'auth.login.x.password')).toBe(true);
    expect(knowsOption(schema, 'auth.login.x.allow')).toBe(false);
    expect(knowsOption(schema, 'other')).toBe(false);
  });
});
