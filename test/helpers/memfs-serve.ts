// Serves a MemFs over the kernel transport on MOUNTPOINT until unmounted or signalled
// (SIGINT/SIGTERM: unmount, lazily if busy). For measurements and manual checks:
//   node dist/test/helpers/memfs-serve.js MOUNTPOINT [--no=FLAG,...] [--ttl=MS] [--reads=N]
// Prints "ready" once INIT is answered, the request counts on SIGUSR2, and the session's
// statedump when it ends.
import { Logger } from '../../src/core/log';
import { mountKernel } from '../../src/fuse/kernel/mount';
import type { InitFlag } from '../../src/fuse/kernel/protocol';
import { KernelSession } from '../../src/fuse/kernel/session';
import { MemFs } from './memfs';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const mnt = args.find((a) => !a.startsWith('--'));
  if (!mnt) throw new Error('usage: memfs-serve MOUNTPOINT [--no=FLAG,...] [--ttl=MS]');
  const opt = (name: string): string | undefined => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const disable = (opt('no')?.split(',').filter(Boolean) ?? []) as InitFlag[];
  const ttl = opt('ttl');
  const memfs = new MemFs({ ttlMs: ttl === undefined ? undefined : Number(ttl) });
  const m = await mountKernel(mnt, { fsname: 'memfs', allowOther: true });
  const rpe = opt('reads');
  const session = new KernelSession(m.fd, memfs, { log: Logger.create('warn').child('memfs'), disable, readsPerEvent: rpe === undefined ? undefined : Number(rpe) });
  session.start();
  const stop = (): void => {
    m.unmount(false).catch(() => m.unmount(true)).catch((e) => console.error(`unmount: ${(e as Error).message}`));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGUSR2', () => console.log(JSON.stringify(session.dump().requests)));
  await session.ready;
  console.log('ready');
  const reason = await session.closed;
  console.log(JSON.stringify({ reason, ...session.dump() }));
}

main().catch((e) => {
  console.error((e as Error).message);
  process.exit(1);
});
