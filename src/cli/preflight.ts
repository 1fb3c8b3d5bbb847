import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

export class PreflightError extends Error {}

/** FUSE needs the kernel device and the fusermount helper (Debian: fuse + libfuse2). */
export function checkFuse(devFuse = '/dev/fuse'): void {
  try {
    fs.accessSync(devFuse, fs.constants.R_OK | fs.constants.W_OK);
  } catch (e) {
    throw new PreflightError(`FUSE is not available: cannot open ${devFuse} (${(e as NodeJS.ErrnoException).code}); load the fuse kernel module (modprobe fuse)`);
  }
  try {
    execFileSync('fusermount', ['-V'], { stdio: 'ignore', timeout: 5000 });
  } catch {
    throw new PreflightError('FUSE is not available: the fusermount helper was not found; install the Debian packages fuse and libfuse2 (apt-get install fuse libfuse2)');
  }
}

export interface MountEntry {
  readonly source: string;
  readonly mountpoint: string;
  readonly fstype: string;
}

/** /proc/self/mounts escapes space, tab, newline and backslash as octal. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)));

export function mounts(): MountEntry[] {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [source, mountpoint, fstype] = l.split(' ').map(unescape);
      return { source, mountpoint, fstype };
    });
}

/** The mount on exactly this directory, if any (the last one wins when stacked). */
export function mountAt(mountpoint: string): MountEntry | undefined {
  const abs = path.resolve(mountpoint);
  return mounts()
    .reverse()
    .find((m) => m.mountpoint === abs);
}

/** The mountpoint must be an existing directory with nothing mounted on it. */
export function checkMountpoint(mountpoint: string): void {
  const abs = path.resolve(mountpoint);
  const m = mountAt(abs);
  if (m) {
    const dead = isDeadMount(abs);
    throw new PreflightError(
      dead
        ? `mountpoint ${abs} is busy: a ${m.fstype} mount whose daemon is gone is still there (run: xlstack unmount ${abs})`
        : `mountpoint ${abs} is busy: ${m.source} (${m.fstype}) is already mounted there`,
    );
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PreflightError(code === 'ENOENT' ? `mountpoint ${abs} does not exist (create it with mkdir)` : `mountpoint ${abs}: ${code}`);
  }
  if (!st.isDirectory()) throw new PreflightError(`mountpoint ${abs} is not a directory`);
}

export function isDeadMount(mountpoint: string): boolean {
  try {
    fs.statSync(mountpoint);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOTCONN';
  }
}
