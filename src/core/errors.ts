import { constants } from 'os';

export type ErrnoCode = keyof typeof constants.errno;

const CODE_BY_ERRNO = new Map<number, ErrnoCode>(
  (Object.entries(constants.errno) as [ErrnoCode, number][]).map(([code, n]) => [n, code]),
);

export function isErrnoCode(code: string): code is ErrnoCode {
  return Object.prototype.hasOwnProperty.call(constants.errno, code);
}

/**
 * The one error a fop may throw: a POSIX errno and a message for the log.
 * The FUSE bridge turns it into -errno; nothing else crosses that boundary.
 */
export class FopError extends Error {
  readonly code: ErrnoCode;
  readonly errno: number;
  /** The message without its code (what travels to a peer, which adds the code back). */
  readonly detail?: string;

  constructor(code: ErrnoCode, message?: string) {
    // An errno is an answer, not a bug: a stack trace would cost more than most fops.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ? `${code}: ${message}` : code);
    Error.stackTraceLimit = limit;
    this.name = 'FopError';
    this.code = code;
    this.errno = constants.errno[code];
    this.detail = message;
  }

  static fromErrno(errno: number, message?: string): FopError {
    return new FopError(CODE_BY_ERRNO.get(Math.abs(errno)) ?? 'EIO', message);
  }

  /** Turns whatever was thrown (a Node fs error, a bug) into a FopError. */
  static from(err: unknown): FopError {
    if (err instanceof FopError) return err;
    const code = (err as { code?: unknown })?.code;
    if (typeof code === 'string' && isErrnoCode(code)) {
      return new FopError(code, (err as Error).message);
    }
    return new FopError('EIO', err instanceof Error ? err.stack ?? err.message : String(err));
  }
}

/** Throws a FopError unless `cond` holds. */
export function check(cond: unknown, code: ErrnoCode, message?: string): asserts cond {
  if (!cond) throw new FopError(code, message);
}
