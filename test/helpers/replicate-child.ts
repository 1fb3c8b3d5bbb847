// A workload process for the replicate integration test: in its own directory of a mount it
// creates, writes (pwrite, append), truncates, renames (within and across its directories,
// sometimes over an existing file), unlinks, hard-links, chmods, sets times and makes and
// removes directories, at seeded random, until its stop file appears. It keeps a model of
// what every file must hold and checks it: each verify reads a whole file through an
// O_DIRECT fd (so the read reaches the daemon, and replicate picks a copy) and compares
// content, size and mode with the model. Nothing is ever allowed to fail.
//
// argv[2] is JSON (ChildArgs). stdout carries JSON lines: {"type":"ready"}, {"type":"progress",
// "n"}, {"type":"error","error"} as soon as an operation fails, and last {"type":"result"}
// with the model: the test compares the bricks with it.
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';
import { seededBytes } from './failover-child';
import { Rng } from './rng';

/** One operation pending this long is a hang: report it and exit. */
const HANG_MS = 60_000;

export interface ChildArgs {
  readonly dir: string;
  readonly seed: number;
  readonly stopFile: string;
  readonly maxMs: number;
}

/** A file's expected state; `names` relative to the child's directory. */
export interface ModelFile {
  readonly id: number;
  names: string[];
  data: Buffer;
  mode: number;
  /** Set by the last utimes (seconds), undone by a later write. */
  mtime?: number;
}

export interface ChildResult {
  readonly type: 'result';
  readonly ops: number;
  readonly verified: number;
  readonly counts: Record<string, number>;
  readonly errors: string[];
  readonly mismatches: string[];
  /** Every file left, with its data as base64. */
  readonly files: { names: string[]; data: string; mode: number; mtime?: number }[];
  readonly dirs: string[];
}

const say = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
const now = () => new Date().toISOString();

async function main(args: ChildArgs): Promise<void> {
  const rnd = new Rng(args.seed);
  const files: ModelFile[] = [];
  const dirs = ['.', 'a', 'b'];
  const counts: Record<string, number> = {};
  const errors: string[] = [];
  const mismatches: string[] = [];
  let ops = 0;
  let verified = 0;
  let nextId = 0;
  let stream = 0;
  const start = Date.now();
  const abs = (rel: string) => path.join(args.dir, rel);
  const byName = (n: string) => files.find((f) => f.names.includes(n));
  const allNames = () => files.flatMap((f) => f.names);
  const freshName = (dir: string) => (dir === '.' ? `f${nextId++}` : `${dir}/f${nextId++}`);

  let pending: { what: string; since: number } | undefined;
  const watchdog = setInterval(() => {
    if (pending && Date.now() - pending.since > HANG_MS) {
      say({ type: 'error', error: `${now()} hang: ${pending.what} pending for ${HANG_MS} ms` });
      process.exit(3);
    }
  }, 1000);

  /** Runs one operation; a failure is recorded (never thrown). */
  const op = async (what: string, fn: () => Promise<void>): Promise<boolean> => {
    pending = { what, since: Date.now() };
    try {
      await fn();
      counts[what.split(' ')[0]] = (counts[what.split(' ')[0]] ?? 0) + 1;
      return true;
    } catch (e) {
      const msg = `${now()} ${what}: ${(e as NodeJS.ErrnoException).code ?? ''} ${(e as Error).message}`;
      errors.push(msg);
      say({ type: 'error', error: msg });
      return false;
    } finally {
      pending = undefined;
    }
  };

  const verify = async (f: ModelFile) => {
    const name = f.names[0];
    await op(`verify ${name}`, async () => {
      const fh = await fsp.open(abs(name), fs.constants.O_RDONLY | fs.constants.O_DIRECT);
      try {
        const st = await fh.stat();
        const buf = Buffer.alloc(f.data.length + 4096);
        let got = 0;
        for (;;) {
          const { bytesRead } = await fh.read(buf, got, Math.min(256 * 1024, buf.length - got), got);
          if (bytesRead === 0) break;
          got += bytesRead;
          if (got >= buf.length) break;
        }
        const data = buf.subarray(0, got);
        if (!data.equals(f.data)) mismatches.push(`${now()} ${name}: read ${got} bytes, expected ${f.data.length}${got === f.data.length ? ' (content differs)' : ''}`);
        if (st.size !== f.data.length) mismatches.push(`${now()} ${name}: size ${st.size}, expected ${f.data.length}`);
        if ((st.mode & 0o7777) !== f.mode) mismatches.push(`${now()} ${name}: mode ${(st.mode & 0o7777).toString(8)}, expected ${f.mode.toString(8)}`);
      } finally {
        await fh.close();
      }
    });
    verified++;
  };

  for (const d of dirs.slice(1)) await op(`mkdir ${d}`, () => fsp.mkdir(abs(d)));
  say({ type: 'ready' });
  while (!fs.existsSync(args.stopFile) && Date.now() - start < args.maxMs) {
    ops++;
    const kind = files.length < 4 ? 'create' : rnd.weighted({ create: 3, pwrite: 5, append: 2, truncate: 1, rename: 2, unlink: 1, link: 1, chmod: 1, utimes: 1, verify: 6, dirs: 1 });
    const f = files.length ? rnd.pick(files) : undefined;
    switch (kind) {
      case 'create': {
        const name = freshName(rnd.pick(dirs));
        const data = seededBytes(args.seed, stream++, rnd.range(0, 48 * 1024));
        if (await op(`create ${name}`, () => fsp.writeFile(abs(name), data, { flag: 'wx', mode: 0o644 }))) files.push({ id: files.length, names: [name], data, mode: 0o644 });
        break;
      }
      case 'pwrite':
      case 'append': {
        const m = f!;
        const at = kind === 'append' ? m.data.length : rnd.int(m.data.length + 2048);
        const data = seededBytes(args.seed, stream++, rnd.range(1, 16 * 1024));
        const ok = await op(`${kind} ${m.names[0]}@${at}+${data.length}`, async () => {
          const fh = await fsp.open(abs(m.names[0]), kind === 'append' ? 'a' : 'r+');
          try {
            await fh.write(data, 0, data.length, kind === 'append' ? null : at);
          } finally {
            await fh.close();
          }
        });
        if (ok) {
          const next = Buffer.alloc(Math.max(m.data.length, at + data.length));
          m.data.copy(next);
          data.copy(next, at);
          m.data = next;
          m.mtime = undefined;
        }
        break;
      }
      case 'truncate': {
        const m = f!;
        const size = rnd.int(m.data.length + 4096);
        if (await op(`truncate ${m.names[0]} ${size}`, () => fsp.truncate(abs(m.names[0]), size))) {
          const next = Buffer.alloc(size);
          m.data.copy(next, 0, 0, Math.min(size, m.data.length));
          m.data = next;
          m.mtime = undefined;
        }
        break;
      }
      case 'rename': {
        const m = f!;
        const from = rnd.pick(m.names);
        // Sometimes over another file's name (that file loses it).
        const victim = rnd.chance(0.3) ? rnd.pick(allNames().filter((n) => !m.names.includes(n))) : undefined;
        const to = victim ?? freshName(rnd.pick(dirs));
        if (await op(`rename ${from} ${to}`, () => fsp.rename(abs(from), abs(to)))) {
          const v = victim ? byName(victim) : undefined;
          if (v) v.names = v.names.filter((n) => n !== victim);
          m.names = m.names.map((n) => (n === from ? to : n));
          if (v && v.names.length === 0) files.splice(files.indexOf(v), 1);
        }
        break;
      }
      case 'unlink': {
        const m = f!;
        const name = rnd.pick(m.names);
        if (await op(`unlink ${name}`, () => fsp.unlink(abs(name)))) {
          m.names = m.names.filter((n) => n !== name);
          if (m.names.length === 0) files.splice(files.indexOf(m), 1);
        }
        break;
      }
      case 'link': {
        const m = f!;
        const to = freshName(rnd.pick(dirs));
        if (await op(`link ${m.names[0]} ${to}`, () => fsp.link(abs(m.names[0]), abs(to)))) m.names.push(to);
        break;
      }
      case 'chmod': {
        const m = f!;
        const mode = rnd.pick([0o600, 0o640, 0o644, 0o664, 0o700, 0o755]);
        if (await op(`chmod ${m.names[0]} ${mode.toString(8)}`, () => fsp.chmod(abs(m.names[0]), mode))) m.mode = mode;
        break;
      }
      case 'utimes': {
        const m = f!;
        const t = 1_600_000_000 + rnd.int(10_000_000);
        if (await op(`utimes ${m.names[0]} ${t}`, () => fsp.utimes(abs(m.names[0]), t - 5, t))) m.mtime = t;
        break;
      }
      case 'verify':
        await verify(f!);
        break;
      case 'dirs': {
        const d = `${rnd.pick(['a', 'b'])}/d${nextId++}`;
        if (await op(`mkdir ${d}`, () => fsp.mkdir(abs(d)))) await op(`rmdir ${d}`, () => fsp.rmdir(abs(d)));
        break;
      }
    }
    if (ops % 10 === 0) say({ type: 'progress', n: ops });
  }
  // Everything, once more, at the end.
  for (const m of files) await verify(m);
  clearInterval(watchdog);
  const result: ChildResult = {
    type: 'result',
    ops,
    verified,
    counts,
    errors,
    mismatches,
    files: files.map((m) => ({ names: m.names, data: m.data.toString('base64'), mode: m.mode, mtime: m.mtime })),
    dirs,
  };
  say(result);
}

if (require.main === module) {
  // Exits once stdout is written out (a pipe takes the long result line in pieces).
  const exit = (code: number) => process.stdout.write('', () => process.exit(code));
  main(JSON.parse(process.argv[2]) as ChildArgs).then(
    () => exit(0),
    (e) => {
      say({ type: 'error', error: `${now()} crashed: ${(e as Error).stack}` });
      exit(2);
    },
  );
}
