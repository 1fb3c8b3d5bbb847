// Proves the workload runner (test/helpers/workload.ts) before it is used against an xlstack
// mount: two plain directories must give identical results, the results must say what a
// correct filesystem does, and a hanging step must be killed.

import * as fsp from 'fs/promises';
import * as os from 'os';
import { cleanupGraphs, tempDir } from '../helpers/graphs';
import {
  DEFAULT_STEPS,
  NONROOT_STEPS,
  WorkloadError,
  compareResults,
  resultOf,
  runNonRootWorkload,
  runWorkload,
  type StepResult,
} from '../helpers/workload';

const NOBODY = 65534;
// The workload needs root (chown, mknod, switching to another uid); the suite runs as root.

afterAll(cleanupGraphs);

describe('root workload on two plain directories', () => {
  let first: StepResult[];
  let second: StepResult[];

  beforeAll(async () => {
    [first, second] = await Promise.all([runWorkload(tempDir('xlstack-workload-')), runWorkload(tempDir('xlstack-workload-'))]);
  });

  test('runs every default step and gives identical results', () => {
    expect(first.map((r) => r.step)).toEqual([...DEFAULT_STEPS]);
    expect(compareResults(first, second, ['first', 'second'])).toEqual([]);
  });

  test('no step failed as a whole', () => {
    expect(first.filter((r) => 'error' in r.result)).toEqual([]);
  });

  test('nested-mkdir', () => {
    expect(resultOf(first, 'nested-mkdir')).toMatchObject({
      levels: { a: { mode: '0040755', nlink: 3 }, 'a/b/c/d': { mode: '0040755', nlink: 2 } },
      mode700: '0040700',
      mkdirExisting: 'EEXIST',
      mkdirRecursiveExisting: 'ok',
      mkdirUnderFile: 'ENOTDIR',
      rmdirNonEmpty: 'ENOTEMPTY',
      rmdirMissing: 'ENOENT',
      rmdirFile: 'ENOTDIR',
      statRemovedLeaf: 'ENOENT',
      parentAfterRmdir: { nlink: 2 },
      listingAfter: ['m700'],
    });
  });

  test('create, write, read, offsets, append, truncate', () => {
    expect(resultOf(first, 'create-write-read')).toMatchObject({
      content: 'hello world\n',
      info: { mode: '0100644', size: 12, nlink: 1, uid: 0, gid: 0 },
      afterOverwrite: 'hello WORLD\n',
      afterShorterRewrite: 'hi',
      mode640: '0100640',
      bigSize: 1024 * 1024 + 123,
      bigReadMatches: true,
      bigChunkedReadMatches: true,
    });
    expect(resultOf(first, 'pwrite-sparse')).toEqual({
      size: 100_004,
      at4096: { bytesRead: 4, text: 'BBBB' },
      acrossHoleEdge: { bytesRead: 6, text: '\0\0BBBB' },
      inHole: { bytesRead: 8, text: '\0'.repeat(8) },
      atTail: { bytesRead: 4, text: 'CCCC' },
      pastEof: { bytesRead: 0, text: '' },
      gapsZero: true,
      afterInnerOverwrite: { bytesRead: 4, text: 'BxyB' },
    });
    expect(resultOf(first, 'append')).toMatchObject({
      afterTwoWrites: 'one\ntwo\n',
      afterPositionalWrite: 'one\ntwo\nX',
      afterAppendFile: 'one\ntwo\nX\nthree\n',
      readInAplus: { text: 'one' },
      finalInfo: { size: 17 }, // + the 'Z' written through 'a+'
    });
    expect(resultOf(first, 'truncate')).toMatchObject({
      afterPathGrow: { size: 20, content: `abcdefghij${'\0'.repeat(10)}` },
      afterPathShrink: { size: 4, content: 'abcd' },
      afterFdGrow: { size: 8, content: 'abcd\0\0\0\0' },
      afterFdShrink: { size: 2, content: 'ab' },
      afterZero: { size: 0, content: '' },
      truncateMissing: 'ENOENT',
      truncateDir: 'EISDIR',
    });
    expect(resultOf(first, 'open-errors')).toMatchObject({
      exclOnExisting: 'EEXIST',
      openMissing: 'ENOENT',
      createInMissingDir: 'ENOENT',
      dirForWrite: 'EISDIR',
      dirForReadWrite: 'EISDIR',
      dirForRead: 'ok',
      readFromDirFd: 'EISDIR',
      fileWithTrailingSlash: 'ENOTDIR',
    });
  });

  test('rename', () => {
    expect(resultOf(first, 'rename')).toMatchObject({
      simple: 'ok',
      oldNameAfterSimple: 'ENOENT',
      newContent: 'first',
      targetContent: 'source',
      targetIsSourceInode: true,
      srcAfterOverwrite: 'ENOENT',
      movedDeepContent: 'y in d1/sub',
      oldDirGone: 'ENOENT',
      dirOverEmptyDir: 'ok',
      dirOverNonEmptyDir: 'ENOTEMPTY',
      fileOverDir: 'EISDIR',
      dirOverFile: 'ENOTDIR',
      missing: 'ENOENT',
      ontoItself: 'ok',
      subListingAfter: ['f2', 'y'],
    });
  });

  test('hard links and symlinks', () => {
    expect(resultOf(first, 'hardlinks')).toMatchObject({
      nlinkOrig: 2,
      nlinkLink: 2,
      sameIno: true,
      readThroughOrig: 'written through the link',
      nlinkWithThree: 3,
      linkInfoAfterUnlink: { nlink: 1 },
      contentAfterUnlink: 'written through the link',
      linkToExistingName: 'EEXIST',
      linkOfDirectory: 'EPERM',
      linkOfMissing: 'ENOENT',
    });
    expect(resultOf(first, 'symlinks')).toMatchObject({
      readlink: 'target',
      lstatIsLink: true,
      lstatInfo: { mode: '0120777', size: 6 },
      statFollows: { mode: '0100644', size: 14 },
      readViaDirLink: 'inner content',
      readViaUpLink: 'target content',
      readViaChain: 'target content',
      statDangling: 'ENOENT',
      lstatDangling: true,
      readlinkDangling: 'nowhere',
      readlinkOfFile: 'EINVAL',
      symlinkOverExisting: 'EEXIST',
      targetAfterWrite: 'written via link',
      targetSurvives: 'written via link',
    });
  });

  test('readdir', () => {
    expect(resultOf(first, 'readdir-large')).toEqual({
      createFailures: [],
      count: 1000,
      matchesExpected: true,
      missing: [],
      extra: [],
      opendirCount: 1000,
      unicodeNameContent: 'é-ü-ß 1',
    });
    expect(resultOf(first, 'readdir-types')).toEqual({
      fifo: 'ok',
      entries: ['a-file:file', 'b-dir:dir', 'c-link:symlink', 'd-dangling:symlink', 'e-fifo:fifo'],
    });
  });

  test('chmod, chown, utimes', () => {
    expect(resultOf(first, 'chmod')).toMatchObject({
      fileModes: ['0100600', '0100644', '0100755', '0100000', '0100777', '0100640'],
      rootReadsMode000: 'mode me',
      modeAfterFchmod: '0100604',
      dirModes: ['0040700', '0041777', '0040755'],
      targetModeViaLink: '0100611',
      linkOwnMode: '0120777',
      chmodMissing: 'ENOENT',
    });
    expect(resultOf(first, 'chown')).toMatchObject({
      afterToUser: { uid: 1234, gid: 5678 },
      afterGroupOnly: { uid: 1234, gid: 4321 },
      afterFchownBack: { uid: 0, gid: 0 },
      linkAfterLchown: { uid: 1111, gid: 2222 },
      targetAfterLchown: { uid: 0, gid: 0 },
      targetAfterChownThroughLink: { uid: 3333, gid: 4444 },
      linkAfterChownThroughLink: { uid: 1111, gid: 2222 },
      chownMissing: 'ENOENT',
    });
    expect(resultOf(first, 'utimes')).toMatchObject({
      first: { atimeMs: 1_600_000_000_125, mtimeMs: 1_600_000_000_125 },
      second: { atimeMs: 1_700_000_000_500, mtimeMs: 1_700_000_000_500 },
      asDate: { mtimeMs: 1_500_000_000_250 },
      epochZero: { atimeMs: 0, mtimeMs: 0 },
      year2100: { mtimeMs: 4_102_444_800_000 },
      afterFutimes: { mtimeMs: 1_650_000_000_250 },
      targetAfterThroughLink: { mtimeMs: 1_700_000_000_500 },
      linkAfterLutimes: { mtimeMs: 1_650_000_000_250 },
      targetAfterLutimes: { mtimeMs: 1_700_000_000_500 },
      mtimeAdvancedByWrite: true,
      utimesMissing: 'ENOENT',
    });
  });

  test('xattrs', () => {
    expect(resultOf(first, 'xattrs')).toMatchObject({
      set: 'ok',
      get: Buffer.concat([Buffer.from([0, 1, 0xfe, 0xff]), Buffer.from('hello')]).toString('base64'),
      roundtrip: true,
      getEmpty: '',
      largeRoundtrip: true,
      list: ['user.empty', 'user.large', 'user.other', 'user.test'],
      getReplaced: Buffer.from('replaced').toString('base64'),
      createFlagOnExisting: 'EEXIST',
      replaceFlagOnMissing: 'ENODATA',
      createFlagOnNew: 'ok',
      getMissing: { error: 'ENODATA' },
      remove: 'ok',
      getRemoved: { error: 'ENODATA' },
      removeAgain: 'ENODATA',
      listAfterRemove: ['user.created', 'user.empty', 'user.large', 'user.other'],
      getOnDir: Buffer.from('on a dir').toString('base64'),
      onMissingFile: { error: 'ENOENT' },
      getOnTargetAfterLinkSet: Buffer.from('via link').toString('base64'),
      setOnLinkItself: 'EPERM',
    });
  });

  test('unlink of an open file', () => {
    expect(resultOf(first, 'unlink-open-file')).toEqual({
      unlink: 'ok',
      readAfterUnlink: { bytesRead: 21, text: 'written before unlink' },
      fstatNlink: 0,
      statByName: 'ENOENT',
      writeAfterUnlink: 'ok',
      readAfterWrite: { bytesRead: 31, text: 'written before unlink and after' },
      ftruncate: 'ok',
      fchmod: 'ok',
      afterAttrChanges: { nlink: 0, size: 31, mode: '0100640' },
      reopenByName: 'ENOENT',
      listingAfterClose: ['keep'],
      fuseHiddenRemainsAfterClose: false,
      readViaSecondFd: { bytesRead: 7, text: 'two fds' },
      readOldAfterRenameOver: { bytesRead: 11, text: 'old content' },
      newByName: 'new content',
      listingAtEnd: ['keep', 'replaced'],
      fuseHiddenRemainsAtEnd: false,
    });
  });

  test('a directory handle across a rename of its directory', () => {
    expect(resultOf(first, 'directory-handles')).toEqual({
      rename: 'ok',
      fsync: 'ok',
      fstat: { isDirectory: true, nlink: 2 },
      fchmod: 'ok',
      movedMode: '0040750',
      listing: ['dir', 'moved'],
      inside: ['inside'],
    });
  });

  test('special files, statfs, error cases', () => {
    expect(resultOf(first, 'special-files')).toMatchObject({
      fifo: { isFIFO: true, mode: '0010644' },
      mkfifoExisting: 'EEXIST',
      chardev: { isCharacterDevice: true, mode: '0020644', major: 1, minor: 3 },
      renamedIsFifo: true,
      listing: ['fifo2'],
    });
    expect(resultOf(first, 'statfs')).toEqual({
      result: { ok: true, bsizePositive: true, blocksPositive: true, bavailLeBlocks: true },
    });
    expect(resultOf(first, 'error-cases')).toMatchObject({
      statMissing: 'ENOENT',
      lstatMissingInMissingDir: 'ENOENT',
      statThroughFile: 'ENOTDIR',
      createThroughFile: 'ENOTDIR',
      readdirOfFile: 'ENOTDIR',
      create255: 'ok',
      stat255: 3,
      create256: 'ENAMETOOLONG',
      stat256: 'ENAMETOOLONG',
      mkdir256: 'ENAMETOOLONG',
      renameTo256: 'ENAMETOOLONG',
      renameDirIntoOwnSubdir: 'EINVAL',
      rmdirOfFile: 'ENOTDIR',
      unlinkOfDir: 'EISDIR',
      renameAcrossDirs: 'ok',
      linkAcrossDirs: 'ok',
    });
  });

  test('compareResults reports a difference with its path', () => {
    const changed: StepResult[] = JSON.parse(JSON.stringify(first));
    (resultOf(changed, 'hardlinks') as { sameIno: boolean }).sameIno = false;
    expect(compareResults(first, changed, ['plain', 'fuse'])).toEqual(['hardlinks.sameIno: plain=true fuse=false']);
  });
});

describe('runWorkload options', () => {
  test('runs a subset of steps, in the given order', async () => {
    const results = await runWorkload(tempDir('xlstack-workload-'), { steps: ['symlinks', 'hardlinks'] });
    expect(results.map((r) => r.step)).toEqual(['symlinks', 'hardlinks']);
  });

  test('rejects unknown step names before spawning', async () => {
    await expect(runWorkload(os.tmpdir(), { steps: ['no-such-step'] })).rejects.toThrow(/unknown steps: no-such-step/);
  });

  test('a hanging step is killed by the timeout, with its stderr in the error', async () => {
    const started = Date.now();
    const err: unknown = await runWorkload(tempDir('xlstack-workload-'), { steps: ['statfs', 'sleep-forever'], timeoutMs: 1500 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkloadError);
    const werr = err as WorkloadError;
    expect(werr.message).toMatch(/timed out after 1500 ms/);
    expect(werr.message).toMatch(/while running step "sleep-forever"/);
    expect(werr.message).toMatch(/sleeping until killed/);
    expect(werr.completed.map((r) => r.step)).toEqual(['statfs']);
    expect(Date.now() - started).toBeLessThan(10_000);
    // the child is gone: signal 0 to its pid fails
    expect(() => process.kill(werr.pid as number, 0)).toThrow(/ESRCH/);
  });
});

describe('non-root workload on two plain directories', () => {
  test('gives identical results with the expected denials', async () => {
    const runOn = async (): Promise<StepResult[]> => {
      const dir = tempDir('xlstack-workload-');
      await fsp.chmod(dir, 0o755); // mkdtemp makes 0700: the other user must be able to search it
      return runNonRootWorkload(dir, { uid: NOBODY, gid: NOBODY });
    };
    const [a, b] = await Promise.all([runOn(), runOn()]);
    expect(a.map((r) => r.step)).toEqual(['prepare-nonroot', ...NONROOT_STEPS]);
    expect(compareResults(a, b)).toEqual([]);

    expect(resultOf(a, 'prepare-nonroot')).toMatchObject({
      private: { mode: '0040700', uid: 0 },
      'public/ro': { mode: '0100644', uid: 0 },
      tmp: { mode: '0041777' },
    });
    expect(resultOf(a, 'nonroot-private')).toEqual({
      readFile: 'EACCES',
      listDir: 'EACCES',
      statInside: 'EACCES',
      createInside: 'EACCES',
      statDirItself: '0040700',
    });
    expect(resultOf(a, 'nonroot-public')).toEqual({
      readRo: 'read only\n',
      openRoForWrite: 'EACCES',
      writeRo: 'EACCES',
      appendRo: 'EACCES',
      truncateRo: 'EACCES',
      roUnchanged: 'read only\n',
      writeRw: 'ok',
      readRw: 'written by another user\n',
      createInPublic: 'EACCES',
      mkdirInPublic: 'EACCES',
      unlinkInPublic: 'EACCES',
      renameInPublic: 'EACCES',
      listing: ['ro', 'rw'],
    });
    expect(resultOf(a, 'nonroot-attrs')).toEqual({
      chmodRo: 'EPERM',
      chownRo: 'EPERM',
      chownRw: 'EPERM',
      utimesRo: 'EPERM',
      utimesRw: 'EPERM',
      setxattrRo: 'EACCES',
      setxattrRw: 'ok',
      getxattrRoUnset: { error: 'ENODATA' },
      roAfter: { mode: '0100644', size: 10, nlink: 1, uid: 0, gid: 0 },
    });
    expect(resultOf(a, 'nonroot-sticky')).toEqual({
      unlinkRootFile: 'EPERM',
      renameRootFile: 'EPERM',
      writeRootFile: 'ok',
      rootFileContent: 'overwritten by another user\n',
      createOwn: 'ok',
      readOwn: 'mine\n',
      listing: ['mine', 'rootfile'],
    });
  });

  test('the non-root user cannot reach a root that is not searchable: clear error', async () => {
    const dir = tempDir('xlstack-workload-'); // 0700
    await expect(runWorkload(dir, { uid: NOBODY, gid: NOBODY, steps: NONROOT_STEPS })).rejects.toThrow(
      /cannot search the workload root as uid 65534: EACCES/,
    );
  });
});
