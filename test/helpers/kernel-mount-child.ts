// A child for mount tests, run as whichever user the test chooses:
//   node kernel-mount-child.js serve MOUNTPOINT [via]
//     mounts a MemFs, writes and reads a file and stats the root through child processes,
//     unmounts, waits for the session to end, prints one JSON line with what it saw.
//   node kernel-mount-child.js fail MOUNTPOINT [via]
//     tries to mount and prints the MountError ({code, message}) as one JSON line.
import { execFile } from 'child_process';
import { withDeadline } from '../../src/core/time';
import { Logger } from '../../src/core/log';
import { mountKernel } from '../../src/fuse/kernel/mount';
import type { MountVia } from '../../src/fuse/kernel/mount';
import { KernelSession } from '../../src/fuse/kernel/session';
import { MemFs } from './memfs';

const BOUND_MS = 15_000;

const sh = (script: string, ...args: string[]): Promise<string> =>
  new Promise((resolve, reject) => {
    execFile('sh', ['-c', script, 'sh', ...args], { timeout: BOUND_MS, cwd: '/' }, (e, out, err) => (e ? reject(new Error(`${script}: ${err || e.message}`)) : resolve(out)));
  });

async function main(): Promise<void> {
  const [mode, mnt, via] = process.argv.slice(2);
  const opts = { fsname: 'memfs-child', via: via as MountVia | undefined };
  if (mode === 'fail') {
    try {
      const m = await mountKernel(mnt, opts);
      await m.unmount(true);
      console.log(JSON.stringify({ mounted: true }));
    } catch (e) {
      console.log(JSON.stringify({ code: (e as { code?: string }).code, message: (e as Error).message }));
    }
    return;
  }
  const m = await mountKernel(mnt, opts);
  const session = new KernelSession(m.fd, new MemFs(), { log: Logger.create('warn') });
  session.start();
  try {
    await withDeadline(session.ready, BOUND_MS, 'INIT');
    const io = await sh('echo hi > "$1/f" && cat "$1/f" && stat -c "%i %F" "$1"', mnt);
    await withDeadline(m.unmount(false), BOUND_MS, 'unmount');
    const closed = await withDeadline(session.closed, BOUND_MS, 'the session to end');
    console.log(JSON.stringify({ via: m.via, io, closed }));
  } finally {
    session.close('child done');
  }
}

main().catch((e) => {
  console.log(JSON.stringify({ error: (e as Error).message }));
  process.exitCode = 1;
});
