// Child process of test/integration/brick-crash.test.ts: a namespace workload through a
// mount (mkdir, create+write, append, rename, link, unlink, rmdir, chmod), seeded, in its own
// subtree, while the test kills and restarts the brick. It keeps a model of what the tree
// must be (updated after each operation succeeds) and writes it out at the end; every
// failing operation is reported, never retried.
//
// argv[2] is JSON (Args). stdout carries JSON lines: {"type":"ready"}, {"type":"progress","n":N},
// {"type":"error","error":E} as soon as an operation fails, and last {"type":"result",...}.
// A watchdog reports an operation pending longer than HANG_MS and exits, so a hang shows up
// as a result rather than as a test timeout.
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';
import { Rng } from './rng';

const HANG_MS = 30_000;

export interface Args {
  /** The mount's root. */
  readonly root: string;
  /** This process's subtree: `root/<name>`. */
  readonly name: string;
  readonly seed: number;
  readonly stopFile: string;
  readonly modelFile: string;
  readonly maxMs: number;
}

/** The tree as it must be: directories with their mode, names with their file (inode) id. */
export interface Model {
  readonly dirs: Record<string, number>;
  readonly names: Record<string, number>;
  readonly files: Record<number, { mode: number; content: string }>;
}

export interface Result {
  readonly type: 'result';
  readonly ops: number;
  readonly counts: Record<string, number>;
  readonly errors: string[];
  /** The longest any operation took (the pause a crash cost), and which. */
  readonly longestMs: number;
  readonly longest: string;
}

const out = (m: object) => process.stdout.write(JSON.stringify(m) + '\n');

async function main(a: Args): Promise<void> {
  process.umask(0);
  const rnd = new Rng(a.seed);
  const dirs = new Map<string, number>();
  const names = new Map<string, number>();
  const files = new Map<number, { mode: number; content: string }>();
  const errors: string[] = [];
  const counts: Record<string, number> = {};
  let n = 0;
  let longestMs = 0;
  let longest = '';
  let pending: { what: string; since: number } | undefined;
  const abs = (p: string) => path.join(a.root, p);
  const pick = <T>(xs: T[]): T | undefined => (xs.length ? xs[rnd.int(xs.length)] : undefined);
  const under = (d: string, p: string) => p === d || p.startsWith(d + '/');

  const watchdog = setInterval(() => {
    if (pending && Date.now() - pending.since > HANG_MS) {
      out({ type: 'error', error: `${pending.what}: pending for over ${HANG_MS} ms` });
      out({ type: 'result', ops: n, counts, errors: [...errors, `${pending.what}: hung`], longestMs: Date.now() - pending.since, longest: pending.what });
      process.exit(1);
    }
  }, 1000);

  const run = async (what: string, fn: () => Promise<void>, update: () => void): Promise<void> => {
    pending = { what, since: Date.now() };
    try {
      await fn();
      update();
      counts[what.split(' ')[0]] = (counts[what.split(' ')[0]] ?? 0) + 1;
    } catch (e) {
      const msg = `${new Date().toISOString()} ${what}: ${(e as Error).message}`;
      errors.push(msg);
      out({ type: 'error', error: msg });
    } finally {
      const took = Date.now() - pending!.since;
      if (took > longestMs) [longestMs, longest] = [took, what];
      pending = undefined;
    }
  };

  await fsp.mkdir(abs(a.name), 0o755);
  dirs.set(a.name, 0o755);
  out({ type: 'ready' });
  const end = Date.now() + a.maxMs;
  while (!fs.existsSync(a.stopFile) && errors.length < 20) {
    if (Date.now() > end) {
      errors.push(`not stopped within ${a.maxMs} ms`);
      break;
    }
    n++;
    const dirList = [...dirs.keys()];
    const nameList = [...names.keys()];
    const r = rnd.int(100);
    const dir = pick(dirList)!;
    if (r < 12 && dirs.size < 16) {
      const p = `${dir}/d${n}`;
      await run(`mkdir ${p}`, () => fsp.mkdir(abs(p), 0o755), () => dirs.set(p, 0o755));
    } else if (r < 32 && names.size < 60) {
      const p = `${dir}/f${n}`;
      const content = `${a.name}:${n};`.repeat(1 + rnd.int(400));
      // O_EXCL: a create sent twice must not find its own file in the way.
      await run(`create ${p}`, () => fsp.writeFile(abs(p), content, { flag: 'wx', mode: 0o644 }), () => {
        names.set(p, n);
        files.set(n, { mode: 0o644, content });
      });
    } else if (r < 44 && nameList.length) {
      const p = pick(nameList)!;
      const rec = `+${n}`;
      await run(`append ${p}`, () => fsp.appendFile(abs(p), rec), () => (files.get(names.get(p)!)!.content += rec));
    } else if (r < 56 && nameList.length) {
      const p = pick(nameList)!;
      const to = `${dir}/r${n}`;
      await run(`rename ${p} ${to}`, () => fsp.rename(abs(p), abs(to)), () => {
        names.set(to, names.get(p)!);
        names.delete(p);
      });
    } else if (r < 62 && dirList.length > 1) {
      // A directory (not the subtree's root) moves, with everything under it, to a directory not under it.
      const d = pick(dirList.filter((x) => x !== a.name))!;
      const target = pick(dirList.filter((x) => !under(d, x)))!;
      const to = `${target}/m${n}`;
      await run(`rename ${d} ${to}`, () => fsp.rename(abs(d), abs(to)), () => {
        for (const m of [dirs, names] as Map<string, number>[]) {
          for (const [k, v] of [...m]) {
            if (!under(d, k)) continue;
            m.delete(k);
            m.set(to + k.slice(d.length), v);
          }
        }
      });
    } else if (r < 70 && nameList.length) {
      const p = pick(nameList)!;
      const to = `${dir}/l${n}`;
      await run(`link ${p} ${to}`, () => fsp.link(abs(p), abs(to)), () => names.set(to, names.get(p)!));
    } else if (r < 82 && nameList.length) {
      const p = pick(nameList)!;
      await run(`unlink ${p}`, () => fsp.unlink(abs(p)), () => {
        const id = names.get(p)!;
        names.delete(p);
        if (![...names.values()].includes(id)) files.delete(id);
      });
    } else if (r < 88) {
      const empty = dirList.filter((d) => d !== a.name && ![...dirs.keys(), ...names.keys()].some((x) => x !== d && under(d, x)));
      const d = pick(empty);
      if (d) await run(`rmdir ${d}`, () => fsp.rmdir(abs(d)), () => dirs.delete(d));
    } else {
      const mode = pick([0o600, 0o640, 0o604, 0o666, 0o700, 0o750, 0o755])!;
      const p = rnd.chance(0.5) ? pick(nameList) : pick(dirList.filter((x) => x !== a.name));
      if (p) {
        const isDir = dirs.has(p);
        const m = isDir ? mode | 0o700 : mode;
        await run(`chmod ${p}`, () => fsp.chmod(abs(p), m), () => (isDir ? dirs.set(p, m) : (files.get(names.get(p)!)!.mode = m)));
      }
    }
    out({ type: 'progress', n });
  }
  clearInterval(watchdog);
  const model: Model = { dirs: Object.fromEntries(dirs), names: Object.fromEntries(names), files: Object.fromEntries(files) };
  fs.writeFileSync(a.modelFile, JSON.stringify(model));
  const result: Result = { type: 'result', ops: n, counts, errors, longestMs, longest };
  out(result);
}

main(JSON.parse(process.argv[2]) as Args).catch((e) => {
  out({ type: 'result', ops: 0, counts: {}, errors: [`fatal: ${(e as Error).stack}`], longestMs: 0, longest: '' });
  process.exit(2);
});
