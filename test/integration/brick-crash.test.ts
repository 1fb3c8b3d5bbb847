// A brick that crashes in the middle of a namespace workload: four processes make, write,
// append to, rename, link, unlink, remove and chmod files and directories through a client
// mount (kernel transport; the client volfile of volfiles/client.vol: protocol/client under
// write-behind) while the brick process is SIGKILLed and restarted 20 times at seeded
// moments. Fops in flight are sent again and answered as if the brick had never died (its
// reply cache under .xlstack, and the GFIDs the client chose): no error reaches the
// processes, and the brick's storage ends up equal to their models.
//
// The seed is printed; BRICK_CRASH_SEED=<n> repeats a run's schedule and workload.
import * as fs from 'fs';
import * as path from 'path';
import type { Model } from '../helpers/namespace-child';
import { Child, compare, startChild } from '../helpers/namespace';
import { Rng } from '../helpers/rng';
import { cleanupScratch, scratchDir } from '../helpers/scratch';
import { TestBrick, clientVolfile, startBrick } from '../helpers/brick';
import { TestMount, startMount, waitFor } from '../helpers/mount';

const SEED = process.env.BRICK_CRASH_SEED ? Number(process.env.BRICK_CRASH_SEED) : Date.now() % 1_000_000;
process.stdout.write(`brick-crash.test: seed ${SEED} (BRICK_CRASH_SEED=${SEED} repeats it)\n`);

const KILLS = 20;
const PROCESSES = 4;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

afterAll(cleanupScratch, 60_000);

/** What volfiles/client.vol has over protocol/client. */
const WRITE_BEHIND = `
volume client
    type performance/write-behind
    subvolumes remote
end-volume
`;

test(`a namespace workload from ${PROCESSES} processes while the brick is SIGKILLed and restarted ${KILLS} times: no error, storage equals the model`, async () => {
  const rnd = new Rng(SEED);
  const dir = scratchDir('xlstack-brick-crash-');
  let b: TestBrick | undefined;
  let m: TestMount | undefined;
  const children: Child[] = [];
  try {
    b = await startBrick();
    m = await startMount({ volfile: clientVolfile(b.port, WRITE_BEHIND) });
    for (let i = 0; i < PROCESSES; i++) {
      children.push(startChild({ root: m.mountpoint, name: `p${i}`, seed: SEED * 10 + i, modelFile: path.join(dir, `model-${i}`), maxMs: 150_000 }, dir));
    }
    await Promise.all(children.map((c) => c.ready()));
    const total = () => children.reduce((s, c) => s + c.progress(), 0);
    const kills: string[] = [];
    const t0 = Date.now();
    for (let k = 1; k <= KILLS; k++) {
      // Work between every two kills: a brick that never serves again fails here.
      const before = total();
      await waitFor(() => total() > before + PROCESSES * 2, 20_000, `progress before kill ${k} (stuck at ${total()})`);
      const wait = 30 + rnd.int(300);
      await sleep(wait);
      const down = rnd.int(300);
      const old = b.pid;
      await b.kill9();
      await sleep(down);
      await b.start();
      kills.push(`#${k} +${wait}ms pid ${old}->${b.pid} down ${down}ms at progress ${total()}`);
    }
    const last = total();
    await waitFor(() => total() > last + PROCESSES * 4, 20_000, 'progress after the last restart');
    const results = await Promise.all(children.map((c) => c.finish()));
    const ms = Date.now() - t0;
    process.stdout.write(`kills:\n  ${kills.join('\n  ')}\n`);
    process.stdout.write(`${results.reduce((s, r) => s + r.ops, 0)} ops in ${ms} ms: ${children.map((c, i) => `${c.name} ${JSON.stringify(results[i].counts)}`).join('; ')}\n`);
    const again = b.log().match(/\w+ \S+ \S+ sent again: .*/g) ?? [];
    const resent = m.log().match(/sending \w+ \(request \S+\) again/g) ?? [];
    process.stdout.write(`unsafe requests sent again: ${resent.length} (${[...new Set(resent.map((l) => l.split(' ')[1]))].join(', ')})\n`);
    process.stdout.write(`longest operation per process: ${results.map((r) => `${r.longestMs} ms (${r.longest})`).join('; ')}\n`);
    process.stdout.write(`requests sent again and answered as the first sending was: ${again.length}\n  ${again.slice(0, 40).join('\n  ')}\n`);
    const errors = results.flatMap((r, i) => r.errors.map((e) => `${children[i].name}: ${e}`));
    if (errors.length) process.stdout.write(`errors:\n${errors.join('\n')}\nmount log (end):\n${m.log().slice(-6000)}\nbrick log (end):\n${b.log().slice(-4000)}\n`);
    expect(errors).toEqual([]);
    // Every process did every kind of operation.
    for (const r of results) expect(Object.keys(r.counts).sort()).toEqual(['append', 'chmod', 'create', 'link', 'mkdir', 'rename', 'rmdir', 'unlink']);
    for (let i = 0; i < PROCESSES; i++) {
      const model = JSON.parse(fs.readFileSync(path.join(dir, `model-${i}`), 'utf8')) as Model;
      expect({ p: i, diffs: compare(b.dir, `p${i}`, model) }).toEqual({ p: i, diffs: [] });
    }
    // The mount noticed every kill, and what was in flight was answered again.
    expect((m.log().match(/is unreachable; reconnecting/g) ?? []).length).toBeGreaterThanOrEqual(KILLS);
  } finally {
    for (const c of children) await c.finish(20_000).catch(() => undefined);
    await m?.unmount();
    await b?.stop();
  }
}, 175_000);
