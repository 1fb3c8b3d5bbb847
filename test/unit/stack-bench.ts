// Not a test: an in-process benchmark of what the kernel transport's requests cost above
// the kernel (the adapter, the bridge core, the default volfile's graph, storage/posix),
// with no /dev/fuse: the CPU side of each FUSE round trip, without the machine's noise.
//   node dist/test/unit/stack-bench.js [rounds] [files] [volfile]   (default: volfiles/default.vol)
// Replays the requests the kernel sends for bench-meta.sh's phases (counted on a mount from
// the session's statedump) and prints one JSON line: the best of `rounds` for each, µs per
// file (wall and CPU of this process), and µs per request.
//   create: LOOKUP (a miss), CREATE, GETATTR of the directory (its attributes changed),
//           WRITE 1 KiB, GETXATTR security.capability (a miss: the kernel's file_remove_privs),
//           FLUSH, RELEASE
//   stat:   LOOKUP (cold caches), FORGET
//   unlink: LOOKUP, UNLINK, GETATTR of the directory, FORGET
// Also: GETXATTR (a miss), and READ/WRITE of 128 KiB and 1 MiB.
import { constants } from 'fs';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import { KernelAdapter } from '../../src/fuse/kernel/adapter';
import type { Request } from '../../src/fuse/kernel/fs';
import { ROOT_NODEID } from '../../src/fuse/nodes';
import { GraphSwitcher } from '../../src/fuse/switcher';

const DEFAULT_VOLFILE = path.join(__dirname, '..', '..', '..', 'volfiles', 'default.vol');
const CAPABILITY = Buffer.from('security.capability');
const KIB = Buffer.alloc(1024, 7);

let unique = 2;
const req = (): Request => ({ unique: (unique += 2), uid: 0, gid: 0, pid: 0, interrupted: false, onInterrupt: () => () => undefined });
const missing = (p: Promise<unknown>) => p.then(
  () => { throw new Error('expected a miss'); },
  () => undefined,
);

async function timed(n: number, body: (i: number) => Promise<unknown>): Promise<{ us: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await body(i);
  const c = process.cpuUsage(c0);
  return { us: Number(process.hrtime.bigint() - t0) / 1e3 / n, cpu: (c.user + c.system) / n };
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 3);
  const files = Number(process.argv[3] ?? 2000);
  const source = process.argv[4] ?? DEFAULT_VOLFILE;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stack-bench-'));
  const volfile = path.join(dir, 'bench.vol');
  fs.writeFileSync(volfile, fs.readFileSync(source, 'utf8').replace(/option directory .*/, `option directory ${path.join(dir, 'back')}`));
  const log = Logger.create('error', () => undefined);
  const switcher = new GraphSwitcher({ volfile, registry: new Registry(), log, startTimeoutMs: 5000, stopTimeoutMs: 5000 });
  const core = (await switcher.start()).core;
  const a = new KernelAdapter(core, log, { entryTimeoutMs: 1000, attrTimeoutMs: 1000, negativeTimeoutMs: 0, groupsTimeoutMs: 1000 });
  const best: Record<string, number> = {};
  const keep = (k: string, v: number, higherIsBetter = false) => {
    best[k] = best[k] === undefined ? v : higherIsBetter ? Math.max(best[k], v) : Math.min(best[k], v);
  };
  try {
    for (let r = 0; r < rounds; r++) {
      const d = await a.mkdir(req(), ROOT_NODEID, Buffer.from(`d${r}`), 0o755);
      const names = Array.from({ length: files }, (_, i) => Buffer.from(`f${i}`));
      const ids: number[] = [];
      let t = await timed(files, async (i) => {
        await missing(a.lookup(req(), d.nodeid, names[i]));
        const { entry, opened } = await a.create(req(), d.nodeid, names[i], 0o644, 0, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL);
        ids.push(entry.nodeid);
        await a.getattr(req(), d.nodeid);
        await a.write(req(), entry.nodeid, opened.fh, 0, KIB);
        await missing(a.getxattr(req(), entry.nodeid, CAPABILITY));
        await a.flush(req(), entry.nodeid, opened.fh, 1n);
        await a.release(req(), entry.nodeid, opened.fh, 0, 1n, false);
      });
      keep('create us', t.us);
      keep('create cpu', t.cpu);
      keep('create us/request', t.us / 7);
      for (const id of ids) a.forget(id, 1);
      t = await timed(files, async (i) => a.forget((await a.lookup(req(), d.nodeid, names[i])).nodeid, 1));
      keep('stat us', t.us);
      keep('stat cpu', t.cpu);
      t = await timed(files, (i) => a.getxattr(req(), d.nodeid, CAPABILITY).catch(() => undefined));
      keep('getxattr-miss us', t.us);
      t = await timed(files, async (i) => {
        const e = await a.lookup(req(), d.nodeid, names[i]);
        await a.unlink(req(), d.nodeid, names[i]);
        await a.getattr(req(), d.nodeid);
        a.forget(e.nodeid, 1);
      });
      keep('unlink us', t.us);
      keep('unlink cpu', t.cpu);
      keep('unlink us/request', t.us / 3);

      const { entry, opened } = await a.create(req(), d.nodeid, Buffer.from('big'), 0o644, 0, constants.O_RDWR);
      for (const size of [128 * 1024, 1024 * 1024]) {
        const buf = Buffer.alloc(size, 1);
        const n = (256 * 1024 * 1024) / size;
        t = await timed(n, (i) => a.write(req(), entry.nodeid, opened.fh, i * size, buf));
        keep(`write ${size / 1024}K MiB/s`, size / 1048576 / (t.us / 1e6), true);
        t = await timed(n, (i) => a.read(req(), entry.nodeid, opened.fh, i * size, size));
        keep(`read ${size / 1024}K MiB/s`, size / 1048576 / (t.us / 1e6), true);
      }
      await a.release(req(), entry.nodeid, opened.fh, 0, 0n, false);
      await a.unlink(req(), d.nodeid, Buffer.from('big'));
      a.forget(entry.nodeid, 1);
      await a.rmdir(req(), ROOT_NODEID, Buffer.from(`d${r}`));
      a.forget(d.nodeid, 1);
    }
  } finally {
    await switcher.stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  for (const k of Object.keys(best)) best[k] = Math.round(best[k] * 10) / 10;
  console.log(JSON.stringify(best));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
