// Brick processes for tests: `xlstack brick` as a child process on a free port, started,
// killed (SIGKILL) and restarted at will; every wait bounded; always stopped in the end.
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { CLI, waitFor, within } from './mount';

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The login the test bricks admit (a test password: nothing secret). */
export const TEST_USER = 'xlstack-test';
export const TEST_PASSWORD = 'test-only-password';

/** protocol/server options that let TEST_USER log in to `volume`. */
export const serverLogin = (volume: string, user = TEST_USER, password = TEST_PASSWORD) =>
  `    option auth.login.${volume}.allow ${user}\n    option auth.login.${user}.password ${password}\n`;

/** protocol/client options that log in as TEST_USER. */
export const clientLogin = (user = TEST_USER, password = TEST_PASSWORD) => `    option username ${user}\n    option password ${password}\n`;

/** A brick volfile: storage/posix over `dir`, served on `port` as volume `brick-posix` to TEST_USER. */
export const brickVolfile = (dir: string, port: number, serverOptions = '') => `volume brick-posix
    type storage/posix
    option directory ${dir}
end-volume

volume brick-server
    type protocol/server
    option listen-port ${port}
${serverLogin('brick-posix')}${serverOptions}    subvolumes brick-posix
end-volume
`;

/** The same with features/locks over storage/posix (served as volume `brick-locks`): its clients lock against each other. */
export const lockingBrickVolfile = (dir: string, port: number, serverOptions = '') => `volume brick-posix
    type storage/posix
    option directory ${dir}
end-volume

volume brick-locks
    type features/locks
    subvolumes brick-posix
end-volume

volume brick-server
    type protocol/server
    option listen-port ${port}
${serverLogin('brick-locks')}${serverOptions}    subvolumes brick-locks
end-volume
`;

/** A client volfile for a brick on `port`, logged in as TEST_USER (tight timeouts: tests must not wait long), `extra` volumes on top. */
export const clientVolfile = (port: number, extra = '', subvolume = 'brick-posix') => `volume remote
    type protocol/client
    option remote-port ${port}
    option remote-subvolume ${subvolume}
${clientLogin()}    option ping-timeout 2
    option frame-timeout 20
end-volume
${extra}`;

export interface TestBrick {
  readonly dir: string;
  /** The brick's volfile (what `xlstack reload/statedump` name it by). */
  readonly volfile: string;
  readonly port: number;
  /** Everything every incarnation of the brick wrote to stderr. */
  log(): string;
  readonly pid: number;
  /** Starts the brick (again); resolves once it serves. */
  start(): Promise<void>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

const live = new Set<TestBrick>();

export async function startBrick(opts: { port?: number; volfile?: (dir: string, port: number) => string } = {}): Promise<TestBrick> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlstack-brick-'));
  const storage = path.join(dir, 'storage');
  fs.mkdirSync(storage);
  const port = opts.port ?? (await freePort());
  const volfile = path.join(dir, 'brick.vol');
  fs.writeFileSync(volfile, (opts.volfile ?? brickVolfile)(storage, port));
  let child: ChildProcess | undefined;
  let logs = '';
  const alive = () => !!child && child.exitCode === null && child.signalCode === null;
  const exited = (c: ChildProcess) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(undefined) : c.once('exit', r)));

  const b: TestBrick = {
    dir: storage,
    volfile,
    port,
    log: () => logs,
    get pid() {
      return child?.pid ?? -1;
    },
    async start() {
      const c = spawn(process.execPath, [CLI, 'brick', volfile], { stdio: ['ignore', 'ignore', 'pipe'] });
      child = c;
      const mark = logs.length;
      c.stderr!.setEncoding('utf8').on('data', (d: string) => (logs += d));
      await waitFor(() => logs.slice(mark).includes(' up (pid') || c.exitCode !== null, 20_000, 'the brick to come up');
      if (c.exitCode !== null) throw new Error(`brick exited (${c.exitCode}):\n${logs.slice(mark)}`);
    },
    async kill9() {
      if (!child || !alive()) return;
      const c = child;
      c.kill('SIGKILL');
      await within(exited(c), 10_000);
    },
    async stop() {
      live.delete(b);
      if (child && alive()) {
        const c = child;
        c.kill('SIGTERM');
        if ((await within(exited(c).then(() => 'exited'), 10_000)) !== 'exited') c.kill('SIGKILL');
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(b);
  await b.start();
  return b;
}

/** For afterAll: stops every brick a test file started. */
export async function stopBricks(): Promise<void> {
  await Promise.all([...live].map((b) => b.stop()));
}

process.on('exit', () => {
  for (const b of live) {
    try {
      process.kill(b.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

/** The statedump of a brick's translator of `type`, on its active graph (`xlstack statedump`). */
export function brickXlator(b: TestBrick, type: string): Record<string, unknown> {
  const r = spawnSync(process.execPath, [CLI, 'statedump', b.volfile], { encoding: 'utf8', timeout: 10_000, maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`brick statedump failed (${r.status}): ${r.stderr} ${r.stdout.slice(0, 300)}`);
  const active = JSON.parse(r.stdout).graphs.find((g: { state: string }) => g.state === 'active');
  return active.xlators.find((x: { type: string }) => x.type === type);
}

/** How many lock requests the brick's features/locks has waiting. */
export const brickWaiting = (b: TestBrick): number => Number(brickXlator(b, 'features/locks').waiting ?? 0);
