// What the network tests leave behind, taken down in one afterAll: child processes they
// spawned, raw connections, mounts, bricks, and scratch directories.
import type { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { stopBricks } from './brick';
import { unmountAll } from './mount';
import { closeRawConns } from './raw-peer';

const dirs: string[] = [];
const children: ChildProcess[] = [];

/** A fresh directory under the system's temp dir, removed by cleanupScratch. */
export function scratchDir(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** A child process to SIGKILL in cleanupScratch if it is still running then. */
export function track<T extends ChildProcess>(child: T): T {
  children.push(child);
  return child;
}

/** How many children were tracked so far (for unique names). */
export const tracked = () => children.length;

/** Whether a process (a brick, a daemon) still runs. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function cleanupScratch(): Promise<void> {
  closeRawConns();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await unmountAll();
  await stopBricks();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}
