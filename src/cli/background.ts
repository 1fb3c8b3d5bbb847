import { spawn } from 'child_process';
import * as path from 'path';

/** How long a daemon started in the background may take to say it serves. */
const READY_TIMEOUT_MS = 60_000;

interface Readiness {
  readonly ready?: boolean;
  readonly error?: string;
}

/** Where a background mount logs when no --log-file is given (GlusterFS: /var/log/glusterfs/<mnt>.log). */
export function defaultLogFile(mountpoint: string): string {
  const name = mountpoint.replace(/^\/+/, '').replace(/\//g, '-') || 'root';
  return path.join(process.getuid?.() === 0 ? '/var/log/xlstack' : '/tmp', `${name}.log`);
}

/**
 * `xlstack mount --background` (what mount(8) and fstab need): starts the same command as a
 * daemon in a session of its own (no terminal to hang up on it), logging to a file, and
 * returns once it serves (0) or has failed (1, with its reason).
 */
export async function runInBackground(argv: string[], mountpoint: string): Promise<number> {
  const rest = argv.filter((a) => a !== '--background');
  if (!rest.some((a) => a === '--log-file' || a.startsWith('--log-file=') || /(^|,)log-file=/.test(a))) rest.push('--log-file', defaultLogFile(mountpoint));
  await import('fs').then((fs) => fs.mkdirSync(path.dirname(defaultLogFile(mountpoint)), { recursive: true, mode: 0o755 }));
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1], 'mount', ...rest], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  });
  const verdict = await new Promise<Readiness>((resolve) => {
    const timer = setTimeout(() => resolve({ error: `the daemon did not report serving within ${READY_TIMEOUT_MS / 1000} s` }), READY_TIMEOUT_MS);
    child.on('message', (m: Readiness) => (clearTimeout(timer), resolve(m)));
    child.on('exit', (code) => (clearTimeout(timer), resolve({ error: `the daemon exited (${code}) before serving` })));
    child.on('error', (e) => (clearTimeout(timer), resolve({ error: e.message })));
  });
  if (child.connected) child.disconnect();
  child.unref();
  if (verdict.ready) {
    process.stdout.write(`mounted ${mountpoint} (daemon pid ${child.pid})\n`);
    return 0;
  }
  process.stderr.write(`xlstack: ${verdict.error}\n`);
  return 1;
}

/** In a daemon started by runInBackground: tells the waiting command how it went, then lets go of it. */
export function tellParent(msg: Readiness): void {
  if (!process.send) return;
  process.send(msg, () => process.disconnect?.());
}
