import { spawn } from 'child_process';
import type { MountSpec, Mounted } from '../mounted';
import { KernelAdapter } from './adapter';
import { mountKernel } from './mount';
import { KernelSession } from './session';

/** How long the kernel may take to send INIT after the mount. */
const INIT_TIMEOUT_MS = 10_000;

/**
 * Serves a bridge core on a mountpoint over the kernel's FUSE protocol: mounts, answers INIT,
 * and serves from the event loop until the connection ends.
 */
export async function mountKernelTransport(spec: MountSpec): Promise<Mounted> {
  const mount = await mountKernel(spec.mountpoint, { fsname: spec.fsname, allowOther: true, defaultPermissions: true });
  const adapter = new KernelAdapter(spec.core, spec.log.child('fuse'), {
    entryTimeoutMs: spec.entryTimeoutMs,
    attrTimeoutMs: spec.attrTimeoutMs,
    negativeTimeoutMs: spec.negativeTimeoutMs,
    groupsTimeoutMs: 1000,
  });
  const session = new KernelSession(mount.fd, adapter, { log: spec.log.child('fuse'), busyPollUs: spec.busyPollUs });
  void session.closed.then(adapter.followInvalidations(session));
  try {
    session.start();
    await Promise.race([
      session.ready,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`the kernel sent no INIT within ${INIT_TIMEOUT_MS / 1000} s`)), INIT_TIMEOUT_MS).unref()),
    ]);
  } catch (e) {
    session.close('mount failed');
    await mount.unmount(true).catch(() => undefined);
    throw e;
  }
  if (mount.via === 'mount') watchForDeath(mount.mountpoint);
  return {
    transport: 'kernel',
    mountpoint: mount.mountpoint,
    ended: session.closed,
    unmount: (lazy) => mount.unmount(lazy),
    dump: () => ({ transport: 'kernel', ...session.dump(), invalidations: adapter.dumpInvalidations() }),
  };
}

/**
 * A mount made with mount(2) outlives a server that dies: every access then fails with
 * ENOTCONN until someone unmounts it. A small watcher outside this process (what
 * fusermount3's auto_unmount does) waits for this process to go, and if the mount it leaves
 * is dead, detaches it. A clean exit unmounts first, and the watcher finds a live directory.
 */
function watchForDeath(mountpoint: string): void {
  const script = 'read _ ; stat -- "$1" >/dev/null 2>&1 || umount -l -- "$1"';
  const child = spawn('/bin/sh', ['-c', script, 'xlstack-unmount-on-exit', mountpoint], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  child.on('error', () => undefined);
  child.unref();
  // Our end of its stdin stays open (and out of other children) until this process is gone.
  (child.stdin as unknown as { unref?: () => void }).unref?.();
}
