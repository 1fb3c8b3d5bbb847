// Child process of test/integration/failover.test.ts: does I/O through an xlstack mount
// while the test kills and restarts the brick (and switches the client's graph). It is a
// separate process because blocking calls on a FUSE mount must not come from a process the
// mount depends on, and so that the test process stays free to kill bricks meanwhile.
//
// Modes (argv[2] is JSON, `mode` chooses):
// - read:  reads one file sequentially, pass after pass, through one fd held for the whole
//          run (O_DIRECT by default, so every read reaches the brick), paced by small pauses,
//          and checksums each pass; stops after the pass running when the stop file appears.
// - write: creates a file of `size` zero bytes, then pwrites seeded blocks (each one distinct)
//          at random explicit offsets until the stop file appears, keeping the expected
//          content in memory; then fsyncs, reads the file back through its fd, closes it and
//          writes the model to `modelFile`.
// - hold:  creates a file, keeps two fds on it open for the whole run (a plain read-write one
//          and an O_DIRECT read-only one) and, round after round, pwrites a seeded block
//          through the first and verifies it (and, every few rounds, the whole file) through
//          the second; fsyncs now and then; at the end verifies, closes and writes the model.
//
// stdout carries JSON lines: {"type":"ready"} once set up, {"type":"progress","n":N} as work
// gets done (N: reads, writes or rounds so far), {"type":"error","error":E} as soon as an
// operation fails, {"type":"paused"} and {"type":"resumed"} (hold, around its pause file),
// and last {"type":"result",...}. Errors are
// collected (with times, to match against the test's and the daemon's logs), never thrown.
// A watchdog reports any single operation pending longer than HANG_MS and exits, so a hang
// shows up as a result rather than as a test timeout.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import { Rng } from './rng';

/** One operation pending this long is a hang: report it and exit. */
const HANG_MS = 30_000;

interface Common {
  readonly file: string;
  readonly stopFile: string;
  /** The child gives up (reporting an error) after this long. */
  readonly maxMs: number;
  readonly pauseMs: number;
}

export interface ReadArgs extends Common {
  readonly mode: 'read';
  readonly chunk: number;
}

export interface WriteArgs extends Common {
  readonly mode: 'write';
  readonly size: number;
  readonly seed: number;
  readonly maxLen: number;
  readonly modelFile: string;
}

export interface HoldArgs extends Common {
  readonly mode: 'hold';
  readonly size: number;
  readonly block: number;
  readonly seed: number;
  readonly modelFile: string;
  /** While this file exists the holder does nothing on the mount (its fds stay open, idle). */
  readonly pauseFile?: string;
}

export type ChildArgs = ReadArgs | WriteArgs | HoldArgs;

export interface Pass {
  readonly sha256: string;
  readonly bytes: number;
  readonly ms: number;
}

export interface ChildResult {
  readonly type: 'result';
  readonly mode: ChildArgs['mode'];
  /** read: sha256 and size of the first pass; write/hold: of the expected content. */
  readonly sha256: string;
  readonly bytes: number;
  /** read: every pass. */
  readonly passes: Pass[];
  /** Reads, writes or rounds done. */
  readonly ops: number;
  readonly errors: string[];
  /** Data that differed from what was expected. */
  readonly mismatches: string[];
  readonly ms: number;
}

/** `len` seeded pseudo-random bytes: stream `stream` of seed `seed` (AES-128-CTR keystream). */
export function seededBytes(seed: number, stream: number, len: number): Buffer {
  const key = crypto.createHash('sha256').update(`xlstack failover ${seed}`).digest().subarray(0, 16);
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(stream >>> 0, 0);
  iv.writeUInt32BE(Math.floor(stream / 2 ** 32) >>> 0, 4);
  const c = crypto.createCipheriv('aes-128-ctr', key, iv);
  return Buffer.concat([c.update(Buffer.alloc(len)), c.final()]);
}

export const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const say = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
const now = () => new Date().toISOString();
const describe = (e: unknown) => `${(e as NodeJS.ErrnoException).code ?? 'no code'}: ${(e as Error).message}`;

/** The first range where `got` differs from `want`, or undefined. */
export function firstDifference(got: Buffer, want: Buffer, base = 0): string | undefined {
  const n = Math.min(got.length, want.length);
  let i = 0;
  while (i < n && got[i] === want[i]) i++;
  if (i === n && got.length === want.length) return undefined;
  let j = i;
  while (j < n && got[j] !== want[j]) j++;
  return `first difference at offset ${base + i} (${j - i} bytes differ from there; got ${got.length} bytes, expected ${want.length})`;
}

class Run {
  readonly errors: string[] = [];
  readonly mismatches: string[] = [];
  readonly start = Date.now();
  ops = 0;
  private pending?: { what: string; since: number };
  private readonly watchdog: NodeJS.Timeout;

  constructor(private readonly args: Common) {
    this.watchdog = setInterval(() => {
      const p = this.pending;
      if (p && Date.now() - p.since > HANG_MS) this.die(`${p.what}: pending for ${Date.now() - p.since} ms (since ${new Date(p.since).toISOString()}): hang`);
      if (Date.now() - this.start > args.maxMs + HANG_MS) this.die(`still running after ${Date.now() - this.start} ms`);
    }, 250);
  }

  get stopping(): boolean {
    return fs.existsSync(this.args.stopFile);
  }

  get overtime(): boolean {
    const over = Date.now() - this.start > this.args.maxMs;
    if (over && !this.errors.some((e) => e.includes('maxMs'))) this.error(`${now()} ran past maxMs (${this.args.maxMs} ms) without a stop file`);
    return over;
  }

  /** Runs one operation, timed by the watchdog; an error is recorded and returned as undefined. */
  async op<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    this.pending = { what, since: Date.now() };
    try {
      return await fn();
    } catch (e) {
      this.error(`${now()} ${what}: ${describe(e)}`);
      return undefined;
    } finally {
      this.pending = undefined;
    }
  }

  /** Records an error (and tells the test at once, in case this child never gets to report). */
  error(msg: string): void {
    this.errors.push(msg);
    say({ type: 'error', error: msg });
  }

  /** Like op, for operations that return nothing: whether it succeeded. */
  async ok(what: string, fn: () => Promise<unknown>): Promise<boolean> {
    const before = this.errors.length;
    await this.op(what, fn);
    return this.errors.length === before;
  }

  progress(): void {
    say({ type: 'progress', n: this.ops });
  }

  result(r: Omit<ChildResult, 'type' | 'errors' | 'mismatches' | 'ms' | 'ops'>): ChildResult {
    clearInterval(this.watchdog);
    return { type: 'result', ...r, ops: this.ops, errors: this.errors, mismatches: this.mismatches, ms: Date.now() - this.start };
  }

  private die(why: string): never {
    this.errors.push(`${now()} ${why}`);
    say({ type: 'result', mode: 'unknown', sha256: '', bytes: 0, passes: [], ops: this.ops, errors: this.errors, mismatches: this.mismatches, ms: Date.now() - this.start });
    process.exit(3);
  }
}

/** Reads [0, size) of `fh` in `chunk`s (no pauses), or undefined after an error. */
async function readAll(run: Run, what: string, fh: fsp.FileHandle, size: number, chunk = 1 << 20): Promise<Buffer | undefined> {
  const out = Buffer.alloc(size);
  let off = 0;
  while (off < size) {
    const r = await run.op(`${what} @${off}`, () => fh.read(out, off, Math.min(chunk, size - off), off));
    if (!r) return undefined;
    if (r.bytesRead === 0) return out.subarray(0, off);
    off += r.bytesRead;
  }
  return out;
}

async function read(args: ReadArgs): Promise<ChildResult> {
  const run = new Run(args);
  // O_DIRECT: every read reaches the daemon (and the brick), never the page cache.
  const flags = fs.constants.O_RDONLY | fs.constants.O_DIRECT;
  const fh = await run.op('open', () => fsp.open(args.file, flags));
  const passes: Pass[] = [];
  if (fh) {
    say({ type: 'ready' });
    const buf = Buffer.alloc(args.chunk);
    let failures = 0;
    while (passes.length < 1 || (!run.stopping && !run.overtime)) {
      const hash = crypto.createHash('sha256');
      const t0 = Date.now();
      let off = 0;
      for (;;) {
        const r = await run.op(`read @${off} (pass ${passes.length + 1})`, () => fh.read(buf, 0, args.chunk, off));
        if (!r) {
          // Try the same read again (the error is recorded), unless it keeps failing.
          if (++failures > 20) break;
          await sleep(100);
          continue;
        }
        run.ops++;
        if (run.ops % 16 === 0) run.progress();
        if (r.bytesRead === 0) break;
        hash.update(buf.subarray(0, r.bytesRead));
        off += r.bytesRead;
        if (args.pauseMs > 0 && !run.stopping) await sleep(args.pauseMs);
      }
      if (failures > 20) break;
      passes.push({ sha256: hash.digest('hex'), bytes: off, ms: Date.now() - t0 });
    }
    await run.op('close', () => fh.close());
  }
  return run.result({ mode: 'read', sha256: passes[0]?.sha256 ?? '', bytes: passes[0]?.bytes ?? 0, passes });
}

async function write(args: WriteArgs): Promise<ChildResult> {
  const run = new Run(args);
  const rnd = new Rng(args.seed);
  const model = Buffer.alloc(args.size);
  const fh = await run.op('create', () => fsp.open(args.file, 'w+'));
  if (fh && (await run.ok('ftruncate', () => fh.truncate(args.size)))) {
    say({ type: 'ready' });
    while (!run.stopping && !run.overtime && run.errors.length < 20) {
      const i = run.ops;
      const len = 1 + Math.floor(rnd.next() * args.maxLen);
      const off = Math.floor(rnd.next() * (args.size - len + 1));
      const data = seededBytes(args.seed, i + 1, len);
      const r = await run.op(`pwrite #${i} of ${len} bytes @${off}`, () => fh.write(data, 0, len, off));
      // Failed or not, the data may have reached the file: the model follows the attempt.
      data.copy(model, off);
      if (r && r.bytesWritten !== len) run.error(`${now()} pwrite #${i} @${off}: wrote ${r.bytesWritten} of ${len} bytes`);
      run.ops++;
      if (run.ops % 8 === 0) run.progress();
      if (args.pauseMs > 0) await sleep(args.pauseMs);
    }
    await run.op('fsync', () => fh.sync());
    const back = await readAll(run, 'read back', fh, args.size + 1);
    const diff = back && firstDifference(back, model);
    if (diff) run.mismatches.push(`read back through the writer's fd: ${diff}`);
    await run.op('close', () => fh.close());
  }
  fs.writeFileSync(args.modelFile, model);
  return run.result({ mode: 'write', sha256: sha256(model), bytes: model.length, passes: [] });
}

async function hold(args: HoldArgs): Promise<ChildResult> {
  const run = new Run(args);
  const rnd = new Rng(args.seed);
  const model = seededBytes(args.seed, 0, args.size);
  const w = await run.op('create', () => fsp.open(args.file, 'w+'));
  const ok = !!w && (await run.ok('initial write', () => w.write(model, 0, model.length, 0))) && (await run.ok('initial fsync', () => w.sync()));
  const r = ok ? await run.op('open O_DIRECT', () => fsp.open(args.file, fs.constants.O_RDONLY | fs.constants.O_DIRECT)) : undefined;
  if (w && r) {
    say({ type: 'ready' });
    const verify = async (what: string, fh: fsp.FileHandle) => {
      const got = await readAll(run, what, fh, args.size + 1, 256 * 1024);
      const diff = got && firstDifference(got, model);
      if (diff) run.mismatches.push(`${now()} ${what}: ${diff}`);
    };
    let paused = false;
    while (!run.stopping && !run.overtime && run.errors.length < 20) {
      if (args.pauseFile && fs.existsSync(args.pauseFile)) {
        if (!paused) say({ type: 'paused' });
        paused = true;
        await sleep(20);
        continue;
      }
      if (paused) say({ type: 'resumed' });
      paused = false;
      const round = run.ops + 1;
      const off = Math.floor(rnd.next() * (args.size - args.block + 1));
      const data = seededBytes(args.seed, round, args.block);
      await run.op(`round ${round}: pwrite @${off}`, () => w.write(data, 0, data.length, off));
      data.copy(model, off);
      const got = Buffer.alloc(args.block);
      const n = await run.op(`round ${round}: O_DIRECT read @${off}`, () => r.read(got, 0, args.block, off));
      if (n && (n.bytesRead !== args.block || !got.equals(data))) run.mismatches.push(`${now()} round ${round}: O_DIRECT read @${off}: ${firstDifference(got.subarray(0, n.bytesRead), data, off)}`);
      if (round % 5 === 0) await verify(`round ${round}: whole file through the O_DIRECT fd`, r);
      if (round % 7 === 0) {
        const st = await run.op(`round ${round}: fstat`, () => w.stat());
        if (st && st.size !== args.size) run.mismatches.push(`${now()} round ${round}: fstat says ${st.size} bytes, expected ${args.size}`);
      }
      if (round % 10 === 0) await run.op(`round ${round}: fsync`, () => w.sync());
      run.ops++;
      run.progress();
      if (args.pauseMs > 0) await sleep(args.pauseMs);
    }
    await run.op('final fsync', () => w.sync());
    await verify('final: whole file through the O_DIRECT fd', r);
    await verify('final: whole file through the read-write fd', w);
  }
  if (r) await run.op('close O_DIRECT fd', () => r.close());
  if (w) await run.op('close read-write fd', () => w.close());
  fs.writeFileSync(args.modelFile, model);
  return run.result({ mode: 'hold', sha256: sha256(model), bytes: model.length, passes: [] });
}

async function main(args: ChildArgs): Promise<ChildResult> {
  switch (args.mode) {
    case 'read':
      return read(args);
    case 'write':
      return write(args);
    case 'hold':
      return hold(args);
  }
}

if (require.main === module) {
  main(JSON.parse(process.argv[2]) as ChildArgs).then(
    (r) => {
      say(r);
      process.exit(0);
    },
    (e) => {
      process.stderr.write(`failover-child: ${(e as Error).stack}\n`);
      process.exit(2);
    },
  );
}
