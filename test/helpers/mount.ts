// Real xlstack mounts for integration tests. The daemon runs as a child process (the
// `xlstack` CLI from dist/), every wait is bounded, and a mount is always taken down:
// `xlstack unmount`, then a lazy `fusermount -uz`, then SIGKILL of the daemon by its PID.
import { ChildProcess, execFile, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export const CLI = path.resolve(__dirname, '../../src/cli/main.js');
const READY_TIMEOUT_MS = 20_000;
/** Bounds of a takedown: each unmount attempt, then the daemon's exit (together under a jest hook's 60 s). */
const UNMOUNT_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 20_000;

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI to completion (bounded), as a separate process. */
export function xlstack(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    // A statedump of a busy daemon may pass execFile's default 1 MiB of output.
    execFile(process.execPath, [CLI, ...args], { timeout: opts.timeoutMs ?? 30_000, env: opts.env ?? process.env, maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number | null) ?? null : 0;
      resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
    });
  });
}

export function isMounted(mountpoint: string): boolean {
  const abs = path.resolve(mountpoint);
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === abs);
}

export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Waits for `p`, at most `ms`. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const alive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

export interface TestMount {
  readonly dir: string;
  readonly mountpoint: string;
  readonly backing: string;
  readonly volfile: string;
  readonly pid: number;
  /** Everything the daemon wrote to stderr so far. */
  log(): string;
  /** Settles when the daemon process exits. */
  readonly exited: Promise<number | null>;
  unmount(): Promise<void>;
}

/** Mounts started and not yet taken down, with their daemon. */
const live = new Map<TestMount, ChildProcess>();

export interface MountOptions {
  /** The volfile text; `@BACKING@` is replaced by the backing directory. */
  readonly volfile?: string;
  readonly args?: string[];
  /** Options for node itself (e.g. --expose-gc). */
  readonly nodeArgs?: string[];
  /** An existing directory to mount on (default: a fresh one). */
  readonly mountpoint?: string;
}

export const POSIX_VOLFILE = `
volume test-posix
    type storage/posix
    option directory @BACKING@
end-volume
`;

/** Mounts a volfile (by default posix alone) on fresh directories and waits until it serves. */
export async function startMount(opts: MountOptions = {}): Promise<TestMount> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlstack-it-'));
  fs.chmodSync(dir, 0o755);
  const mountpoint = opts.mountpoint ?? path.join(dir, 'mnt');
  const backing = path.join(dir, 'backing');
  const volfile = path.join(dir, 'test.vol');
  if (!opts.mountpoint) fs.mkdirSync(mountpoint, { mode: 0o755 });
  fs.mkdirSync(backing, { mode: 0o755 });
  fs.writeFileSync(volfile, (opts.volfile ?? POSIX_VOLFILE).replace(/@BACKING@/g, backing));

  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), CLI, 'mount', volfile, mountpoint, ...(opts.args ?? [])], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));

  const m: TestMount = {
    dir,
    mountpoint,
    backing,
    volfile,
    pid: child.pid!,
    log: () => log,
    exited,
    unmount: () => takeDown(m, child),
  };
  live.set(m, child);
  try {
    await waitFor(() => isMounted(mountpoint) || !alive(child), READY_TIMEOUT_MS, `${mountpoint} to be mounted`);
    if (!alive(child)) throw new Error(`xlstack mount exited (${child.exitCode}) before serving:\n${log}`);
    // The mount appears in /proc/mounts before INIT is answered; wait for the daemon's word.
    await waitFor(() => log.includes('serving ') || !alive(child), READY_TIMEOUT_MS, 'the daemon to report serving');
    if (!alive(child)) throw new Error(`xlstack mount exited (${child.exitCode}):\n${log}`);
  } catch (e) {
    await m.unmount();
    throw e;
  }
  return m;
}

async function takeDown(m: TestMount, child: ChildProcess): Promise<void> {
  if (!live.delete(m)) return;
  try {
    if (alive(child)) {
      const r = await xlstack(['unmount', m.mountpoint], { timeoutMs: UNMOUNT_TIMEOUT_MS });
      if (r.code !== 0) await xlstack(['unmount', '--lazy', m.mountpoint], { timeoutMs: UNMOUNT_TIMEOUT_MS });
      if ((await within(m.exited, EXIT_TIMEOUT_MS)) === undefined) {
        // Taken down by force below; say why the daemon did not go by itself.
        process.stderr.write(`xlstack daemon ${m.pid} on ${m.mountpoint} did not exit after unmount (${r.code}: ${r.stderr.trim()}); its log ends:\n${m.log().slice(-4000)}\n`);
      }
    }
  } finally {
    lastResort(m, child);
    fs.rmSync(m.dir, { recursive: true, force: true });
  }
}

/** A statedump, as `xlstack statedump` prints it (tests read what they need). */
/* eslint-disable @typescript-eslint/no-explicit-any */
export type Statedump = Record<string, any> & { activeGraph: number; graphs: (Record<string, any> & { id: number })[] };
/* eslint-enable @typescript-eslint/no-explicit-any */

/** The mount's statedump (throws if the command fails). */
export async function statedump(m: TestMount): Promise<Statedump> {
  const r = await xlstack(['statedump', m.mountpoint], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`xlstack statedump failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** The statedump once only the active graph is alive (polled at most `ms`; the last one read otherwise). */
export async function settledStatedump(m: TestMount, ms = 15_000): Promise<Statedump> {
  const end = Date.now() + ms;
  let d = await statedump(m);
  while (d.graphs.length > 1 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    d = await statedump(m);
  }
  return d;
}

/** Whatever happened before: leave nothing mounted and no daemon running. */
function lastResort(m: TestMount, child: ChildProcess): void {
  if (isMounted(m.mountpoint)) spawnSync('fusermount', ['-uz', m.mountpoint], { timeout: 10_000 });
  if (alive(child)) child.kill('SIGKILL');
}

/** For afterAll: takes down every mount a test file started and did not take down. */
export async function unmountAll(): Promise<void> {
  await Promise.all([...live.keys()].map((m) => m.unmount()));
}

// A test file that dies halfway still leaves nothing mounted.
process.on('exit', () => {
  for (const [m, child] of live) lastResort(m, child);
});
