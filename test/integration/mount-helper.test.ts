// mount -t xlstack and /etc/fstab, as a GlusterFS user mounts with -t glusterfs: the
// mount.xlstack helper that `make install` puts in /sbin starts a daemon in the background
// and returns once it serves; umount ends it. Runs as root (make test installs the helper).
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { POSIX_VOLFILE, isMounted, waitFor } from '../helpers/mount';
import { cleanupScratch, scratchDir } from '../helpers/scratch';

const HELPER = '/sbin/mount.xlstack';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
      resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
    });
  });
}

interface Setup {
  readonly dir: string;
  readonly mnt: string;
  readonly vol: string;
  readonly back: string;
  readonly pidfile: string;
  readonly logFile: string;
}

const mounted: string[] = [];

function setup(volfile = POSIX_VOLFILE): Setup {
  const dir = scratchDir('xlstack-helper-');
  const mnt = path.join(dir, 'mnt');
  const back = path.join(dir, 'back');
  fs.mkdirSync(mnt);
  fs.mkdirSync(back);
  const vol = path.join(dir, 'site.vol');
  fs.writeFileSync(vol, volfile.replace(/@BACKING@/g, back));
  return { dir, mnt, vol, back, pidfile: path.join(dir, 'pid'), logFile: path.join(dir, 'log') };
}

/** The daemon of a pidfile has gone (bounded). */
async function daemonGone(pidfile: string): Promise<void> {
  await waitFor(() => !fs.existsSync(pidfile), 20_000, 'the daemon to exit and remove its pidfile');
}

afterEach(async () => {
  for (const m of mounted.splice(0)) if (isMounted(m)) await run('umount', ['-l', m]);
});

afterAll(cleanupScratch);

test('make install put the helper in place', () => {
  expect(fs.statSync(HELPER).mode & 0o111).not.toBe(0);
});

test('mount -t xlstack VOLFILE MOUNTPOINT -o ...: serves in the background once mount returns; umount ends the daemon', async () => {
  const s = setup();
  const r = await run('mount', ['-t', 'xlstack', s.vol, s.mnt, '-o', `pidfile=${s.pidfile},log-file=${s.logFile},attribute-timeout=2`]);
  mounted.push(s.mnt);
  expect(r).toMatchObject({ code: 0 });
  expect(isMounted(s.mnt)).toBe(true);
  const pid = Number(fs.readFileSync(s.pidfile, 'utf8'));
  expect(fs.statSync(s.pidfile).mode & 0o777).toBe(0o644);
  fs.writeFileSync(path.join(s.mnt, 'f'), 'through mount -t');
  expect(fs.readFileSync(path.join(s.back, 'f'), 'utf8')).toBe('through mount -t');
  // Detached from whoever ran mount: its own session, no terminal to hang up on it.
  expect(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[5]).toBe(String(pid));
  expect(fs.readFileSync(s.logFile, 'utf8')).toContain(`serving ${s.vol} on ${s.mnt}`);
  expect((await run('umount', [s.mnt])).code).toBe(0);
  await daemonGone(s.pidfile);
  expect(isMounted(s.mnt)).toBe(false);
});

test('an /etc/fstab line mounts the same way (mount --fstab FILE MOUNTPOINT)', async () => {
  const s = setup();
  const fstab = path.join(s.dir, 'fstab');
  fs.writeFileSync(fstab, `# a site volume\n${s.vol}  ${s.mnt}  xlstack  defaults,_netdev,pidfile=${s.pidfile},log-file=${s.logFile}  0  0\n`);
  const r = await run('mount', ['--fstab', fstab, s.mnt]);
  mounted.push(s.mnt);
  expect(r).toMatchObject({ code: 0 });
  fs.mkdirSync(path.join(s.mnt, 'd'));
  expect(fs.statSync(path.join(s.back, 'd')).isDirectory()).toBe(true);
  expect((await run('umount', [s.mnt])).code).toBe(0);
  await daemonGone(s.pidfile);
});

test('a volfile that does not check: mount fails with the problem, and nothing is mounted', async () => {
  const s = setup(`${POSIX_VOLFILE}\nvolume top\n    type debug/trace\n    subvolumes nosuch\nend-volume\n`);
  const r = await run('mount', ['-t', 'xlstack', s.vol, s.mnt, '-o', `log-file=${s.logFile}`]);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(/site\.vol:\d+: .*nosuch/);
  expect(isMounted(s.mnt)).toBe(false);
});

test('an unknown mount option is refused with its name', async () => {
  const s = setup();
  const r = await run('mount', ['-t', 'xlstack', s.vol, s.mnt, '-o', 'frobnicate=1']);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain("unknown mount option 'frobnicate=1'");
  expect(isMounted(s.mnt)).toBe(false);
});
