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
