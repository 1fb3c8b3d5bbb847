import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FopError, check, isErrnoCode } from '../../src/core/errors';
import { cleanupGraphs, tempDir } from '../helpers/graphs';

const E = os.constants.errno;

/** The error `fn` throws; fails the test if it does not throw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('FopError', () => {
  it('carries the code and the matching errno number', () => {
    const e = new FopError('ENOENT');
    expect(e).toBeInstanceOf(Error);
    expect(e).toBeInstanceOf(FopError);
    expect(e.name).toBe('FopError');
    expect(e.code).toBe('ENOENT');
    expect(e.errno).toBe(E.ENOENT);
    expect(e.message).toBe('ENOENT');
  });

  it('prefixes a message with the code', () => {
    const e = new FopError('EACCES', 'no way in');
    expect(e.code).toBe('EACCES');
    expect(e.errno).toBe(E.EACCES);
    expect(e.message).toBe('EACCES: no way in');
  });

  it('restores Error.stackTraceLimit after construction', () => {
    const before = Error.stackTraceLimit;
    new FopError('EIO', 'x');
    expect(Error.stackTraceLimit).toBe(before);
    // Ordinary errors still get a stack.
    expect(new Error('after').stack).toMatch(/core-errors\.test/);
  });

  it('isErrnoCode knows errno names and nothing else', () => {
    expect(isErrnoCode('ENOENT')).toBe(true);
    expect(isErrnoCode('EIO')).toBe(true);
    expect(isErrnoCode('enoent')).toBe(false);
    expect(isErrnoCode('ERR_INVALID_ARG_TYPE')).toBe(false);
    expect(isErrnoCode('toString')).toBe(false);
  });
});

describe('FopError.from', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir('xl-core-errors-');
  });
  afterAll(cleanupGraphs);

  it('turns a real ENOENT from fs.statSync into FopError ENOENT', () => {
    const missing = path.join(dir, 'no-such-file');
    const raw = thrown(() => fs.statSync(missing));
    const e = FopError.from(raw);
    expect(e).toBeInstanceOf(FopError);
    expect(e.code).toBe('ENOENT');
    expect(e.errno).toBe(E.ENOENT);
    expect(e.message.startsWith('ENOENT: ')).toBe(true);
    expect(e.message).toContain(missing);
  });

  it('turns a real EEXIST and ENOTDIR into their codes', () => {
    expect(FopError.from(thrown(() => fs.mkdirSync(dir))).code).toBe('EEXIST');
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, 'x');
    const e = FopError.from(thrown(() => fs.readdirSync(file)));
    expect(e.code).toBe('ENOTDIR');
    expect(e.errno).toBe(E.ENOTDIR);
  });

  it('returns a FopError unchanged', () => {
    const orig = new FopError('ESTALE', 'gone');
    expect(FopError.from(orig)).toBe(orig);
  });

  it('turns a plain Error into EIO, keeping its message', () => {
    const e = FopError.from(new Error('boom in a translator'));
    expect(e.code).toBe('EIO');
    expect(e.errno).toBe(E.EIO);
    expect(e.message).toContain('boom in a translator');
  });

  it('turns a Node error with a non-errno code into EIO', () => {
    const raw = thrown(() => fs.statSync({} as unknown as string)) as NodeJS.ErrnoException;
    expect(raw.code).toBe('ERR_INVALID_ARG_TYPE');
    const e = FopError.from(raw);
    expect(e.code).toBe('EIO');
    expect(e.message).toContain('ERR_INVALID_ARG_TYPE');
  });

  it.each([
    ['a string', 'just a string'],
    ['a number', 42],
    ['null', null],
    ['undefined', undefined],
    ['an object without code', { what: 'ever' }],
  ])('turns %s into EIO', (_label, value) => {
    const e = FopError.from(value);
    expect(e).toBeInstanceOf(FopError);
    expect(e.code).toBe('EIO');
    expect(e.errno).toBe(E.EIO);
  });

  it('keeps the text of a thrown string', () => {
    expect(FopError.from('disk on fire').message).toBe('EIO: disk on fire');
  });

  it('uses the code of a non-Error object that carries an errno name', () => {
    const e = FopError.from({ code: 'ENOSPC' });
    expect(e.code).toBe('ENOSPC');
    expect(e.errno).toBe(E.ENOSPC);
  });
});

describe('FopError.fromErrno', () => {
  it('maps positive and negative errno numbers to their names', () => {
    expect(FopError.fromErrno(E.ENOENT).code).toBe('ENOENT');
    expect(FopError.fromErrno(-E.EACCES).code).toBe('EACCES');
    expect(FopError.fromErrno(-E.EACCES).errno).toBe(E.EACCES);
    expect(FopError.fromErrno(E.ENOTEMPTY).code).toBe('ENOTEMPTY');
  });

  it('keeps the message', () => {
    expect(FopError.fromErrno(E.EEXIST, 'already there').message).toBe('EEXIST: already there');
  });

  it('maps an unknown number to EIO', () => {
    const e = FopError.fromErrno(987654);
    expect(e.code).toBe('EIO');
    expect(e.errno).toBe(E.EIO);
  });
});

describe('check', () => {
  it('does nothing when the condition holds', () => {
    expect(() => check(true, 'EINVAL')).not.toThrow();
    expect(() => check(1, 'EINVAL')).not.toThrow();
    expect(() => check('x', 'EINVAL')).not.toThrow();
    expect(() => check({}, 'EINVAL')).not.toThrow();
  });

  it.each([false, 0, '', null, undefined])('throws FopError with the code when the condition is %j', (cond) => {
    const e = thrown(() => check(cond, 'EINVAL', 'bad name'));
    expect(e).toBeInstanceOf(FopError);
    expect((e as FopError).code).toBe('EINVAL');
    expect((e as FopError).errno).toBe(E.EINVAL);
    expect((e as FopError).message).toBe('EINVAL: bad name');
  });

  it('throws without a message when none is given', () => {
    const e = thrown(() => check(false, 'ENAMETOOLONG')) as FopError;
    expect(e.code).toBe('ENAMETOOLONG');
    expect(e.message).toBe('ENAMETOOLONG');
  });
});
