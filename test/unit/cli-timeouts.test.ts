import { cacheTimeouts } from '../../src/cli/commands';
import { UsageError, parseArgs } from '../../src/cli/args';

const SPEC = { options: ['entry-timeout', 'attribute-timeout', 'negative-timeout'], positionals: [] };

describe('mount cache timeouts', () => {
  test('default to 1 s for names and attributes and 0 for missing names, in milliseconds', () => {
    expect(cacheTimeouts(parseArgs([], SPEC))).toEqual({ entryTimeoutMs: 1000, attrTimeoutMs: 1000, negativeTimeoutMs: 0 });
  });

  test('given values are seconds', () => {
    const t = cacheTimeouts(parseArgs(['--entry-timeout', '2.5', '--attribute-timeout=0', '--negative-timeout', '0.001'], SPEC));
    expect(t).toEqual({ entryTimeoutMs: 2500, attrTimeoutMs: 0, negativeTimeoutMs: 1 });
  });

  test('a value that is not a number of seconds from 0 to 3600 is refused', () => {
    for (const bad of ['-1', 'abc', '3601', 'Infinity']) {
      expect(() => cacheTimeouts(parseArgs(['--entry-timeout', bad], SPEC))).toThrow(UsageError);
    }
  });
});
