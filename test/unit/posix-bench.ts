// Not a test: an in-process benchmark of storage/posix alone in a graph (no transport).
//   node dist/test/unit/posix-bench.js [rounds]
// Prints one JSON line: the best of `rounds` for each figure, µs per operation (wall and
// CPU time of this process) and MiB/s for 256 MiB written and read in 128 KiB requests.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { v4 as uuidv4 } from 'uuid';
import { buildGraph } from '../../src/core/builder';
import type { Graph } from '../../src/core/graph';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import { parseVolfile } from '../../src/core/volfile';

const { O_RDWR } = fs.constants;
const LOOKUPS = 20_000;
const CREATES = 2_000;
const DATA = 256 * 1024 * 1024;
const CHUNK = 128 * 1024;

async function timed(n: number, body: (i: number) => Promise<unknown>): Promise<{ us: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await body(i);
  const c = process.cpuUsage(c0);
  return { us: Number(process.hrtime.bigint() - t0) / 1e3 / n, cpu: (c.user + c.system) / n };
}

async function round(g: Graph, best: Record<string, number>): Promise<void> {
  const top = g.top;
  const keep = (k: string, v: number, higherIsBetter = false) => {
    best[k] = best[k] === undefined ? v : higherIsBetter ? Math.max(best[k], v) : Math.min(best[k], v);
  };
  // four levels down, as a lookup in a real tree is
  let parent = g.itable.root;
  for (const name of ['a', 'b', 'c', 'd']) {
    const ia = await top.lookup(g.frame('lookup'), { parent, name }).catch(() => top.mkdir(g.frame('mkdir'), { parent, name, inode: g.itable.get(uuidv4()) }, 0o755));
    parent = g.itable.link(ia, parent, name);
  }
  const file = g.itable.get(uuidv4());
  const fd0 = g.newFd(file, O_RDWR, false);
  g.itable.link(await top.create(g.frame('create'), { parent, name: `file-${file.gfid}`, inode: file }, 0o644, fd0), parent, `file-${file.gfid}`);
  await fd0.unref();
  const fileName = `file-${file.gfid}`;

  let r = await timed(LOOKUPS, () => top.lookup(g.frame('lookup'), { parent, name: fileName }));
  keep('lookup us', r.us);
  keep('lookup cpu', r.cpu);
  r = await timed(LOOKUPS, () => top.lookup(g.frame('lookup'), { parent, name: 'missing' }).catch(() => undefined));
  keep('lookup-miss us', r.us);
  r = await timed(LOOKUPS, () => top.stat(g.frame('stat'), { inode: file }));
  keep('stat us', r.us);
  keep('stat cpu', r.cpu);
  r = await timed(CREATES, async (i) => {
    const inode = g.itable.get(uuidv4());
    const fd = g.newFd(inode, O_RDWR, false);
    await top.create(g.frame('create'), { parent, name: `f${i}`, inode }, 0o644, fd);
    await fd.unref();
    await top.unlink(g.frame('unlink'), { parent, name: `f${i}` });
  });
  keep('create+unlink us', r.us);
  keep('create+unlink cpu', r.cpu);
  r = await timed(CREATES, async (i) => {
    await top.mkdir(g.frame('mkdir'), { parent, name: `d${i}`, inode: g.itable.get(uuidv4()) }, 0o755);
    await top.rmdir(g.frame('rmdir'), { parent, name: `d${i}` });
  });
  keep('mkdir+rmdir us', r.us);
  keep('mkdir+rmdir cpu', r.cpu);

  const big = g.itable.get(uuidv4());
  const fd = g.newFd(big, O_RDWR, false);
  await top.create(g.frame('create'), { parent, name: 'big', inode: big }, 0o644, fd);
  const buf = Buffer.alloc(CHUNK, 7);
  try {
    r = await timed(DATA / CHUNK, (i) => top.write(g.frame('write'), fd, buf, i * CHUNK));
    keep('write MiB/s', CHUNK / 1048576 / (r.us / 1e6), true);
    r = await timed(DATA / CHUNK, (i) => top.read(g.frame('read'), fd, CHUNK, i * CHUNK));
    keep('read MiB/s', CHUNK / 1048576 / (r.us / 1e6), true);
  } finally {
    await fd.unref();
    await top.unlink(g.frame('unlink'), { parent, name: 'big' });
    await top.unlink(g.frame('unlink'), { parent, name: fileName });
  }
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 3);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'posix-bench-'));
  const volfile = `volume p\n type storage/posix\n option directory ${dir}\nend-volume\n`;
  const g = buildGraph(parseVolfile(volfile, 'bench.vol'), { id: 1, registry: new Registry(), log: Logger.create('error') });
  try {
    if ((await g.start(5000)) !== 'up') throw new Error('storage/posix did not come up');
    const best: Record<string, number> = {};
    for (let i = 0; i < rounds; i++) await round(g, best);
    console.log(JSON.stringify(Object.fromEntries(Object.entries(best).map(([k, v]) => [k, Math.round(v * 100) / 100]))));
  } finally {
    await g.stop(5000);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
