export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace';

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };

export const LOG_LEVELS = Object.keys(RANK) as LogLevel[];

export type LogSink = (line: string) => void;

/**
 * A logger with a fixed prefix (typically `name-graphId`, as GlusterFS logs name
 * translators). Children share the parent's level and sink.
 */
export class Logger {
  constructor(
    private readonly state: { level: LogLevel; sink: LogSink },
    readonly prefix = '',
  ) {}

  static create(level: LogLevel = 'info', sink: LogSink = (l) => process.stderr.write(l + '\n')): Logger {
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
