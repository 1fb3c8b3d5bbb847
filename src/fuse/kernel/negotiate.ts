// INIT: what this transport answers to what the kernel offers. Only bits the kernel offered
// and this transport implements are claimed (the kernel does not mask the reply, it tests
// bits); the limits follow the brief and the research (max_write 1 MiB, max_pages 256 capped
// by fs.fuse.max_pages_limit, max_readahead as offered, time_gran 1 ns).
import * as fs from 'fs';
import type { ConnInfo } from './fs';
import { Init, KERNEL_MAJOR, KERNEL_MINOR, KERNEL_MINOR_MIN, SIZE, WANTED_FLAGS } from './protocol';
import type { InitFlag, InitIn, InitOut } from './protocol';

export interface NegotiateOptions {
  /** max_write offered (the read buffers hold it plus 4096). */
  readonly maxWrite: number;
  /** max_pages asked for (default 256). */
  readonly maxPages?: number;
  /** The kernel's cap on max_pages. */
  readonly maxPagesLimit: number;
  readonly maxBackground?: number;
  readonly congestionThreshold?: number;
  readonly disable?: readonly InitFlag[];
}

export interface Negotiated {
  /** Set when the kernel is too old: answer EPROTO, and this is why. */
  readonly refuse?: string;
  readonly reply: InitOut;
  /** Bytes of init_out to send: all of it, or 8 (major and minor) to a newer major. */
  readonly replySize: number;
  /** What both sides agreed; absent when the reply only names our major. */
  readonly conn?: ConnInfo;
  readonly kernel: string;
}

export const DEFAULT_MAX_PAGES = 256;
/** Without MAX_PAGES the kernel keeps its default per request. */
const KERNEL_DEFAULT_MAX_PAGES = 32;
const PAGE_SIZE = 4096;
const DEFAULT_MAX_BACKGROUND = 64;
const DEFAULT_CONGESTION_THRESHOLD = 48;
const MAX_PAGES_LIMIT_SYSCTL = '/proc/sys/fs/fuse/max_pages_limit';

export function negotiate(k: InitIn, o: NegotiateOptions): Negotiated {
  const kernel = `${k.major}.${k.minor}`;
  const none: InitOut = { major: KERNEL_MAJOR, minor: KERNEL_MINOR, maxReadahead: 0, flags: 0n, maxBackground: 0, congestionThreshold: 0, maxWrite: 0, timeGran: 0, maxPages: 0 };
  // A newer major: say which we speak (8 bytes), as libfuse does, and wait for another INIT.
  if (k.major > KERNEL_MAJOR) return { reply: none, replySize: 8, kernel };
  if (k.major < KERNEL_MAJOR || k.minor < KERNEL_MINOR_MIN) {
    return { refuse: `kernel FUSE protocol ${kernel} is older than ${KERNEL_MAJOR}.${KERNEL_MINOR_MIN}`, reply: none, replySize: 0, kernel };
  }
  const disabled = new Set(o.disable ?? []);
  let want = 0n;
  for (const f of WANTED_FLAGS) if (!disabled.has(f)) want |= Init[f];
  const flags = k.flags & want;
  const maxPages = Math.max(1, Math.min(o.maxPages ?? DEFAULT_MAX_PAGES, o.maxPagesLimit));
  const minor = Math.min(k.minor, KERNEL_MINOR);
  const reply: InitOut = {
    major: KERNEL_MAJOR,
    minor,
    maxReadahead: k.maxReadahead,
    flags,
    maxBackground: o.maxBackground ?? DEFAULT_MAX_BACKGROUND,
    congestionThreshold: o.congestionThreshold ?? DEFAULT_CONGESTION_THRESHOLD,
    maxWrite: o.maxWrite,
    timeGran: 1,
    maxPages,
  };
  const pages = flags & Init.MAX_PAGES ? maxPages : KERNEL_DEFAULT_MAX_PAGES;
  const conn: ConnInfo = { major: KERNEL_MAJOR, minor, maxWrite: Math.min(o.maxWrite, pages * PAGE_SIZE), maxRead: pages * PAGE_SIZE, flags };
  return { reply, replySize: SIZE.init_out, conn, kernel };
}

/** The kernel's cap on max_pages (fs.fuse.max_pages_limit; 256 before it existed). */
export function maxPagesLimit(): number {
  try {
    const v = parseInt(fs.readFileSync(MAX_PAGES_LIMIT_SYSCTL, 'utf8'), 10);
    return v > 0 ? Math.min(v, 0xffff) : DEFAULT_MAX_PAGES;
  } catch {
    return DEFAULT_MAX_PAGES;
  }
}
