import * as fs from 'fs';
import * as path from 'path';
import { buildGraph } from '../core/builder';
import type { Graph } from '../core/graph';
import { GraphLifecycle, LifecycleOptions } from '../core/lifecycle';
import { FileSink, LOG_LEVELS, LogLevel, Logger, stderrSink } from '../core/log';
import { Registry } from '../core/registry';
import { readVolfile } from '../core/volfile';
import { mountNativeTransport } from '../fuse/fuse-native';
import { unmountKernel } from '../fuse/kernel/mount';
import { mountKernelTransport, serveSupervisedKernel } from '../fuse/kernel/transport';
import { RecordWriter, Resume } from '../supervisor/record';
import { RECORD_DIR_ENV, Supervisor, SupervisorDump, WORKER_ENV, WORKER_FUSE_FD, takeSupervisorIdentity } from '../supervisor/supervisor';
import { MountSpec, Mounted, TRANSPORTS, TransportName } from '../fuse/mounted';
import { GraphSwitcher } from '../fuse/switcher';
import { ParsedArgs, UsageError, parseArgs } from './args';
import { runInBackground, tellParent } from './background';
import { NoDaemonError, callControl } from './control';
import { BrickDaemon, BrickHost } from './brick';
import { MountDaemon, writePrivate } from './daemon';
import { checkFuse, checkMountpoint, isDeadMount, mountAt } from './preflight';
import { rebalance as runRebalance } from './rebalance';
import { controlSocket, recordDir } from './runtime';

/** How long a new graph may take to report that its children are up. */
const START_TIMEOUT_MS = 10_000;
/** How long an old graph's translators may take to finish their background work. */
const STOP_TIMEOUT_MS = 10_000;
/** After a switch, handles left idle move to the new graph this much later, so old graphs can go. */
const SWEEP_AFTER_MS = 1000;
const CONTROL_TIMEOUT_MS = 30_000;
/** See BusyPoll in the fuse-native transport: on this kind of VM it cuts a small request's latency by a third. */
const DEFAULT_BUSY_POLL_US = 1000;

/** Options every daemon takes. */
const DAEMON_OPTIONS = ['pidfile', 'log-level', 'log-file'];

/** The logger a command asked for: stderr, or a file (reopened on SIGUSR2). */
function logger(args: ParsedArgs): { log: Logger; reopen?: () => void } {
  const level = args.options.get('log-level') ?? 'info';
  if (!(LOG_LEVELS as string[]).includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const file = args.options.get('log-file');
  if (!file) return { log: Logger.create(level as LogLevel, stderrSink()) };
  const sink = new FileSink(path.resolve(file));
  return { log: Logger.create(level as LogLevel, sink.write), reopen: () => sink.reopen() };
}

/** How a daemon's graphs are built and started, from its command line. */
function lifecycleOptions(args: ParsedArgs, volfile: string, log: Logger): LifecycleOptions {
  return {
    volfile,
    registry: new Registry(),
    log,
    passthroughUnknown: args.flags.has('passthrough-unknown'),
    startTimeoutMs: START_TIMEOUT_MS,
    stopTimeoutMs: STOP_TIMEOUT_MS,
  };
}

/** An option given in seconds (`def` when absent), in milliseconds. */
function seconds(args: ParsedArgs, name: string, def: number): number {
  const raw = args.options.get(name);
  const n = raw === undefined ? def : Number(raw);
  if (!Number.isFinite(n) || n < 0 || n > 3600) throw new UsageError(`--${name} must be a number of seconds from 0 to 3600`);
  return Math.round(n * 1000);
}

/** How long the kernel may trust names, attributes and missing names (GlusterFS's defaults: 1 s, 1 s, 0). */
export function cacheTimeouts(args: ParsedArgs): { entryTimeoutMs: number; attrTimeoutMs: number; negativeTimeoutMs: number } {
  return {
    entryTimeoutMs: seconds(args, 'entry-timeout', 1),
    attrTimeoutMs: seconds(args, 'attribute-timeout', 1),
    negativeTimeoutMs: seconds(args, 'negative-timeout', 0),
  };
}

const MOUNT_SPEC = {
  flags: ['passthrough-unknown', 'background', 'single-process'],
  options: [...DAEMON_OPTIONS, 'transport', 'busy-poll-us', 'entry-timeout', 'attribute-timeout', 'negative-timeout'],
  positionals: ['volfile', 'mountpoint'],
  // What mount(8) and fstab pass along that means nothing here.
  mountOptions: ['rw', 'defaults', 'auto', 'noauto', 'user', 'nouser', 'users', 'nofail', '_netdev', 'exec', 'noexec', 'suid', 'nosuid', 'dev', 'nodev', 'atime', 'relatime', 'noatime', 'comment'],
};

export async function mount(argv: string[]): Promise<number> {
  const args = parseArgs(argv, MOUNT_SPEC);
  const transport = (args.options.get('transport') ?? 'kernel') as TransportName;
  if (!TRANSPORTS.includes(transport)) throw new UsageError(`--transport must be one of ${TRANSPORTS.join(', ')}`);
  const busyPollUs = Number(args.options.get('busy-poll-us') ?? DEFAULT_BUSY_POLL_US);
  if (!Number.isInteger(busyPollUs) || busyPollUs < 0 || busyPollUs > 1_000_000) throw new UsageError('--busy-poll-us must be an integer from 0 to 1000000');
  const timeouts = cacheTimeouts(args);
  const [volfilePath, mountpoint] = args.positionals.map((p) => path.resolve(p));
  if (args.flags.has('background')) return runInBackground(argv, mountpoint);
  const { log, reopen } = logger(args);
  checkFuse(transport);
  const worker = process.env[WORKER_ENV] !== undefined;
  // Mounting again where xlstack serves the same volfile: a live upgrade of its worker.
  if (!worker && (await servedSupervised(mountpoint, volfilePath))) return upgrade([mountpoint]);
  if (!worker && transport === 'kernel' && !args.flags.has('single-process')) return supervise(argv, args, mountpoint, volfilePath, log, reopen);
  // A worker's mountpoint is mounted already: its supervisor's.
  if (worker) takeSupervisorIdentity();
  else checkMountpoint(mountpoint);
  const switcher = new GraphSwitcher({ ...lifecycleOptions(args, volfilePath, log), sweepAfterMs: SWEEP_AFTER_MS });
  const core = (await switcher.start()).core;
  // The kernel has already applied the caller's umask to every mode it sends.
  process.umask(0);
  const spec: MountSpec = { mountpoint, fsname: `xlstack:${core.active.top.name}`, core, log, busyPollUs, ...timeouts };
  let mounted: Mounted;
  try {
    if (worker) {
      const { resume, supervisor } = await fromSupervisor();
      mounted = await serveSupervisedKernel(spec, { fd: WORKER_FUSE_FD, record: new RecordWriter(process.env[RECORD_DIR_ENV]!, resume), resume, supervisor });
    }
    else mounted = transport === 'kernel' ? await mountKernelTransport(spec) : await mountNativeTransport(spec, () => mountAt(mountpoint)?.fstype === 'fuse.xlstack');
  } catch (e) {
    await switcher.stopAll();
    throw e;
  }
  // A worker's pidfile is its supervisor's (the process to signal).
  const pidfile = worker ? undefined : args.options.get('pidfile');
  const daemon = new MountDaemon({ key: mountpoint, volfile: volfilePath, pidfile, switcher, mounted, log, reopenLog: reopen });
  await daemon.start();
  log.info(`serving ${volfilePath} on ${mountpoint} (graph ${core.active.id}, ${transport} transport, pid ${process.pid})`);
  // A worker keeps its channel to the supervisor (an upgrade goes through it); the channel
  // closes when the supervisor is killed, and nothing would restart this worker then.
  if (worker) {
    process.send!({ ready: true });
    process.once('disconnect', () => daemon.orphaned());
  } else tellParent({ ready: true });
  await daemon.done;
  return 0;
}

/** How long a worker waits for its supervisor's record. */
const RESUME_TIMEOUT_MS = 10_000;

/** In a worker: what its supervisor says it takes over (nothing for the first worker), and its state. */
function fromSupervisor(): Promise<{ resume?: Resume; supervisor: SupervisorDump }> {
  return new Promise((resolve, reject) => {
    // An upgrade's new worker waits until the one it replaces has retired.
    const timer = setTimeout(() => (process.off('message', take), reject(new Error(`no record from the supervisor within ${RESUME_TIMEOUT_MS / 1000} s`))), RESUME_TIMEOUT_MS);
    const take = (m: { resume?: Resume | null; supervisor: SupervisorDump }) => {
      if (!m || !('resume' in m)) return;
      clearTimeout(timer);
      process.off('message', take);
      resolve({ resume: m.resume ?? undefined, supervisor: m.supervisor });
    };
    process.on('message', take);
    process.send!({ standby: true });
  });
}

/**
 * Whether a supervised xlstack mount serves `volfile` on `mountpoint`: mounting it again there
 * is then a live upgrade. Another volfile there is a busy mountpoint (checkMountpoint says so).
 */
async function servedSupervised(mountpoint: string, volfile: string): Promise<boolean> {
  if (!mountAt(mountpoint)) return false;
  try {
    const d = (await callControl(controlSocket(mountpoint), { cmd: 'statedump' }, CONTROL_TIMEOUT_MS)) as { volfile?: string; transport?: { supervisor?: number } };
    return d.transport?.supervisor !== undefined && d.volfile === volfile;
  } catch {
    return false;
  }
}

/**
 * `xlstack mount` on the kernel transport: this process becomes the mount's supervisor (it
 * mounts and holds the /dev/fuse fd) and runs the same command as its worker, again
 * whenever one dies. The volfile is checked first, as the worker will build it, so that a bad
 * one mounts nothing.
 */
async function supervise(argv: string[], args: ParsedArgs, mountpoint: string, volfile: string, log: Logger, reopenLog?: () => void): Promise<number> {
  checkMountpoint(mountpoint);
  const top = checkedGraph(volfile, args, Logger.create('error', () => undefined)).top.name;
  const workerArgs = [...process.execArgv, process.argv[1], 'mount', ...argv];
  const sup = new Supervisor({ mountpoint, fsname: `xlstack:${top}`, log: log.child('supervisor'), reopenLog, workerArgs, recordDir: recordDir() });
  const pidfile = args.options.get('pidfile');
  if (pidfile) writePrivate(pidfile, `${process.pid}\n`, 0o644);
  try {
    await sup.start();
    log.info(`supervising ${mountpoint} (pid ${process.pid})`);
    tellParent({ ready: true });
    return await sup.done;
  } finally {
    if (pidfile) fs.rmSync(pidfile, { force: true });
  }
}

/** Asks the daemon known by `target` (a mountpoint, a brick's volfile); says plainly if none answers. */
async function ask(target: string, cmd: string): Promise<unknown> {
  try {
    return await callControl(controlSocket(target), { cmd }, CONTROL_TIMEOUT_MS);
  } catch (e) {
    if (e instanceof NoDaemonError) throw new NoDaemonError(`no xlstack daemon serves ${path.resolve(target)}`);
    throw e;
  }
}

export async function unmount(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['lazy'], positionals: ['mountpoint'] });
  const mountpoint = path.resolve(args.positionals[0]);
  const lazy = args.flags.has('lazy');
  try {
    await callControl(controlSocket(mountpoint), { cmd: lazy ? 'unmount-lazy' : 'unmount' }, CONTROL_TIMEOUT_MS);
  } catch (e) {
    if (!(e instanceof NoDaemonError)) throw new Error(`unmounting ${mountpoint}: ${(e as Error).message}`);
    // No daemon answers: a mount whose process died, or one of another tool.
    const m = mountAt(mountpoint);
    if (!m) throw new Error(`${mountpoint} is not mounted`);
    if (!m.fstype.startsWith('fuse')) throw new Error(`${mountpoint} is not a FUSE mount (${m.fstype})`);
    await unmountKernel(mountpoint, lazy || isDeadMount(mountpoint));
  }
  process.stdout.write(`unmounted ${mountpoint}\n`);
  return 0;
}

/** How long `xlstack upgrade` waits for the new worker to serve. */
const UPGRADE_TIMEOUT_MS = 30_000;

/**
 * A live upgrade of a supervised mount: its worker stops serving and hands over to a new one
 * (of the xlstack installed now), nothing unmounted; returns once the new one serves.
 */
export async function upgrade(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { positionals: ['mountpoint'] });
  const target = args.positionals[0];
  const { generation } = (await ask(target, 'upgrade')) as { generation: number };
  const until = Date.now() + UPGRADE_TIMEOUT_MS;
  for (;;) {
    const now = await ask(target, 'statedump').then(
      (d) => Number((d as { transport?: { generation?: number } }).transport?.generation ?? 0),
      () => 0,
    );
    if (now > generation) {
      process.stdout.write(`upgraded ${path.resolve(target)}: worker generation ${now}\n`);
      return 0;
    }
    if (Date.now() > until) throw new Error(`no new worker serves ${path.resolve(target)} within ${UPGRADE_TIMEOUT_MS / 1000} s (see the mount's log)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Asks the daemon to re-read its volfile, and says what happened. */
export async function reload(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { positionals: ['mountpoint'] });
  const r = (await ask(args.positionals[0], 'reload')) as { action: string; graph: number; detail?: string };
  process.stdout.write(`${r.action}: graph ${r.graph}${r.detail ? ` (${r.detail})` : ''}\n`);
  return 0;
}

/** A mount's statedump (by its mountpoint), or a brick's (by its volfile). */
export async function statedump(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { positionals: ['mountpoint'] });
  const dump = await ask(args.positionals[0], 'statedump');
  process.stdout.write(JSON.stringify(dump, null, 2) + '\n');
  return 0;
}

/**
 * Serves a volfile's graph with no mount: a brick, whose protocol/server translator
 * listens for clients. SIGHUP reloads, SIGUSR1 dumps, SIGTERM/SIGINT take it down gracefully.
 */
export async function brick(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['passthrough-unknown'], options: DAEMON_OPTIONS, positionals: ['volfile'] });
  const volfilePath = path.resolve(args.positionals[0]);
  const { log, reopen } = logger(args);
  const lifecycle = new GraphLifecycle(lifecycleOptions(args, volfilePath, log));
  await lifecycle.startWith((g) => new BrickHost(g, STOP_TIMEOUT_MS));
  const daemon = new BrickDaemon({ key: volfilePath, volfile: volfilePath, pidfile: args.options.get('pidfile'), log, reopenLog: reopen, lifecycle, stopTimeoutMs: STOP_TIMEOUT_MS });
  await daemon.start();
  log.info(`brick ${volfilePath} up (pid ${process.pid})`);
  await daemon.done;
  return 0;
}

/**
 * Checks a volfile without mounting it: syntax, types, options, subvolumes, and each
 * translator's own checks when it is created. It builds the graph as mount does (and starts
 * nothing), so what check accepts, mount accepts up to starting it.
 */
export async function check(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['passthrough-unknown'], options: ['log-level'], positionals: ['volfile'] });
  const graph = checkedGraph(args.positionals[0], args, logger(args).log);
  process.stdout.write(`${args.positionals[0]}: ok (${graph.xlators.size} volumes, top '${graph.top.name}')\n`);
  return 0;
}

/** A volfile's graph, built as mount builds it and not started: what check and mount accept. */
function checkedGraph(volfile: string, args: ParsedArgs, log: Logger): Graph {
  return buildGraph(readVolfile(volfile), { id: 0, registry: new Registry(), log, passthroughUnknown: args.flags.has('passthrough-unknown') });
}

// Heals a replicated volume (its own module: it builds a client graph, it does not serve one).
export { heal } from './heal';

/** Spreads a distribute volume over its children, or drains some (see rebalance.ts). */
export function rebalance(argv: string[]): Promise<number> {
  return runRebalance(argv, (level) => logger({ positionals: [], flags: new Set(), options: new Map([['log-level', level ?? 'warn']]) }).log);
}
