// A brick is a daemon like a mount: one graph lifecycle (SIGHUP or `xlstack reload VOLFILE`
// applies options in place or switches graphs, clients reopening their files on the new one),
// statedumps (`xlstack statedump VOLFILE`, SIGUSR1 to a 0600 file), and SIGUSR1 never opens
// Node's inspector in a root process.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { TestBrick, brickVolfile, clientVolfile, startBrick, stopBricks } from '../helpers/brick';
import { TestMount, startMount, unmountAll, waitFor, within, xlstack } from '../helpers/mount';

let brick: TestBrick;
let mnt: TestMount;

beforeAll(async () => {
  brick = await startBrick();
  mnt = await startMount({ volfile: clientVolfile(brick.port) });
});

afterAll(async () => {
  await unmountAll();
  await stopBricks();
});

/** TCP ports listening, from /proc/net/tcp (state 0A). */
function listeningPorts(): number[] {
  return fs
    .readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[3] === '0A')
    .map((f) => parseInt(f[1].split(':')[1], 16));
}

test('xlstack statedump VOLFILE: the brick\'s graph, its server and clients', async () => {
  const r = await xlstack(['statedump', brick.volfile]);
  expect(r.code).toBe(0);
  const d = JSON.parse(r.stdout);
  expect(d.pid).toBe(brick.pid);
  expect(d.graphs.map((g: { state: string }) => g.state)).toEqual(['active']);
  const server = d.graphs[0].xlators.find((x: { type: string }) => x.type === 'protocol/server');
  expect(server.clients.length).toBeGreaterThanOrEqual(1);
});

test('SIGUSR1 writes a statedump readable by root only, and opens no inspector port', async () => {
  const before = brick.log().length;
  process.kill(brick.pid, 'SIGUSR1');
  await waitFor(() => /statedump written to (\S+)/.test(brick.log().slice(before)), 10_000, 'the statedump');
  const file = /statedump written to (\S+)/.exec(brick.log().slice(before))![1];
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  expect(JSON.parse(fs.readFileSync(file, 'utf8')).pid).toBe(brick.pid);
  fs.rmSync(file);
  // The signal has been handled (the dump is written): an inspector would be listening by now.
  expect(listeningPorts()).not.toContain(9229);
  expect(brick.log()).not.toContain('Debugger listening');
});

test('a reload applies options in place, and a new topology switches graphs while a client keeps a file open', async () => {
  const f = path.join(mnt.mountpoint, 'kept-open');
  const writer: ChildProcess = spawn(
    process.execPath,
    ['-e', `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(f)}, 'w+'); let n = 0;
      process.stdin.on('data', () => { fs.writeSync(fd, 'line ' + (n++) + '\\n'); console.log('wrote'); });`],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const write = async () => {
    const done = new Promise((r) => writer.stdout!.once('data', r));
    writer.stdin!.write('w\n');
    await within(done, 20_000);
  };
  try {
    await write();
    fs.writeFileSync(brick.volfile, brickVolfile(brick.dir, brick.port, '    option auth.allow 127.0.0.*\n'));
    expect((await xlstack(['reload', brick.volfile])).stdout).toContain('reconfigured: graph 1');
    // A new layer under the server (the volume clients ask for keeps its name): graph 2 takes
    // the listening socket, graph 1 lets its clients go.
    const layered = brickVolfile(brick.dir, brick.port, '    option auth.allow 127.0.0.*\n')
      .replace('volume brick-posix\n', 'volume brick-storage\n')
      .replace('volume brick-server', 'volume brick-posix\n    type debug/delay-gen\n    subvolumes brick-storage\nend-volume\n\nvolume brick-server');
    fs.writeFileSync(brick.volfile, layered);
    process.kill(brick.pid, 'SIGHUP');
    await waitFor(() => brick.log().includes('switched to graph 2'), 20_000, 'the brick to switch to graph 2');
    await write(); // through the fd opened on graph 1: reopened on graph 2 by GFID
    await waitFor(() => brick.log().includes('graph 1: cleaned up'), 20_000, 'graph 1 to go');
    expect(fs.readFileSync(path.join(brick.dir, 'kept-open'), 'utf8')).toBe('line 0\nline 1\n');
    const d = JSON.parse((await xlstack(['statedump', brick.volfile])).stdout);
    expect(d.graphs.map((g: { id: number }) => g.id)).toEqual([2]);
    expect(d.graphs[0].xlators.map((x: { type: string }) => x.type)).toContain('debug/delay-gen');
  } finally {
    writer.kill('SIGKILL');
  }
});
