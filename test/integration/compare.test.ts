// The same operations on an xlstack mount and on a plain directory must give the same
// results and the same errnos, for root and for an unprivileged user, on both transports.
// Where fuse-native cannot do what a local disk does, the test says exactly what it does
// instead (the README's list of its limits, tested).
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { TestMount, POSIX_VOLFILE, startMount, statedump, waitFor } from '../helpers/mount';
import { runPyTool } from '../helpers/pytools';
import { cleanupScratch, scratchDir } from '../helpers/scratch';
import { DEFAULT_STEPS, Json, StepResult, StepValue, compareResults, resultOf, runNonRootWorkload, runWorkload } from '../helpers/workload';

const NOBODY = 65534;
/** The group of the non-root steps' setgid directory (workload-child's SGID_GROUP). */
const SGID_GROUP = 4242;

const TRACED_VOLFILE = `${POSIX_VOLFILE}
volume test-trace
    type debug/trace
    option log-history on
    subvolumes test-posix
end-volume
`;

const WRITE_BEHIND_VOLFILE = `${POSIX_VOLFILE}
volume test-wb
    type performance/write-behind
    subvolumes test-posix
end-volume
`;

const stacks: [string, string][] = [
  ['storage/posix alone', POSIX_VOLFILE],
  ['debug/trace over storage/posix', TRACED_VOLFILE],
  ['performance/write-behind over storage/posix', WRITE_BEHIND_VOLFILE],
];

type Transport = 'kernel' | 'fuse-native';
const transports: [Transport, string[]][] = [
  ['kernel', []],
  ['fuse-native', ['--transport', 'fuse-native']],
];

// --- what a local disk does, as the workload sees it ------------------------------------

/** `touch -d` in UTC, as nanoseconds since the epoch. */
const BASE_NS = '946684798500000000'; // 1999-12-31 23:59:58.5
const TOUCH_M_NS = '981173106123456789'; // 2001-02-03 04:05:06.123456789
const TOUCH_A_NS = '1015218367987654321'; // 2002-03-04 05:06:07.987654321
const LINK_NS = '1049522828000000001'; // 2003-04-05 06:07:08.000000001
const MiB = 1 << 20;

const hex = (...bytes: number[]) => Buffer.from(bytes).toString('hex');
/** UTF-8 of U+FFFD, what a decoder puts in place of each byte it cannot read. */
const REPLACEMENT = 'efbfbd';

/** pwrite/ftruncate past what the stack carries: refused as ext4 refuses past its limit, nothing changed. */
const PWRITE_LIMITS = {
  at2p53m1: 'EFBIG',
  at2p53: 'EFBIG',
  at2p62: 'EFBIG',
  at2p63m2: 'EFBIG',
  // offset + count overflows loff_t: the VFS refuses it before any filesystem sees it
  at2p63m1: 'EINVAL',
  truncateTo2p53: 'EFBIG',
  truncateTo2p62: 'EFBIG',
  readAt2p53: '',
  readAt2p62: '',
  sizeAfter: 10,
  contentAfter: '0123456789',
  contentAfterClose: '0123456789',
};

// --- what fuse-native does instead ------------------------------------------------------

const isObject = (v: Json | undefined): v is { [key: string]: Json } => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `base` with `changes` merged in (objects key by key; anything else replaced). */
function patched(base: Json, changes: Json): Json {
  if (!isObject(base) || !isObject(changes)) return changes;
  const out: { [key: string]: Json } = { ...base };
  for (const [k, v] of Object.entries(changes)) out[k] = patched(base[k], v);
  return out;
}

/**
 * What fuse-native gives, as changes to what the plain directory gave; every step and value
 * not named here must be as on the plain directory.
 */
function fuseNativeRoot(plain: StepResult[]): StepResult[] {
  const base = { atimeNs: BASE_NS, mtimeNs: BASE_NS };
  const before = resultOf(plain, 'fallocate').afterPosixFallocate;
  const changes: { [step: string]: StepValue } = {
    // libfuse2 drops a change of one time alone (the other UTIME_OMIT) and fuse-native passes
    // the access time as both times, in milliseconds: touch -m/-a change nothing, cp -p copies
    // the access time into both, touch -h loses the nanoseconds.
    'times-ns': {
      afterTouchM: base,
      afterTouchA: base,
      copy: base,
      linkTimes: { atimeNs: '1049522828000000000', mtimeNs: '1049522828000000000' },
      targetMtimeAfterLinkTouch: BASE_NS,
    },
    // Names are decoded as UTF-8: each byte that is not UTF-8 becomes U+FFFD, so b'f\xff\xfe'
    // and b'f\xfe\xff' are one file (the second create opened the first).
    'byte-names': {
      afterCreate: [`66${REPLACEMENT}${REPLACEMENT}`],
      readBad: 'second',
      afterRename: [`67${REPLACEMENT.repeat(3)}`],
      readMoved: 'second',
      inside: [`66${REPLACEMENT}${REPLACEMENT}`],
      symlink: 'EEXIST',
      readlink: { error: 'EINVAL' },
      unlinkTwin: 'ENOENT',
    },
    // No rename flags in libfuse2: the kernel answers EINVAL (it checks NOREPLACE over an
    // existing name itself, and an EXCHANGE with a missing name).
    'rename-flags': {
      noreplaceToNewName: 'EINVAL',
      afterNoreplaceNew: ['a', 'b', 'c', 'dir'],
      exchangeFiles: 'EINVAL',
      afterExchange: ['AAA', 'BBBBB'],
      exchangeFileAndDir: 'EINVAL',
      kindsAfter: ['file', 'dir'],
      insideMovedDir: { error: 'ENOTDIR' },
      listing: ['a', 'b', 'c', 'dir'],
    },
    // No fallocate: glibc's posix_fallocate writes the blocks itself; every mode is EOPNOTSUPP.
    fallocate: {
      keepSizePastEof: 'ENOTSUP',
      afterKeepSize: before,
      punchHole: 'ENOTSUP',
      afterPunch: before,
      punchedZeros: 0,
      zeroRange: 'ENOTSUP',
      afterZeroRange: before,
      zeroRangeZeros: 0,
      zerosInFile: 0,
    },
    // No lseek: the kernel takes the whole file for data.
    'seek-holes': {
      hole0: 3 * MiB,
      dataInHole: 8192,
      holeInData: 3 * MiB,
      dataAfterLast: MiB + 8192,
      holeAfterLast: 3 * MiB,
    },
  };
  return plain.map(({ step, result }) => ({ step, result: step in changes ? (patched(result, changes[step]) as StepValue) : result }));
}

/** No caller credentials: what a non-root user creates is the daemon's (root's). */
function fuseNativeNonRoot(plain: StepResult[]): StepResult[] {
  const owned = (gid: number) => {
    const owners: { [name: string]: Json } = {};
    for (const name of ['f', 'd', 'l', 'p', 'sg']) owners[name] = { uid: 0, gid };
    return {
      // root's directory is not writable by the user; mkfifo -m chmods what it made: not theirs
      made: { nested: 'EACCES', fifo: 'EPERM' },
      owners,
      chmodOwnFile: 'EPERM',
      modeAfterChmod: '0100644',
    };
  };
  const changes: { [step: string]: StepValue } = { 'nonroot-ownership': { own: owned(0), sgid: owned(SGID_GROUP) } };
  return plain.map(({ step, result }) => {
    if (!(step in changes)) return { step, result };
    const r = patched(result, changes[step]) as StepValue;
    // a directory that does not exist has no owner or mode
    for (const sub of ['own', 'sgid']) ((r[sub] as { owners: { [k: string]: Json } }).owners['d/n'] = { error: 'ENOENT' });
    return { step, result: r };
  });
}

// --- the runs -----------------------------------------------------------------------------

let plain: string;
let onPlain: StepResult[];
let onPlainNonRoot: StepResult[];

beforeAll(async () => {
  plain = scratchDir('xlstack-plain-');
  fs.chmodSync(plain, 0o755);
  onPlain = await runWorkload(plain);
  onPlainNonRoot = await runNonRootWorkload(plain, { uid: NOBODY, gid: NOBODY });
}, 120_000);

afterAll(cleanupScratch);

describe('the plain directory shows what Linux does (so comparing with it means something)', () => {
  test('exact times: touch -m/-a change one time, cp -p keeps both, to the nanosecond', () => {
    expect(resultOf(onPlain, 'times-ns')).toMatchObject({
      afterBase: { atimeNs: BASE_NS, mtimeNs: BASE_NS },
      afterTouchM: { atimeNs: BASE_NS, mtimeNs: TOUCH_M_NS },
      afterTouchA: { atimeNs: TOUCH_A_NS, mtimeNs: TOUCH_M_NS },
      copy: { atimeNs: TOUCH_A_NS, mtimeNs: TOUCH_M_NS },
      linkTimes: { atimeNs: LINK_NS, mtimeNs: LINK_NS },
      targetMtimeAfterLinkTouch: TOUCH_M_NS,
    });
  });

  test('names that are not UTF-8 come back byte for byte', () => {
    expect(resultOf(onPlain, 'byte-names')).toMatchObject({
      afterCreate: [hex(0x66, 0xfe, 0xff), hex(0x66, 0xff, 0xfe)],
      readBad: 'first',
      readTwin: 'second',
      afterRename: [hex(0x66, 0xfe, 0xff), hex(0x67, 0x80, 0xc0, 0xaf)],
      readMoved: 'first',
      readlink: hex(0x66, 0xff, 0xfe),
      atEnd: [],
    });
  });

  test('a tree deeper than PATH_MAX is made, used and removed through relative names', () => {
    expect(resultOf(onPlain, 'deep-tree')).toMatchObject({
      made: 40,
      write: 'ok',
      readMatches: true,
      bottomListing: ['link', 'sub'],
      statAbsolute: 'ENAMETOOLONG',
      relativeFromMiddle: 100_000,
      removals: [],
      listingAtEnd: [],
    });
  });

  test('renameat2: NOREPLACE refuses an existing name, EXCHANGE swaps', () => {
    expect(resultOf(onPlain, 'rename-flags')).toMatchObject({
      noreplaceOverFile: 'EEXIST',
      afterNoreplace: ['AAA', 'BBBBB'],
      noreplaceToNewName: 'ok',
      exchangeFiles: 'ok',
      afterExchange: ['BBBBB', 'AAA'],
      kindsAfter: ['dir', 'file'],
      insideMovedDir: 'in dir',
      bothFlags: 'EINVAL',
    });
  });

  test('fallocate allocates, punches and zeroes; SEEK_DATA/SEEK_HOLE find the holes', () => {
    const f = resultOf(onPlain, 'fallocate') as { [k: string]: { blocks: number } & Json };
    expect(f).toMatchObject({ posixFallocate: 'ok', punchHole: 'ok', zeroRange: 'ok', punchedZeros: 65536, zeroRangeZeros: 65536, untouchedAround: true });
    expect(f.afterPunch.blocks).toBeLessThan(f.afterKeepSize.blocks);
    expect(resultOf(onPlain, 'seek-holes')).toMatchObject({ data0: 0, hole0: 4096, dataInHole: MiB, holeInData: MiB + 4096, dataAfterLast: 'ENXIO' });
  });

  test('locks between processes: conflicts refused, F_GETLK names the holder, close releases, a signal interrupts', () => {
    expect(resultOf(onPlain, 'locks-posix')).toMatchObject({
      bConflict: 'EAGAIN',
      bGetlk: { type: 'write', start: 0, len: 100, pid: 'A' },
      bAfterAClosedAnFd: 'ok',
      cGetlkSeesB: { pid: 'B' },
      cAfterBClosed: 'ok',
    });
    expect(resultOf(onPlain, 'locks-flock')).toMatchObject({ bExclusive: 'EAGAIN', bAfterClose: 'ok', bSecondFdRefused: 'EAGAIN' });
    expect(resultOf(onPlain, 'lock-interrupt')).toMatchObject({ bBlocked: true, bResult: 'EINTR', cGetlkAfter: { type: 'unlock' }, cTakes: 'ok' });
  });

  test('what a non-root user creates is theirs, with the setgid directory\'s group', () => {
    const own = resultOf(onPlainNonRoot, 'nonroot-ownership') as { [sub: string]: { owners: Json } };
    expect(own.own.owners).toMatchObject({ f: { uid: NOBODY, gid: NOBODY }, d: { uid: NOBODY }, l: { uid: NOBODY }, p: { uid: NOBODY } });
    expect(own.sgid.owners).toMatchObject({
      f: { uid: NOBODY, gid: SGID_GROUP },
      d: { gid: SGID_GROUP, mode: '0042755' },
      'd/n': { gid: SGID_GROUP, mode: '0042755' },
      sg: { gid: SGID_GROUP, mode: '0100755' },
    });
  });
});

describe.each(transports)('%s transport', (transport, args) => {
  describe.each(stacks)('%s', (_name, volfile) => {
    let mnt: TestMount;

    beforeAll(async () => {
      mnt = await startMount({ volfile, args });
    });

    afterAll(() => mnt?.unmount());

    describe('as root', () => {
      let onMount: StepResult[];

      beforeAll(async () => {
        onMount = await runWorkload(mnt.mountpoint);
      }, 120_000);

      test('every step ran', () => {
        expect(onMount.map((r) => r.step)).toEqual([...DEFAULT_STEPS]);
      });

      if (transport === 'kernel') {
        test('the mount gives what the plain directory gives', () => {
          expect(compareResults(onPlain, onMount, ['plain', 'mount'])).toEqual([]);
        });
      } else {
        test('the mount gives what the plain directory gives, except for the limits of fuse-native', () => {
          expect(compareResults(fuseNativeRoot(onPlain), onMount, ['expected', 'mount'])).toEqual([]);
        });

        test('those limits are real: without them the comparison would fail', () => {
          const differs = new Set(compareResults(onPlain, onMount).map((d) => d.split(/[.:[]/)[0]));
          expect([...differs].sort()).toEqual(['byte-names', 'fallocate', 'rename-flags', 'seek-holes', 'times-ns']);
        });
      }

      test('hard links share st_ino and count their links on the mount', () => {
        const r = resultOf(onMount, 'hardlinks');
        expect(r.sameIno).toBe(true);
        expect(r.nlinkOrig).toBe(2);
        expect(r.nlinkLink).toBe(2);
      });

      test('a unix socket can be bound on the mount (mknod of a socket)', async () => {
        const sock = path.join(mnt.mountpoint, 'sock');
        const server = net.createServer();
        await new Promise<void>((resolve, reject) => server.once('error', reject).listen(sock, resolve));
        try {
          expect(fs.lstatSync(sock).isSocket()).toBe(true);
          expect(fs.lstatSync(path.join(mnt.backing, 'sock')).isSocket()).toBe(true);
        } finally {
          await new Promise((r) => server.close(r));
        }
      });

      test('pwrite at 2^53 and beyond fails (EFBIG) and changes nothing', async () => {
        expect(resultOf(await runWorkload(mnt.mountpoint, { steps: ['pwrite-limits'] }), 'pwrite-limits')).toEqual(PWRITE_LIMITS);
        expect(fs.readFileSync(path.join(mnt.backing, 'w', 'pwrite-limits', 'f'), 'latin1')).toBe('0123456789');
      });

      if (transport === 'kernel') {
        test('a blocked F_SETLKW that reached the daemon, interrupted by a signal: EINTR, and never granted', async () => {
          const dir = path.join(mnt.mountpoint, 'interrupt');
          fs.mkdirSync(dir, { recursive: true });
          const ready = path.join(mnt.dir, 'blocked');
          const go = path.join(mnt.dir, 'go');
          const f = path.join(dir, 'f');
          const run = runPyTool<StepValue>('lock-interrupt', [f, f, ready, go]);
          // The probe: the daemon's own lock table holds B's request (not just B asleep in fcntl).
          await waitFor(() => fs.existsSync(ready), 20_000, 'B to block in F_SETLKW');
          let waiting = 0;
          for (const end = Date.now() + 10_000; waiting === 0 && Date.now() < end; ) waiting = (await statedump(mnt)).localLocks.waiting ?? 0;
          expect(waiting).toBe(1);
          fs.writeFileSync(go, '');
          const r = await run;
          expect(r).toMatchObject({ bBlocked: true, go: true, bResult: 'EINTR', cGetlkAfter: { type: 'unlock' }, cTakes: 'ok', bRefusedNow: 'EAGAIN' });
          const after = (await statedump(mnt)).localLocks;
          expect(after.waiting).toBe(0);
        });
      }

      test('nothing of the storage layer shows through', () => {
        expect(fs.readdirSync(mnt.mountpoint)).not.toContain('.xlstack');
        expect(mnt.log()).not.toMatch(/ERROR/);
      });
    });

    describe('as an unprivileged user', () => {
      test(transport === 'kernel' ? 'is denied where the plain directory denies it, and owns what it creates' : 'is denied where the plain directory denies it; what it creates is root\'s', async () => {
        const onMount = await runNonRootWorkload(mnt.mountpoint, { uid: NOBODY, gid: NOBODY });
        const expected = transport === 'kernel' ? onPlainNonRoot : fuseNativeNonRoot(onPlainNonRoot);
        expect(compareResults(expected, onMount, ['expected', 'mount'])).toEqual([]);
        expect(JSON.stringify(onMount)).toContain('EACCES');
        expect(JSON.stringify(onMount)).toContain('EPERM');
      });
    });
  });
});
