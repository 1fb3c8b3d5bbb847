// cluster/replicate for real: bricks are `xlstack brick` processes on loopback, the volume is
// mounted with the kernel transport, and workload processes create, write, truncate, rename,
// unlink, link, chmod and set times through the mount while a brick is SIGKILLed, stays
// down, and comes back. No process sees an error, no read returns anything but the last
// write (each process checks its model with O_DIRECT reads, during the outage and the heal),
// and after heal the bricks hold the same tree: data, modes, owners, xattrs (GFIDs), names,
// hard links, the times the workload set. A deliberate split brain is detected (EIO, the log
// names the file) and resolved with `xlstack heal VOLFILE split-brain`.
//
// The seed is printed; REPLICATE_SEED=<n> repeats a run's choices.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { TestBrick, clientLogin, serverLogin, startBrick } from '../helpers/brick';
import { TestMount, startMount, waitFor, xlstack } from '../helpers/mount';
import type { ChildResult } from '../helpers/replicate-child';
import { BrickEntry, brickTree, healAll, startWorkload } from '../helpers/replica-workload';
import { Rng } from '../helpers/rng';
import { cleanupScratch, scratchDir } from '../helpers/scratch';

const CHILD = path.join(__dirname, '../helpers/replicate-child.js');
const VOLFILES = path.resolve(__dirname, '../../../volfiles');
const SEED = process.env.REPLICATE_SEED ? Number(process.env.REPLICATE_SEED) : Date.now() % 1_000_000;
process.stdout.write(`replicate.test: seed ${SEED} (REPLICATE_SEED=${SEED} repeats it)\n`);

afterAll(cleanupScratch, 60_000);

/** A brick for replicate: posix, access control, the index, locks, the server (as replica-brick*.vol). */
const brickText = (dir: string, port: number) => `volume brick-posix
    type storage/posix
    option directory ${dir}
end-volume
volume brick-access
    type features/access-control
    subvolumes brick-posix
end-volume
volume brick-index
    type features/index
    option directory ${dir}-index
    subvolumes brick-access
end-volume
volume brick
    type features/locks
    subvolumes brick-index
end-volume
volume brick-server
    type protocol/server
    option listen-port ${port}
${serverLogin('brick')}    subvolumes brick
end-volume
`;

/** The shipped brick volfile, its directories and port moved to the test's. */
const shippedBrick = (i: number) => (dir: string, port: number) =>
  fs
    .readFileSync(path.join(VOLFILES, `replica-brick${i}.vol`), 'utf8')
    .replace(`option directory /var/lib/xlstack/replica-${i}-index`, `option directory ${dir}-index`)
    .replace(`option directory /var/lib/xlstack/replica-${i}`, `option directory ${dir}`)
    .replace(/listen-port \d+/, `listen-port ${port}`)
    .replace(/auth\.login\.brick\.allow \S+/, 'auth.login.brick.allow xlstack-test')
    .replace(/auth\.login\.xlstack\.password \S+/, 'auth.login.xlstack-test.password test-only-password');

/** A replica client volfile over `ports` (tight timeouts: a dead brick is noticed at once anyway, its socket closes). */
const clientText = (ports: number[], replicaOptions = '') =>
  ports
    .map(
      (p, i) => `volume client-${i}
    type protocol/client
    option remote-port ${p}
    option remote-subvolume brick
${clientLogin()}    option ping-timeout 2
    option frame-timeout 20
end-volume
`,
    )
    .join('') +
  `volume replica
    type cluster/replicate
${replicaOptions}    subvolumes ${ports.map((_, i) => `client-${i}`).join(' ')}
end-volume
volume top
    type performance/write-behind
    subvolumes replica
end-volume
`;

/** The shipped replica.vol over the test's ports and login. */
const shippedClient = (ports: number[]) =>
  ports.reduce((t, p, i) => t.replace(`remote-port ${24010 + i}`, `remote-port ${p}`), fs.readFileSync(path.join(VOLFILES, 'replica.vol'), 'utf8'))
    .replace(/option username \S+/g, 'option username xlstack-test')
    .replace(/option password \S+/g, 'option password test-only-password');

/** The trees of the bricks, equal but for times nobody set (each brick stamps writes with its own clock). */
function expectBricksAlike(bricks: TestBrick[], results: ChildResult[], workdirs: string[]): void {
  const explicit = new Set<string>();
  results.forEach((r, k) => r.files.filter((f) => f.mtime !== undefined).forEach((f) => f.names.forEach((n) => explicit.add(path.join(workdirs[k], n)))));
  const trees = bricks.map((b) => brickTree(b.dir));
  const strip = (t: Record<string, BrickEntry>) =>
    Object.fromEntries(Object.entries(t).map(([k, e]) => [k, { ...e, mtime: explicit.has(k) ? e.mtime : undefined }]));
  for (const t of trees.slice(1)) expect(strip(t)).toEqual(strip(trees[0]));
  // And the bricks hold what the workloads say they wrote.
  results.forEach((r, k) => {
    for (const f of r.files) {
      for (const n of f.names) {
        const e = trees[0][path.join(workdirs[k], n)];
        expect([n, e?.sha, e?.mode && e.mode & 0o7777]).toEqual([n, require('crypto').createHash('sha256').update(Buffer.from(f.data, 'base64')).digest('hex'), f.mode]);
        if (f.mtime !== undefined) expect([n, e.mtime]).toEqual([n, f.mtime]);
      }
    }
  });
}

async function outage(opts: { n: number; victim: number; brick: (i: number) => (dir: string, port: number) => string; client: (ports: number[]) => string; seed: number }): Promise<void> {
  const rnd = new Rng(opts.seed);
  const scratch = scratchDir('xlstack-replicate-');
  const bricks: TestBrick[] = [];
  for (let i = 0; i < opts.n; i++) bricks.push(await startBrick({ volfile: opts.brick(i + 1) }));
  const m = await startMount({ volfile: opts.client(bricks.map((b) => b.port)) });
  // The mount's volfile goes with the mount: the heal command gets a copy.
  const volfile = path.join(scratch, 'client.vol');
  fs.writeFileSync(volfile, opts.client(bricks.map((b) => b.port)));
  const workdirs = ['w0', 'w1', 'w2'];
  for (const w of workdirs) fs.mkdirSync(path.join(m.mountpoint, w));
  const kids = workdirs.map((w, k) => startWorkload(CHILD, { dir: path.join(m.mountpoint, w), seed: opts.seed * 10 + k, maxMs: 100_000 }, scratch));
  await Promise.all(kids.map((k) => k.ready()));
  const moved = async (what: string, more: number) => {
    const at = kids.map((k) => k.progress());
    await waitFor(() => kids.every((k, i) => k.progress() >= at[i] + more), 40_000, `each workload to make progress ${what}`);
  };
  try {
    await moved('before the kill', 20 + rnd.int(40));
    const victim = bricks[opts.victim];
    await victim.kill9();
    // Down a while: at least a second and 60 operations of each workload.
    await Promise.all([moved('while the brick is down', 60 + rnd.int(60)), new Promise((r) => setTimeout(r, 1000))]);
    await victim.start();
    await waitFor(() => /healed \w+ of /.test(m.log()), 30_000, 'the background heal to start healing');
    await moved('after the brick came back', 40);
  } catch (e) {
    process.stdout.write(`failed; errors so far: ${kids.flatMap((k) => k.errors()).join('\n')}\nmount log:\n${m.log().slice(-8000)}\n`);
    throw e;
  }
  const results = await Promise.all(kids.map((k) => k.finish()));
  process.stdout.write(`workloads: ${results.map((r) => `${r.ops} ops, ${r.verified} verified ${JSON.stringify(r.counts)}`).join('\n           ')}\n`);
  const problems = results.flatMap((r) => [...r.errors, ...r.mismatches]);
  if (problems.length) process.stdout.write(`problems:\n${problems.join('\n')}\nmount log:\n${m.log().slice(-8000)}\n`);
  expect(problems).toEqual([]);
  expect(results.every((r) => r.verified > 10)).toBe(true);
  expect(m.log()).toMatch(/client-\d+ is down/);
  await m.unmount();
  await healAll(volfile);
  expectBricksAlike(bricks, results, workdirs);
  for (const b of bricks) expect(fs.readdirSync(`${b.dir}-index`)).toEqual([]);
  for (const b of bricks) await b.stop();
}

test('replica 2: a brick SIGKILLed during the workload and back; no error, no stale read, bricks identical after heal', async () => {
  await outage({ n: 2, victim: SEED % 2, brick: () => brickText, client: (ports) => clientText(ports), seed: SEED });
}, 240_000);

test('replica 3 with volfiles/replica.vol and its bricks (quorum auto): one brick SIGKILLed and back; no error, no stale read, bricks identical after heal', async () => {
  await outage({ n: 3, victim: (SEED + 1) % 3, brick: shippedBrick, client: shippedClient, seed: SEED + 1 });
}, 240_000);

test('graph switches (SIGHUP, new topologies) while the workload runs and a brick is away and back: no error, no stale read, bricks identical', async () => {
  const scratch = scratchDir('xlstack-replicate-switch-');
  const bricks = [await startBrick({ volfile: brickText }), await startBrick({ volfile: brickText })];
  const ports = bricks.map((b) => b.port);
  const trace = (sub: string) => `volume traced\n    type debug/trace\n    option log-file off\n    subvolumes ${sub}\nend-volume\n`;
  const topologies = [clientText(ports), clientText(ports) + trace('top'), clientText(ports, '    option read-hash-mode 0\n').replace(/volume top[\s\S]*$/, trace('replica'))];
  const m = await startMount({ volfile: topologies[0] });
  const volfile = path.join(scratch, 'client.vol');
  fs.writeFileSync(volfile, topologies[0]);
  const workdirs = ['w0', 'w1'];
  for (const w of workdirs) fs.mkdirSync(path.join(m.mountpoint, w));
  const kids = workdirs.map((w, k) => startWorkload(CHILD, { dir: path.join(m.mountpoint, w), seed: SEED * 7 + k, maxMs: 100_000 }, scratch));
  await Promise.all(kids.map((k) => k.ready()));
  const moved = async (more: number) => {
    const at = kids.map((k) => k.progress());
    await waitFor(() => kids.every((k, i) => k.progress() >= at[i] + more), 40_000, 'each workload to make progress');
  };
  const switched = () => (m.log().match(/switched to graph/g) ?? []).length;
  const switchTo = async (k: number) => {
    const before = switched();
    fs.writeFileSync(m.volfile, topologies[k % topologies.length]);
    process.kill(m.pid, 'SIGHUP');
    await waitFor(() => switched() > before, 20_000, `the switch to topology ${k % topologies.length}`);
  };
  try {
    for (let k = 1; k <= 6; k++) {
      await moved(10);
      await switchTo(k);
      if (k === 2) await bricks[1].kill9();
      if (k === 4) await bricks[1].start();
    }
    await moved(20);
  } catch (e) {
    process.stdout.write(`failed; errors so far: ${kids.flatMap((k) => k.errors()).join('\n')}\nmount log:\n${m.log().slice(-8000)}\n`);
    throw e;
  }
  const results = await Promise.all(kids.map((k) => k.finish()));
  const problems = results.flatMap((r) => [...r.errors, ...r.mismatches]);
  if (problems.length) process.stdout.write(`problems:\n${problems.join('\n')}\nmount log:\n${m.log().slice(-8000)}\n`);
  expect(problems).toEqual([]);
  expect(switched()).toBe(6);
  await m.unmount();
  await healAll(volfile);
  expectBricksAlike(bricks, results, workdirs);
}, 240_000);

test('a split brain (each side written while the other was away): reads fail with EIO and the log names the file; `heal split-brain --source` resolves it', async () => {
  const bricks = [await startBrick({ volfile: brickText }), await startBrick({ volfile: brickText })];
  const volfile = clientText(bricks.map((b) => b.port));
  let m: TestMount = await startMount({ volfile });
  fs.writeFileSync(path.join(m.mountpoint, 'f'), 'original');
  await bricks[1].kill9();
  fs.writeFileSync(path.join(m.mountpoint, 'f'), 'written while brick 1 was away');
  await m.unmount();
  await bricks[0].kill9();
  await bricks[1].start();
  m = await startMount({ volfile });
  fs.writeFileSync(path.join(m.mountpoint, 'f'), 'written while brick 0 was away');
  await m.unmount();
  await bricks[0].start();
  m = await startMount({ volfile });
  // Read by a child process (a synchronous read of the mount from this process could not be served).
  const read = () => xlstackRead(path.join(m.mountpoint, 'f'));
  expect(await read()).toEqual({ error: 'EIO' });
  await waitFor(() => /ERROR .*split brain: \/f \(/.test(m.log()), 10_000, 'the split brain in the log');
  const heal = await xlstack(['heal', m.volfile], { timeoutMs: 60_000 });
  expect(heal.code).toBe(1);
  expect(heal.stdout).toContain('in split brain');
  const info = await xlstack(['heal', m.volfile, 'info'], { timeoutMs: 60_000 });
  expect(info.stdout).toMatch(/\/f \(file [0-9a-f-]{36}\): data: split brain/);
  const bad = await xlstack(['heal', m.volfile, 'split-brain', '--source', 'client-7', '/f'], { timeoutMs: 60_000 });
  expect([bad.code, bad.stderr]).toEqual([1, expect.stringContaining('client-7 is not a child')]);
  const r = await xlstack(['heal', m.volfile, 'split-brain', '--source', 'client-1', '/f'], { timeoutMs: 60_000 });
  expect([r.code, r.stdout, r.stderr]).toEqual([0, 'resolved /f with client-1 as the source\n', '']);
  expect(await read()).toEqual({ data: 'written while brick 0 was away' });
  for (const b of bricks) expect(fs.readFileSync(path.join(b.dir, 'f'), 'utf8')).toBe('written while brick 0 was away');
  expect((await xlstack(['heal', m.volfile, 'info'], { timeoutMs: 60_000 })).stdout).toContain('0 object(s) need heal');
  await m.unmount();
}, 120_000);

/** Reads a file in a child process: its content, or the errno it failed with. */
async function xlstackRead(file: string): Promise<{ data?: string; error?: string }> {
  const code = `const fs=require('fs');try{process.stdout.write(JSON.stringify({data:fs.readFileSync(${JSON.stringify(file)},'utf8')}))}catch(e){process.stdout.write(JSON.stringify({error:e.code}))}`;
  const out = await new Promise<string>((resolve) => {
    const c = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'ignore'] });
    let s = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (s += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), 20_000);
    c.on('exit', () => (clearTimeout(timer), resolve(s)));
  });
  return JSON.parse(out || '{"error":"no answer"}');
}
