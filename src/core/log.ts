export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace';

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };

export const LOG_LEVELS = Object.keys(RANK) as LogLevel[];

import * as fs from 'fs';

export type LogSink = (line: string) => void;

/**
 * stderr as a sink. A log line that cannot be written (the terminal went away, a closed
 * pipe) is dropped: a failed log write never takes a daemon down.
 */
let stderrGuarded = false;

export function stderrSink(): LogSink {
  if (!stderrGuarded) process.stderr.on('error', () => undefined);
  stderrGuarded = true;
  return (line) => {
    try {
      process.stderr.write(line + '\n');
    } catch {
      // nowhere to say it
    }
  };
}

/**
 * A log file, appended to line by line (created 0640). `reopen` starts writing to the file
 * at that path anew (after a rotation moved the old one away); failures to write are
 * dropped, failures to reopen keep the old file.
 */
export class FileSink {
  private fd: number;

  constructor(readonly path: string) {
    this.fd = FileSink.open(path);
  }

  private static open(path: string): number {
    const fd = fs.openSync(path, 'a', 0o640);
    fs.fchmodSync(fd, 0o640);
    return fd;
  }

  readonly write: LogSink = (line) => {
    try {
      fs.writeSync(this.fd, line + '\n');
    } catch {
      // a full disk must not stop the daemon
    }
  };

  reopen(): void {
    const old = this.fd;
    this.fd = FileSink.open(this.path);
    fs.closeSync(old);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/**
 * A logger with a fixed prefix (typically `name-graphId`, as GlusterFS logs name
 * translators). Children share the parent's level and sink.
 */
export class Logger {
  constructor(
    private readonly state: { level: LogLevel; sink: LogSink },
    readonly prefix = '',
  ) {}

  static create(level: LogLevel = 'info', sink: LogSink = stderrSink()): Logger {
    return new Logger({ level, sink });
  }

  child(prefix: string): Logger {
    return new Logger(this.state, this.prefix ? `${this.prefix} ${prefix}` : prefix);
  }

  set level(level: LogLevel) {
    this.state.level = level;
  }

  get level(): LogLevel {
    return this.state.level;
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] <= RANK[this.state.level];
  }

  error(msg: string): void {
    this.write('error', msg);
  }
  warn(msg: string): void {
    this.write('warn', msg);
  }
  info(msg: string): void {
    this.write('info', msg);
  }
  debug(msg: string): void {
    this.write('debug', msg);
  }
  trace(msg: string): void {
    this.write('trace', msg);
  }

  private write(level: LogLevel, msg: string): void {
    if (!this.enabled(level)) return;
    const p = this.prefix ? ` [${this.prefix}]` : '';
    this.state.sink(`${new Date().toISOString()} ${level.toUpperCase()}${p} ${msg}`);
  }
}
