import * as path from 'path';
import * as fs from 'fs';
import { buildGraph } from '../core/builder';
import { LOG_LEVELS, LogLevel, Logger } from '../core/log';
import { Registry } from '../core/registry';
import { readVolfile } from '../core/volfile';
import { fusermountU, mountFuse } from '../fuse/adapter';
import { GraphSwitcher } from '../fuse/switcher';
import { ParsedArgs, UsageError, parseArgs } from './args';
import { NoDaemonError, callControl } from './control';
import { MountDaemon } from './daemon';
import { checkFuse, checkMountpoint, isDeadMount, mountAt } from './preflight';
import { controlSocket } from './runtime';

/** How long a new graph may take to report that its children are up. */
const START_TIMEOUT_MS = 10_000;
/** How long an old graph's translators may take to finish their background work. */
const STOP_TIMEOUT_MS = 10_000;
/** After a switch, handles left idle move to the new graph this much later, so old graphs can go. */
const SWEEP_AFTER_MS = 1000;
/**
 * How long the kernel waits for any one request before failing it with ETIMEDOUT.
 * Every wait inside xlstack is bounded well below this.
 */
const OP_TIMEOUT_MS = 60_000;
const CONTROL_TIMEOUT_MS = 30_000;
/** See BusyPoll in the adapter: on this kind of VM it cuts a small request's latency by a third. */
const DEFAULT_BUSY_POLL_US = 1000;

function logger(args: ParsedArgs): Logger {
  const level = args.options.get('log-level') ?? 'info';
  if (!(LOG_LEVELS as string[]).includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  return Logger.create(level as LogLevel);
}

export async function mount(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    flags: ['passthrough-unknown'],
    options: ['pidfile', 'log-level', 'busy-poll-us'],
    positionals: ['volfile', 'mountpoint'],
  });
  const busyPollUs = Number(args.options.get('busy-poll-us') ?? DEFAULT_BUSY_POLL_US);
  if (!Number.isInteger(busyPollUs) || busyPollUs < 0 || busyPollUs > 1_000_000) throw new UsageError('--busy-poll-us must be an integer from 0 to 1000000');
  const [volfilePath, mountpoint] = args.positionals.map((p) => path.resolve(p));
  const log = logger(args);
  checkFuse();
  checkMountpoint(mountpoint);
  const switcher = new GraphSwitcher({
    volfile: volfilePath,
    registry: new Registry(),
    log,
    passthroughUnknown: args.flags.has('passthrough-unknown'),
    startTimeoutMs: START_TIMEOUT_MS,
    stopTimeoutMs: STOP_TIMEOUT_MS,
    sweepAfterMs: SWEEP_AFTER_MS,
  });
  const bridge = await switcher.start();
  // The kernel has already applied the caller's umask to every mode it sends.
  process.umask(0);
  let fuse;
  try {
    fuse = await mountFuse(mountpoint, bridge, { fsname: `xlstack:${bridge.active.top.name}`, opTimeoutMs: OP_TIMEOUT_MS, busyPollUs, log });
  } catch (e) {
    await switcher.stopAll();
    throw e;
  }
  const daemon = new MountDaemon({ volfile: volfilePath, mountpoint, pidfile: args.options.get('pidfile'), switcher, mount: fuse, log });
  await daemon.start();
  log.info(`serving ${volfilePath} on ${mountpoint} (graph ${bridge.active.id}, pid ${process.pid})`);
  await daemon.done;
  return 0;
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
    await fusermountU(mountpoint, lazy || isDeadMount(mountpoint));
  }
  process.stdout.write(`unmounted ${mountpoint}\n`);
  return 0;
}

/** Asks the daemon to re-read its volfile, and says what happened. */
export async function reload(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { positionals: ['mountpoint'] });
  const r = (await callControl(controlSocket(args.positionals[0]), { cmd: 'reload' }, CONTROL_TIMEOUT_MS)) as { action: string; graph: number; detail?: string };
  process.stdout.write(`${r.action}: graph ${r.graph}${r.detail ? ` (${r.detail})` : ''}\n`);
  return 0;
}

export async function statedump(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { positionals: ['mountpoint'] });
  const dump = await callControl(controlSocket(args.positionals[0]), { cmd: 'statedump' }, CONTROL_TIMEOUT_MS);
  process.stdout.write(JSON.stringify(dump, null, 2) + '\n');
  return 0;
}

/**
 * Serves a volfile's graph with no mount: a brick, whose protocol/server translator
 * listens for clients. SIGTERM/SIGINT take the graph down gracefully.
 */
export async function brick(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['passthrough-unknown'], options: ['pidfile', 'log-level'], positionals: ['volfile'] });
  const volfilePath = path.resolve(args.positionals[0]);
  const log = logger(args);
  const graph = buildGraph(readVolfile(volfilePath), { id: 1, registry: new Registry(), log, passthroughUnknown: args.flags.has('passthrough-unknown') });
  const status = await graph.start(START_TIMEOUT_MS);
  if (status !== 'up') {
    await graph.stop(STOP_TIMEOUT_MS);
    throw new Error(`brick ${volfilePath} did not come up (${status === 'down' ? 'its storage is down' : 'no answer'})`);
  }
  const pidfile = args.options.get('pidfile');
  if (pidfile) fs.writeFileSync(pidfile, `${process.pid}\n`);
  log.info(`brick ${volfilePath} up (pid ${process.pid})`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info(`${sig}: taking the brick down`);
      void graph.stop(STOP_TIMEOUT_MS).finally(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  if (pidfile) fs.rmSync(pidfile, { force: true });
  return 0;
}

/**
 * Checks a volfile without mounting it: syntax, types, options, subvolumes, and each
 * translator's own checks when it is created. It builds the graph as mount does (and starts
 * nothing), so what check accepts, mount accepts up to starting it.
 */
export async function check(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { flags: ['passthrough-unknown'], options: ['log-level'], positionals: ['volfile'] });
  const volfile = readVolfile(args.positionals[0]);
  const graph = buildGraph(volfile, { id: 0, registry: new Registry(), log: logger(args), passthroughUnknown: args.flags.has('passthrough-unknown') });
  process.stdout.write(`${volfile.file}: ok (${graph.xlators.size} volumes, top '${graph.top.name}')\n`);
  return 0;
}
