import * as fs from 'fs';
import * as path from 'path';

/** An active poll on an fd (opaque). */
export type PollHandle = { readonly __poll: unique symbol };
/** A notification writer thread (opaque). */
export type NotifierHandle = { readonly __notifier: unique symbol };

/**
 * The system calls of dev.c. Every call that can fail returns -errno instead of throwing
 * (only a wrong argument type throws): the request loop never pays for an exception.
 */
export interface Dev {
  /** One read(2) into the whole of `buf`: the byte count, or -errno. */
  read(fd: number, buf: Buffer): number;
  /** One writev(2) of buf[0, len) and extra[0, extraLen) (all of extra if extraLen is absent). */
  write(fd: number, buf: Buffer, len: number, extra?: Buffer, extraLen?: number): number;
  close(fd: number): number;
  mount(source: string, target: string, fstype: string, flags: number, data: string): number;
  /** umount2(2) on the libuv pool (an unmount may need this process to answer the kernel). */
  umount2(target: string, flags: number): Promise<number>;
  /** Both ends close-on-exec: [a, b], or -errno. */
  socketpair(type: number): [number, number] | number;
  /** The fd passed with SCM_RIGHTS (close-on-exec), without blocking: fd, or -errno (-ENOMSG: the peer closed). */
  recvFd(sock: number): number;
  setNonblock(fd: number): number;
  /**
   * `cb(status, events)` on the loop thread whenever `fd` is readable; status < 0 is a libuv
   * error (UV_EBADF on POLLERR). After each, the loop polls without sleeping for `spinUs`
   * microseconds (0: never), doing everything else it does as usual.
   */
  pollStart(fd: number, cb: (status: number, events: number) => void, spinUs: number): PollHandle | number;
  /** The same busy window, from now: everything is answered, the next request may come soon. Stopped: nothing. */
  pollSpin(h: PollHandle): void;
  /** After this the fd is out of epoll and may be closed. A second call does nothing. */
  pollStop(h: PollHandle): void;
  /** A thread that owns a dup of `fd` and writes what it is given, in order. */
  notifierOpen(fd: number): NotifierHandle | number;
  /** Copies `buf`; resolves with the byte count or -errno (never rejects). */
  notifierWrite(h: NotifierHandle, buf: Buffer): Promise<number>;
  /** Queued writes resolve -EBADF; the thread ends after the write in progress. A second call does nothing. */
  notifierClose(h: NotifierHandle): void;
}

export const SOCK_STREAM = 1;
export const SOCK_SEQPACKET = 5;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MNT_DETACH = 2;

/** node-gyp builds the addon into build/Release at the package root. */
function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (dir === path.dirname(dir)) throw new Error(`no package.json above ${from}`);
  }
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const dev: Dev = require(path.join(packageRoot(__dirname), 'build', 'Release', 'fuse_dev.node'));
