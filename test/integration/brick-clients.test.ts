// Two client mounts of one brick, as two machines would use it: locks taken through one mount
// hold against processes of the other (features/locks on the brick), a blocked lock is
// interrupted by a signal, and appenders on both mounts lose no line. On fuse-native (no lock
// operation) locks stay local to each mount: tested as what it does.
import * as fs from 'fs';
import * as path from 'path';
import { v4 as uuidv4 } from 'uuid';
import { TestBrick, brickWaiting, brickXlator, clientLogin, serverLogin, startBrick } from '../helpers/brick';
import { TestMount, startMount, waitFor } from '../helpers/mount';
import { runPyTool } from '../helpers/pytools';
import { ROOT_GFID, RawConn, outcome } from '../helpers/raw-peer';
import { cleanupScratch, scratchDir } from '../helpers/scratch';
import type { Json } from '../helpers/workload';

/**
 * A brick with features/locks (what its clients lock, they lock against each other) under
 * debug/trace, whose history shows each write as the brick received it.
 */
const brickVolfile = (dir: string, port: number) => `volume brick-posix
    type storage/posix
    option directory ${dir}
end-volume

volume brick-locks
    type features/locks
    subvolumes brick-posix
end-volume

volume brick-trace
    type debug/trace
    option log-history on
    option history-size 100000
    subvolumes brick-locks
end-volume

volume brick-server
    type protocol/server
    option listen-port ${port}
${serverLogin('brick-trace')}    subvolumes brick-trace
end-volume
`;

const clientVolfile = (port: number) => `volume remote
    type protocol/client
    option remote-port ${port}
    option remote-subvolume brick-trace
${clientLogin()}    option ping-timeout 5
    option frame-timeout 30
end-volume
`;

type Scenario = { [key: string]: Json };

/** The sizes of the writes the brick has received so far, in order. */
function brickWrites(brick: TestBrick): number[] {
  const history = brickXlator(brick, 'debug/trace').history as string[];
  return history.flatMap((l) => /\bwrite\([^,]*, [^,]*, <(\d+) bytes>/.exec(l)?.[1] ?? []).map(Number);
}

/** 410 lines of 10 bytes through one O_APPEND fd of a new, empty file: line 409 spans bytes 4090-4099. */
async function appendAcrossPage(brick: TestBrick, m: TestMount): Promise<number[]> {
  const file = path.join(m.mountpoint, 'across-a-page');
  fs.writeFileSync(file, '');
  const go = path.join(m.dir, 'split-go');
  fs.writeFileSync(go, '');
  const before = (await brickWrites(brick)).length;
  expect(await runPyTool<Scenario>('append-lines', [file, 'spl', '410', path.join(m.dir, 'split-ready'), go])).toEqual({ written: 410, short: [] });
  expect(fs.readFileSync(path.join(brick.dir, 'across-a-page'), 'utf8')).toBe(Array.from({ length: 410 }, (_, i) => `spl ${String(i).padStart(5, '0')}\n`).join(''));
  return (await brickWrites(brick)).slice(before);
}

/** The same scenario with both processes on one plain file: what Linux does. */
const onPlain = (scenario: string): Promise<Scenario> => {
  const f = path.join(scratchDir('xlstack-plain-locks-'), 'f');
  return runPyTool<Scenario>(scenario, [f, f]);
};

afterAll(cleanupScratch);

describe('kernel transport: two mounts of one brick', () => {
  let brick: TestBrick;
  let m1: TestMount;
  let m2: TestMount;
  /** The same file through each mount. */
  const on = (m: TestMount, name: string) => path.join(m.mountpoint, name);

  beforeAll(async () => {
    brick = await startBrick({ volfile: brickVolfile });
    m1 = await startMount({ volfile: clientVolfile(brick.port) });
    m2 = await startMount({ volfile: clientVolfile(brick.port) });
  });

  test('fcntl locks hold between the mounts: conflicts refused, F_GETLK names the holder, close releases', async () => {
    const r = await runPyTool<Scenario>('locks-posix', [on(m1, 'posix'), on(m2, 'posix')]);
    expect(r).toEqual(await onPlain('locks-posix'));
    expect(r).toMatchObject({ bConflict: 'EAGAIN', bGetlk: { pid: 'A' }, aGetlkOfB: { pid: 'B' }, bAfterAClosedAnFd: 'ok' });
  });

  test('flock locks hold between the mounts, and go with the open file', async () => {
    const r = await runPyTool<Scenario>('locks-flock', [on(m1, 'flock'), on(m2, 'flock')]);
    expect(r).toEqual(await onPlain('locks-flock'));
    expect(r).toMatchObject({ bExclusive: 'EAGAIN', bAfterClose: 'ok' });
  });

  test('an F_SETLKW waiting on the brick, interrupted by a signal: EINTR, and never granted later', async () => {
    const ready = path.join(m1.dir, 'blocked');
    const go = path.join(m1.dir, 'go');
    const run = runPyTool<Scenario>('lock-interrupt', [on(m1, 'interrupt'), on(m2, 'interrupt'), ready, go]);
    await waitFor(() => fs.existsSync(ready), 20_000, 'B to block in F_SETLKW');
    // The probe: the brick's lock table holds B's request.
    let waiting = 0;
    for (const end = Date.now() + 10_000; waiting === 0 && Date.now() < end; ) waiting = brickWaiting(brick);
    expect(waiting).toBe(1);
    fs.writeFileSync(go, '');
    expect(await run).toMatchObject({ bBlocked: true, go: true, bResult: 'EINTR', cSeesA: { pid: 'A' }, cGetlkAfter: { type: 'unlock' }, cTakes: 'ok', bRefusedNow: 'EAGAIN' });
    expect(brickWaiting(brick)).toBe(0);
  });

  test('an O_APPEND writer on each mount, 2,000 lines each: all 4,000 lines are in the file, each once, each writer\'s in order', async () => {
    const name = 'appended';
    fs.writeFileSync(on(m1, name), '');
    const go = path.join(m1.dir, 'append-go');
    const ready = [path.join(m1.dir, 'ready-1'), path.join(m2.dir, 'ready-2')];
    const writers = [
      runPyTool<Scenario>('append-lines', [on(m1, name), 'one', '2000', ready[0], go]),
      runPyTool<Scenario>('append-lines', [on(m2, name), 'two', '2000', ready[1], go]),
    ];
    await waitFor(() => ready.every((f) => fs.existsSync(f)), 20_000, 'both writers to open the file');
    fs.writeFileSync(go, '');
    expect(await Promise.all(writers)).toEqual([
      { written: 2000, short: [] },
      { written: 2000, short: [] },
    ]);
    const lines = fs.readFileSync(path.join(brick.dir, name), 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(4000);
    expect(new Set(lines).size).toBe(4000);
    for (const tag of ['one', 'two']) {
      const mine = lines.filter((l) => l.startsWith(`${tag} `));
      expect(mine).toEqual(Array.from({ length: 2000 }, (_, i) => `${tag} ${String(i).padStart(5, '0')}`));
    }
  });

  test('an appending write that crosses a page reaches the brick as one write (the handle is uncached)', async () => {
    expect(await appendAcrossPage(brick, m1)).toEqual(Array(410).fill(10));
  });

  test('nothing went wrong on either side', () => {
    for (const log of [m1.log(), m2.log(), brick.log()]) expect(log).not.toMatch(/ERROR/);
  });
});

describe('fuse-native transport: two mounts of one brick', () => {
  let brick: TestBrick;
  let m1: TestMount;
  let m2: TestMount;
  const on = (m: TestMount, name: string) => path.join(m.mountpoint, name);

  beforeAll(async () => {
    brick = await startBrick({ volfile: brickVolfile });
    const args = ['--transport', 'fuse-native'];
    m1 = await startMount({ volfile: clientVolfile(brick.port), args });
    m2 = await startMount({ volfile: clientVolfile(brick.port), args });
  });

  test('fcntl locks stay local to each mount: the other mount\'s process is never refused', async () => {
    const r = await runPyTool<Scenario>('locks-posix', [on(m1, 'posix'), on(m2, 'posix')]);
    // A is alone on mount 1; B and C share mount 2, where the kernel keeps their locks.
    expect(r).toEqual({
      ...(await onPlain('locks-posix')),
      bConflict: 'ok',
      bReadConflict: 'ok',
      bGetlk: { type: 'unlock' },
      aGetlkOfB: { type: 'unlock' },
      bStillRefusedAt0: 'ok',
    });
  });

  test('flock locks stay local to each mount', async () => {
    const r = await runPyTool<Scenario>('locks-flock', [on(m1, 'flock'), on(m2, 'flock')]);
    expect(r).toEqual({
      ...(await onPlain('locks-flock')),
      bExclusive: 'ok',
      bShared: 'ok',
      aUpgradeRefused: 'ok',
    });
  });

  test('an appending write that crosses a page reaches the brick in two pieces (no per-file direct I/O): appenders on two mounts can interleave inside a line', async () => {
    expect(await appendAcrossPage(brick, m1)).toEqual([...Array(409).fill(10), 6, 4]);
  });
});

describe('a client that sends offsets no file can have', () => {
  test('negative, fractional or past 2^53: refused (EINVAL) before storage, which would write at the fd\'s own position', async () => {
    const brick = await startBrick({ volfile: brickVolfile });
    const c = await RawConn.open(brick.port);
    expect(await c.hello('brick-trace')).toEqual({ ok: true });
    const made = await c.request('create', [{ path: '/f', parent: ROOT_GFID, name: 'f', gfid: uuidv4() }, 0o644, { flags: fs.constants.O_RDWR }]);
    expect(outcome(made)).toBe('OK');
    const fd = made!.ok ? made!.fd : -1;
    expect(outcome(await c.request('write', [fd, Buffer.from('0123456789'), 0]))).toBe('OK');
    const refused: { [what: string]: string } = {};
    for (const off of [-1, -5, 0.5, 2 ** 53, 2 ** 60]) {
      refused[`write@${off}`] = outcome(await c.request('write', [fd, Buffer.from('X'), off]));
      refused[`read@${off}`] = outcome(await c.request('read', [fd, 4, off]));
      refused[`ftruncate ${off}`] = outcome(await c.request('ftruncate', [fd, off]));
      refused[`fallocate@${off}`] = outcome(await c.request('fallocate', [fd, 0, off, 1]));
      refused[`seek@${off}`] = outcome(await c.request('seek', [fd, off, 'data']));
    }
    expect(Object.entries(refused).filter(([, r]) => r !== 'EINVAL')).toEqual([]);
    expect(fs.readFileSync(path.join(brick.dir, 'f'), 'latin1')).toBe('0123456789');
    c.destroy();
  });
});
