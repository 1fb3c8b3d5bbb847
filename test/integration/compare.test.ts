// The same operations on an xlstack mount and on a plain directory must give the same
// results and the same errnos, for root and for an unprivileged user.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { TestMount, POSIX_VOLFILE, startMount } from '../helpers/mount';
import { cleanupScratch, scratchDir } from '../helpers/scratch';
import { DEFAULT_STEPS, StepResult, compareResults, resultOf, runNonRootWorkload, runWorkload } from '../helpers/workload';

const NOBODY = 65534;

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

describe.each(stacks)('%s', (_name, volfile) => {
  let mnt: TestMount;
  let plain: string;

  beforeAll(async () => {
    mnt = await startMount({ volfile });
    plain = scratchDir('xlstack-plain-');
    fs.chmodSync(plain, 0o755);
  });

  afterAll(cleanupScratch);

  describe('as root', () => {
    let onMount: StepResult[];
    let onPlain: StepResult[];

    beforeAll(async () => {
      onPlain = await runWorkload(plain);
      onMount = await runWorkload(mnt.mountpoint);
    });

    test('every step ran', () => {
      expect(onMount.map((r) => r.step)).toEqual([...DEFAULT_STEPS]);
    });

    test('the mount gives what the plain directory gives', () => {
      expect(compareResults(onPlain, onMount, ['plain', 'mount'])).toEqual([]);
    });

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

    test('nothing of the storage layer shows through', () => {
      expect(fs.readdirSync(mnt.mountpoint)).not.toContain('.xlstack');
      expect(mnt.log()).not.toMatch(/ERROR/);
    });
  });

  describe('as an unprivileged user', () => {
    test('is denied exactly where the plain directory denies it', async () => {
      const onPlain = await runNonRootWorkload(plain, { uid: NOBODY, gid: NOBODY });
      const onMount = await runNonRootWorkload(mnt.mountpoint, { uid: NOBODY, gid: NOBODY });
      expect(compareResults(onPlain, onMount, ['plain', 'mount'])).toEqual([]);
      expect(JSON.stringify(onMount)).toContain('EACCES');
      expect(JSON.stringify(onMount)).toContain('EPERM');
    });
  });
});
