import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** Where a mount's control socket and statedumps live. */
export function runtimeDir(): string {
  if (process.getuid?.() === 0) return '/run/xlstack';
  const xdg = process.env.XDG_RUNTIME_DIR;
  return xdg ? path.join(xdg, 'xlstack') : path.join(os.tmpdir(), `xlstack-${process.getuid?.() ?? 'user'}`);
}

/** The absolute path of a mountpoint as given (not resolved through the mount itself). */
export function mountKey(mountpoint: string): string {
  return path.resolve(mountpoint);
}

/** The control socket of the daemon serving `mountpoint`. */
export function controlSocket(mountpoint: string): string {
  const h = createHash('sha256').update(mountKey(mountpoint)).digest('hex').slice(0, 20);
  return path.join(runtimeDir(), `${h}.sock`);
}

export function ensureRuntimeDir(): string {
  const dir = runtimeDir();
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/**
 * A new private directory for a supervisor's record (runtimeDir is on tmpfs: writing it costs
 * no disk I/O). Those a killed supervisor left (its pid gone) are removed first.
 */
export function recordDir(): string {
  const dir = ensureRuntimeDir();
  for (const name of fs.readdirSync(dir)) {
    const pid = /^record\.(\d+)$/.exec(name)?.[1];
    if (pid && Number(pid) !== process.pid && !alive(Number(pid))) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
  const mine = path.join(dir, `record.${process.pid}`);
  fs.rmSync(mine, { recursive: true, force: true });
  fs.mkdirSync(mine, { mode: 0o700 });
  return mine;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
