// A distributed-replicate volume for real: volfiles/dist-replica.vol (cluster/distribute over
// two cluster/replicate pairs) over its four bricks volfiles/dist-replica-brick{1..4}.vol,
// each an `xlstack brick` process on loopback, mounted with the kernel transport. Workload
// processes create, write, truncate, rename (across directories, so across pairs), unlink,
// link, chmod and set times through the mount while one brick of each pair is SIGKILLed at
// seeded moments, both stay down a while, and come back one after the other. No process sees
// an error, no read returns anything but the last write (each process checks its model with
// O_DIRECT reads), and after `xlstack heal` (which heals every pair) heal info lists nothing,
// each pair's bricks hold the same tree (internal xattrs aside), and the volume holds exactly
// the workloads' files: each on one pair, with the data and mode of the model.
//
// The seed is printed; DIST_REPLICA_SEED=<n> repeats a run's choices.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { TestBrick, startBrick } from '../helpers/brick';
import { startMount, waitFor, xlstack } from '../helpers/mount';
import { BrickEntry, brickTree, healAll, startWorkload } from '../helpers/replica-workload';
import type { ChildResult } from '../helpers/replicate-child';
import { Rng } from '../helpers/rng';
import { cleanupScratch, scratchDir } from '../helpers/scratch';

const CHILD = path.join(__dirname, '../helpers/replicate-child.js');
const VOLFILES = path.resolve(__dirname, '../../../volfiles');
const SEED = process.env.DIST_REPLICA_SEED ? Number(process.env.DIST_REPLICA_SEED) : Date.now() % 1_000_000;
process.stdout.write(`dist-replica.test: seed ${SEED} (DIST_REPLICA_SEED=${SEED} repeats it)\n`);

afterAll(cleanupScratch, 60_000);

const shipped = (name: string) => fs.readFileSync(path.join(VOLFILES, name), 'utf8');

/** The shipped brick volfile i (1..4), its directories and port moved to the test's, the test's login. */
const brickVolfile = (i: number) => (dir: string, port: number) =>
  shipped(`dist-replica-brick${i}.vol`)
    .replace(`option directory /var/lib/xlstack/dist-replica-${i}-index`, `option directory ${dir}-index`)
    .replace(`option directory /var/lib/xlstack/dist-replica-${i}`, `option directory ${dir}`)
    .replace(/listen-port \d+/, `listen-port ${port}`)
    .replace(/auth\.login\.brick\.allow \S+/, 'auth.login.brick.allow xlstack-test')
    .replace(/auth\.login\.xlstack\.password \S+/, 'auth.login.xlstack-test.password test-only-password');

/** The shipped dist-replica.vol over the test's ports and login. */
const clientVolfile = (ports: number[]) =>
  ports
    .reduce((t, p, i) => t.replace(`remote-port ${24031 + i}`, `remote-port ${p}`), shipped('dist-replica.vol'))
    .replace(/option username \S+/g, 'option username xlstack-test')
    .replace(/option password \S+/g, 'option password test-only-password');

/** A log's warnings and errors (what explains a failure is rarely in its tail). */
const warnings = (log: string) => log.split('\n').filter((l) => / (WARN|ERROR) /.test(l)).slice(-200).join('\n');

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const isLinkto = (e: BrickEntry) => e.type === 'file' && (e.mode & 0o7777) === 0o1000;

/**
 * The two bricks of a pair hold the same tree, but for times nobody set: each brick stamps
 * writes with its own clock, and a linkto file's times are its own, not the file's (a
 * utimes goes to the data), stamped by each brick when the linkto file was made.
 */
function expectPairAlike(pair: TestBrick[], explicit: Set<string>): Record<string, BrickEntry> {
  const strip = (t: Record<string, BrickEntry>) =>
    Object.fromEntries(Object.entries(t).map(([k, e]) => [k, { ...e, mtime: explicit.has(k) && !isLinkto(e) ? e.mtime : undefined }]));
  const [a, b] = pair.map((x) => brickTree(x.dir));
  expect(strip(b)).toEqual(strip(a));
  return a;
}

test('distribute over two replica pairs: one brick of each SIGKILLed during the workload and back; no error, no stale read, each pair identical after heal', async () => {
  const rnd = new Rng(SEED);
  const scratch = scratchDir('xlstack-dist-replica-');
  const bricks: TestBrick[] = [];
  for (let i = 1; i <= 4; i++) bricks.push(await startBrick({ volfile: brickVolfile(i) }));
  const pairs = [bricks.slice(0, 2), bricks.slice(2, 4)];
  const volfile = path.join(scratch, 'dist-replica.vol');
  fs.writeFileSync(volfile, clientVolfile(bricks.map((b) => b.port)));
  const m = await startMount({ volfile: clientVolfile(bricks.map((b) => b.port)) });
  const workdirs = ['w0', 'w1', 'w2'];
  for (const w of workdirs) fs.mkdirSync(path.join(m.mountpoint, w));
  const kids = workdirs.map((w, k) => startWorkload(CHILD, { dir: path.join(m.mountpoint, w), seed: SEED * 10 + k, maxMs: 100_000 }, scratch));
  await Promise.all(kids.map((k) => k.ready()));
  const moved = async (what: string, more: number) => {
    const at = kids.map((k) => k.progress());
    await waitFor(() => kids.every((k, i) => k.progress() >= at[i] + more), 40_000, `each workload to make progress ${what}`);
  };
  // Which brick of each pair dies, and in which order the pairs lose and get back theirs.
  const victims = pairs.map((p) => p[rnd.int(2)]);
  const order = rnd.chance(0.5) ? [0, 1] : [1, 0];
  process.stdout.write(`victims: ${victims.map((v) => bricks.indexOf(v) + 1).join(', ')} (bricks 1..4), pair ${order[0]} first\n`);
  try {
    await moved('before the first kill', 20 + rnd.int(40));
    await victims[order[0]].kill9();
    await moved('between the kills', 10 + rnd.int(30));
    await victims[order[1]].kill9();
    // Both down a while: at least a second and 60 operations of each workload.
    await Promise.all([moved('while both bricks are down', 60 + rnd.int(60)), new Promise((r) => setTimeout(r, 1000))]);
    await victims[order[0]].start();
    await moved('with one brick back', 10 + rnd.int(30));
    await victims[order[1]].start();
    await waitFor(() => /healed \w+ of /.test(m.log()), 30_000, 'the background heal to start healing');
    await moved('after both bricks came back', 40);
  } catch (e) {
    process.stdout.write(`failed; errors so far: ${kids.flatMap((k) => k.errors()).join('\n')}\nmount log:\n${m.log().slice(-8000)}\n`);
    throw e;
  }
  const results: ChildResult[] = await Promise.all(kids.map((k) => k.finish()));
  process.stdout.write(`workloads: ${results.map((r) => `${r.ops} ops, ${r.verified} verified ${JSON.stringify(r.counts)}`).join('\n           ')}\n`);
  const problems = results.flatMap((r) => [...r.errors, ...r.mismatches]);
  if (problems.length) process.stdout.write(`problems:\n${problems.join('\n')}\nmount log warnings:\n${warnings(m.log())}\nmount log:\n${m.log().slice(-8000)}\n`);
  expect(problems).toEqual([]);
  expect(results.every((r) => r.verified > 10)).toBe(true);
  expect(m.log()).toMatch(/pair0-client-\d is down/);
  expect(m.log()).toMatch(/pair1-client-\d is down/);
  await m.unmount();

  await healAll(volfile);
  const info = await xlstack(['heal', volfile, 'info'], { timeoutMs: 60_000 });
  expect(info.stdout).toMatch(/^pair0: children: pair0-client-0 \(up\), pair0-client-1 \(up\)$/m);
  expect(info.stdout).toMatch(/^pair1: children: pair1-client-0 \(up\), pair1-client-1 \(up\)$/m);
  expect(info.stdout).toMatch(/\n0 object\(s\) need heal\n$/);

  // Each pair's bricks alike; times the workloads set are the same everywhere.
  const explicit = new Set<string>();
  results.forEach((r, k) => r.files.filter((f) => f.mtime !== undefined).forEach((f) => f.names.forEach((n) => explicit.add(path.join(workdirs[k], n)))));
  const trees = pairs.map((p) => expectPairAlike(p, explicit));
  for (const b of bricks) expect(fs.readdirSync(`${b.dir}-index`)).toEqual([]);

  // The volume holds exactly the workloads' files (no name lost, none brought back by a
  // heal), each as data on one pair with the model's content and mode (and time, if set).
  const dataNames = trees.map((t) => Object.keys(t).filter((k) => t[k].type === 'file' && !isLinkto(t[k])));
  const model = results.flatMap((r, k) => r.files.flatMap((f) => f.names.map((n) => ({ name: path.join(workdirs[k], n), f }))));
  expect([...dataNames[0], ...dataNames[1]].sort()).toEqual(model.map((x) => x.name).sort());
  for (const { name, f } of model) {
    const e = trees[dataNames[0].includes(name) ? 0 : 1][name];
    expect([name, e.sha, e.mode & 0o7777]).toEqual([name, sha(Buffer.from(f.data, 'base64')), f.mode]);
    if (f.mtime !== undefined) expect([name, e.mtime]).toEqual([name, f.mtime]);
  }
  for (const b of bricks) await b.stop();
}, 180_000);
