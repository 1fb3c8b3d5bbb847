// The engine's one door for translators: everything a translator may use, and nothing of
// the bridge, the transports or the CLI.
export { FopError, check, isErrnoCode } from './errors';
export type { ErrnoCode } from './errors';
export { CachingXlator } from './cache';
export { XlEvent } from './events';
export { Fd, reopenFlags } from './fd';
export { FOP_NAMES, gfidOfLoc, isFopName, locName } from './fops';
export type { FopArgs, FopName, FopResult, Fops, Loc } from './fops';
export { Frame } from './frame';
export type { FrameInit } from './frame';
export { processIdentity } from './identity';
export type { ProcessIdentity } from './identity';
export { Inode, InodeTable } from './inode';
export { LockTable } from './locktable';
export type { FdKey, LockOpts, LockOwner } from './locktable';
export type { Logger } from './log';
export { DEFAULT_LOCK_WAIT_MS, Mutex } from './mutex';
export { opt } from './options';
export type { OptionValues } from './options';
export { defineTranslator } from './registry';
export { Expired, sleep, systemClock, withDeadline } from './time';
export type { Clock, Timer } from './time';
export * from './types';
export { UPCALL_ALL } from './upcall';
export type { Upcall, UpcallEntry } from './upcall';
export { Xlator } from './xlator';
export type { XlatorHost, XlatorInit } from './xlator';

import type { Fd } from './fd';
import type { Frame, FrameInit } from './frame';
import type { Caller } from './types';
import type { XlatorHost } from './xlator';


/** Runs `fn` in a frame of `host`'s graph, counted while it runs (background work, reopens). */
export async function inFrame<T>(host: Pick<XlatorHost, 'frame'>, op: string, fn: (frame: Frame) => Promise<T>, who?: Caller | FrameInit): Promise<T> {
  const frame = host.frame(op, who);
  try {
    return await fn(frame);
  } finally {
    frame.done();
  }
}

/** A translator's typed state per fd (fd.ctx keyed by the translator). */
export class FdContext<T> {
  constructor(private readonly owner: object) {}

  get(fd: Fd): T | undefined {
    return fd.ctx.get(this.owner) as T | undefined;
  }

  set(fd: Fd, value: T): T {
    fd.ctx.set(this.owner, value);
    return value;
  }

  take(fd: Fd): T | undefined {
    const v = this.get(fd);
    fd.ctx.delete(this.owner);
    return v;
  }
}
