// cluster/replicate over protocol/client, bricks in this process, one of them reached through
// a proxy the test cuts: a write on a brick whose connection breaks mid-call is answered from
// the other copy at once (protocol/client alone would wait for the brick to come back, up to
// frame-timeout, and send it again), it is never sent again, the copy it missed is recorded,
// an fd held across the break keeps working on both copies, and one opened during it is
// opened on the returning brick.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { buildGraph } from '../../src/core/builder';
import type { Graph } from '../../src/core/graph';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import { parseVolfile } from '../../src/core/volfile';
import type { Gate } from '../../xlators/debug/gate';
import type { Replicate } from '../../xlators/cluster/replicate/index';
import { clientLogin, freePort, serverLogin } from '../helpers/brick';
import { cleanupGraphs, newBridge, tempDir, within, writeFile } from '../helpers/graphs';
import { waitFor } from '../helpers/mount';
import { startBrickGraph, stopNetGraphs } from '../helpers/protocol';
import { changelogOf } from '../helpers/replica';

const clients: Graph[] = [];
afterEach(async () => {
  for (const g of clients.splice(0)) await within(g.stop(5000)).catch(() => undefined);
  await stopNetGraphs();
  await cleanupGraphs();
});

const { O_RDWR } = fs.constants;

const brickText = (i: number, dir: string, port: number) => `volume posix${i}
 type storage/posix
 option directory ${dir}
end-volume
volume index${i}
 type features/index
 option directory ${dir}-index
 subvolumes posix${i}
end-volume
volume gate${i}
 type debug/gate
 subvolumes index${i}
end-volume
volume locks${i}
 type features/locks
 subvolumes gate${i}
end-volume
volume server${i}
 type protocol/server
 option listen-port ${port}
${serverLogin(`locks${i}`)} subvolumes locks${i}
end-volume
`;

/** A TCP proxy to `port` that the test cuts (connections dropped, none taken) and opens again. */
async function cuttable(port: number): Promise<{ port: number; cut(): Promise<void>; open(): Promise<void>; close(): void }> {
  const sockets = new Set<net.Socket>();
  const listen = () => {
    const server = net.createServer((a) => {
      const b = net.connect({ host: '127.0.0.1', port });
      for (const s of [a, b]) {
        sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => (a.destroy(), b.destroy(), sockets.delete(s)));
      }
      a.pipe(b);
      b.pipe(a);
    });
    return server;
  };
  let server = listen();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const own = (server.address() as net.AddressInfo).port;
  return {
    port: own,
    async cut() {
      const closed = new Promise((r) => server.close(r));
      for (const s of sockets) s.destroy();
      await closed;
    },
    async open() {
      server = listen();
      await new Promise<void>((r) => server.listen(own, '127.0.0.1', r));
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

async function setup() {
  const dirs = [tempDir(), tempDir()];
  const ports = [await freePort(), await freePort()];
  const bricks = [await startBrickGraph(brickText(0, dirs[0], ports[0])), await startBrickGraph(brickText(1, dirs[1], ports[1]))];
  const proxy = await cuttable(ports[1]);
  const client = (i: number, port: number) => `volume c${i}
 type protocol/client
 option remote-port ${port}
 option remote-subvolume locks${i}
${clientLogin()} option ping-timeout 2
 option frame-timeout 60
end-volume
`;
  const text = `${client(0, ports[0])}${client(1, proxy.port)}volume replica
 type cluster/replicate
 option self-heal-daemon off
 option background-self-heal-count 0
 subvolumes c0 c1
end-volume
`;
  const logs: string[] = [];
  const graph = buildGraph(parseVolfile(text, 'client.vol'), { id: 900, registry: new Registry(), log: Logger.create('debug', (l) => logs.push(l)) });
  clients.push(graph);
  expect(await within(graph.start(5000))).toBe('up');
  const afr = graph.xlators.get('replica') as Replicate;
  await waitFor(() => afr.subvols.upList().length === 2, 10_000, 'both children up');
  const gates = bricks.map((b, i) => b.graph.xlators.get(`gate${i}`) as Gate);
  return { dirs, proxy, graph, afr, gates, logs, b: newBridge(graph) };
}

test('a write in flight on a brick whose connection breaks: answered at once from the other copy, never sent again, the miss recorded; fds keep working', async () => {
  const { dirs, proxy, afr, gates, b } = await setup();
  try {
    await writeFile(b, '/f', 'aaaa');
    const held = await b.open('/f', O_RDWR);
    await afr.txns.settleAll();
    const writesAt1 = () => gates[1].calls.get('write') ?? 0;
    const before = writesAt1();
    const hold = gates[1].hold('write', 'before');
    const write = b.write('/f', held, Buffer.from('bbbb'), 0);
    await within(hold.reached);
    await proxy.cut();
    // Far inside frame-timeout (60 s): nobody waited for the brick.
    expect(await within(write, 10_000)).toBe(4);
    expect(afr.subvols.isUp(1)).toBe(false);
    expect(changelogOf(dirs[0], 'f')['pending.c1'][0]).toBe(1);
    // While it is away: a new fd, a write through the held one.
    const late = await b.open('/f', O_RDWR);
    await b.write('/f', held, Buffer.from('cc'), 4);
    hold.release();
    await proxy.open();
    await waitFor(() => afr.subvols.isUp(1), 10_000, 'c1 to come back');
    await b.write('/f', held, Buffer.from('dd'), 6);
    await b.write('/f', late, Buffer.from('ee'), 8);
    // Held write and the two after the return: the interrupted one was not sent again.
    expect(writesAt1() - before).toBe(3);
    await b.release('/f', held);
    await b.release('/f', late);
    await afr.txns.settleAll();
    expect(fs.readFileSync(path.join(dirs[0], 'f'), 'utf8')).toBe('bbbbccddee');
    // c1 got what reached it while it was up (the held write landed there after all), not the rest: the changelog says so.
    expect(fs.readFileSync(path.join(dirs[1], 'f'), 'utf8')).toBe('bbbb\0\0ddee');
    expect(changelogOf(dirs[0], 'f')['pending.c1'][0]).toBeGreaterThan(0);
    const pass = await within(afr.heal.pass(), 20_000);
    expect(pass.healed).toBeGreaterThan(0);
    expect(fs.readFileSync(path.join(dirs[1], 'f'), 'utf8')).toBe('bbbbccddee');
  } finally {
    proxy.close();
  }
});
