// `xlstack heal VOLFILE` over a distributed-replicate volume (cluster/distribute over two
// cluster/replicate sets): one child of each set is switched off while files are rewritten,
// the graph stops, and the command (over the same bricks, without the switches) lists what
// each set owes, heals both sets, and then lists nothing. A command that asked only the
// replicate a question through the top reaches (distribute sends a directory's question to
// its first child) would leave the second set behind.
import * as fs from 'fs';
import * as path from 'path';
import { buildGraph } from '../../src/core/builder';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import { parseVolfile } from '../../src/core/volfile';
import { heal } from '../../src/cli/heal';
import { cleanupGraphs, newBridge, tempDir, within, writeFile } from '../helpers/graphs';
import { Switch, switchDef } from '../helpers/replica';
import { dataOn } from './distribute-helpers';

afterEach(cleanupGraphs);

const PAIRS = 2;

/** Distribute over PAIRS replicate sets of two bricks; `switched`: each brick behind a test/switch. */
function volfile(dirs: string[], switched: boolean): string {
  let text = '';
  const sets: string[] = [];
  for (let p = 0; p < PAIRS; p++) {
    const clients: string[] = [];
    for (let i = 0; i < 2; i++) {
      const d = dirs[p * 2 + i];
      const client = `pair${p}-client-${i}`;
      const index = switched ? `index-${p}-${i}` : client;
      text += `volume posix-${p}-${i}\n type storage/posix\n option directory ${d}\nend-volume\n`;
      text += `volume locks-${p}-${i}\n type features/locks\n subvolumes posix-${p}-${i}\nend-volume\n`;
      text += `volume ${index}\n type features/index\n option directory ${d}-index\n subvolumes locks-${p}-${i}\nend-volume\n`;
      if (switched) text += `volume ${client}\n type test/switch\n subvolumes ${index}\nend-volume\n`;
      clients.push(client);
    }
    text += `volume pair${p}\n type cluster/replicate\n option self-heal-daemon off\n option background-self-heal-count 0\n subvolumes ${clients.join(' ')}\nend-volume\n`;
    sets.push(`pair${p}`);
  }
  return text + `volume dist\n type cluster/distribute\n subvolumes ${sets.join(' ')}\nend-volume\n`;
}

/** Runs the command in this process; its exit code and what it printed. */
async function run(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += s.toString()), true));
  try {
    return { code: await within(heal(argv), 60_000), out };
  } finally {
    spy.mockRestore();
  }
}

test('heal and heal info cover every replicate set under a distribute', async () => {
  const dirs = Array.from({ length: PAIRS * 2 }, (_, i) => tempDir(`xlstack-heal-cli-${i}-`));
  const registry = new Registry();
  registry.register(switchDef);
  const graph = buildGraph(parseVolfile(volfile(dirs, true), 'dist-replica-test.vol'), { id: 1, registry, log: Logger.create('error') });
  const names = Array.from({ length: 10 }, (_, i) => `f${i}`);
  try {
    expect(await within(graph.start(5000))).toBe('up');
    const b = newBridge(graph);
    for (const n of names) await writeFile(b, `/${n}`, `first ${n}`);
    // One brick of each set goes away; the rewrites reach only the other.
    (graph.xlators.get('pair0-client-1') as Switch).down();
    (graph.xlators.get('pair1-client-0') as Switch).down();
    for (const n of names) {
      const fh = await b.open(`/${n}`, fs.constants.O_RDWR);
      await b.write(`/${n}`, fh, Buffer.from(`again ${n}`), 0);
      await b.release(`/${n}`, fh);
    }
  } finally {
    await within(graph.stop(5000));
  }
  // Each set holds some of the files (the names spread over both).
  const setOf = (n: string) => (dataOn(dirs, n)[0] < 2 ? 0 : 1);
  expect(new Set(names.map(setOf))).toEqual(new Set([0, 1]));
  for (const n of names) expect(fs.readFileSync(path.join(dirs[setOf(n) === 0 ? 1 : 2], n), 'utf8')).toBe(`first ${n}`);

  const file = path.join(tempDir('xlstack-heal-cli-vol-'), 'dist-replica.vol');
  fs.writeFileSync(file, volfile(dirs, false));
  const before = await run([file, 'info']);
  expect(before.code).toBe(0);
  expect(before.out).toMatch(/^pair0: \/f\d \(file [0-9a-f-]{36}\): data: behind on pair0-client-1/m);
  expect(before.out).toMatch(/^pair1: \/f\d \(file [0-9a-f-]{36}\): data: behind on pair1-client-0/m);

  const healed = await run([file]);
  expect(healed).toEqual({ code: 0, out: expect.stringMatching(/^healed \d+ object\(s\) \(pair0: [1-9]\d*, pair1: [1-9]\d*\)\n$/) });
  for (const n of names) {
    const copies = setOf(n) === 0 ? [dirs[0], dirs[1]] : [dirs[2], dirs[3]];
    for (const d of copies) expect([n, fs.readFileSync(path.join(d, n), 'utf8')]).toEqual([n, `again ${n}`]);
  }
  const after = await run([file, 'info']);
  expect(after).toEqual({ code: 0, out: expect.stringMatching(/^pair0: children: pair0-client-0 \(up\), pair0-client-1 \(up\)\npair1: children: .*\n0 object\(s\) need heal\n$/) });
}, 60_000);
