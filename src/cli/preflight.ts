import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

export class PreflightError extends Error {}

function hasProgram(name: string): boolean {
  try {
    execFileSync(name, ['-V'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * What a transport needs: the kernel device (both), fusermount for fuse-native (libfuse2
 * unmounts through it) and for the kernel transport when not root (Debian: fuse3 provides
 * fusermount3 and fusermount; fuse provides fusermount).
 */
export function checkFuse(transport: 'kernel' | 'fuse-native', devFuse = '/dev/fuse'): void {
  try {
    fs.accessSync(devFuse, fs.constants.R_OK | fs.constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PreflightError(
      code === 'ENOENT'
        ? `FUSE is not available: there is no ${devFuse}; load the fuse kernel module (modprobe fuse)`
        : `FUSE is not available: no permission to open ${devFuse} (${code}): a permission problem (the device's owner and mode, or a container's device policy), not a missing module`,
    );
  }
  const root = process.getuid?.() === 0;
  if (transport === 'kernel' && (root || hasProgram('fusermount3') || hasProgram('fusermount'))) return;
  if (transport === 'fuse-native' && hasProgram('fusermount')) return;
  throw new PreflightError(
    `FUSE is not available: the fusermount helper was not found (${transport === 'kernel' ? 'needed when not root' : 'fuse-native unmounts through it'}); install the Debian package fuse3 (or fuse, which replaces it)`,
  );
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
