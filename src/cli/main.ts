#!/usr/bin/env node
// Before anything else: with a listener installed, SIGUSR1 no longer opens Node's inspector
// (a root process debuggable by any local user). Daemons add their statedump on it.
process.on('SIGUSR1', () => undefined);
// libuv's default of 4 threads would let four slow disk calls stall every other one;
// must be set before anything uses the pool.
process.env.UV_THREADPOOL_SIZE ??= '16';

import { FopError } from '../core/errors';
import { VolfileError } from '../core/volfile';
import { MountError } from '../fuse/kernel/mount';
import { UsageError } from './args';
import { tellParent } from './background';
import * as commands from './commands';
import * as transfer from './transfer';
import { NoDaemonError } from './control';
import { PreflightError } from './preflight';

const USAGE = `usage:
  xlstack mount VOLFILE MOUNTPOINT [--transport kernel|fuse-native] [--background]
                [--pidfile FILE] [--log-file FILE] [--log-level LEVEL] [--passthrough-unknown]
                [--entry-timeout S] [--attribute-timeout S] [--negative-timeout S]
                [--busy-poll-us N] [--single-process] [-o OPTION,...]
      serve VOLFILE on MOUNTPOINT (in the foreground, logging to stderr, unless --background);
      SIGTERM/SIGINT unmount (a busy mount is detached and served until released).
      --transport: kernel (default: the kernel's FUSE protocol on /dev/fuse) or fuse-native
      --background: detach, log to --log-file (default /var/log/xlstack/MOUNTPOINT.log), and
                    return once serving (what mount -t xlstack and fstab use)
      -o: the same options as a comma list (mount(8) style: -o transport=kernel,log-level=debug)
      --busy-poll-us: after each request keep polling N µs for the next (default 1000; 0: off)
      On the kernel transport a small supervisor process holds the mount and starts a new
      worker (the process serving the graph) whenever one dies; what was in flight is
      served again. --single-process: one process, whose death ends the mount.
  xlstack upgrade MOUNTPOINT
      the mount's worker hands over to a new one (of the xlstack installed now)
  xlstack reload MOUNTPOINT|BRICK-VOLFILE
      re-read the volfile (same as SIGHUP): options change in place, a new topology switches graphs
  xlstack unmount MOUNTPOINT [--lazy]
      unmount cleanly (refused while busy, unless --lazy: detach now, serve open files until released)
  xlstack statedump MOUNTPOINT|BRICK-VOLFILE
      print the daemon's state (graphs, inodes, fds, handles, nodeids, locks) as JSON
  xlstack brick VOLFILE [--pidfile FILE] [--log-file FILE] [--log-level LEVEL]
      serve a brick: the volfile's protocol/server listens for protocol/client peers
  xlstack check VOLFILE [--passthrough-unknown]
      check a volfile without mounting it (the same checks a mount makes)
  xlstack heal VOLFILE [info | full | split-brain --source CHILD PATH] [--timeout S] [--log-level LEVEL]
      heal a replicated volume (its client volfile; the bricks must be up): what the bricks'
      indexes list, or (full) everything from the root; info lists what still needs heal;
      split-brain makes CHILD's copy of PATH (relative to the volume) the one every copy gets
  xlstack rebalance MOUNTPOINT|VOLFILE [--remove SUBVOLUME,...] [--log-level LEVEL]
      spread the files of a cluster/distribute volume over all its subvolumes (after one was
      added), online, in the daemon serving MOUNTPOINT or here over VOLFILE's bricks; with
      --remove, drain those subvolumes so that the volfile can drop them
  xlstack put VOLFILE LOCAL-FILE PATH
  xlstack get VOLFILE PATH LOCAL-FILE
      copy a file into or out of a volume without mounting it (through the client API)
`;

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  mount: commands.mount,
  unmount: commands.unmount,
  reload: commands.reload,
  statedump: commands.statedump,
  check: commands.check,
  brick: commands.brick,
  heal: commands.heal,
  rebalance: commands.rebalance,
  upgrade: commands.upgrade,
  put: transfer.put,
  get: transfer.get,
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  const run = COMMANDS[cmd];
  if (!run) throw new UsageError(`unknown command '${cmd}'`);
  return run(rest);
}

/** Exits once everything written to stdout and stderr has reached them (a pipe may be slower than us). */
function exitAfterFlush(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

main(process.argv.slice(2)).then(exitAfterFlush, (e: unknown) => {
  if (e instanceof UsageError) {
    process.stderr.write(`xlstack: ${e.message}\n${USAGE}`);
    return exitAfterFlush(2);
  }
  // Expected failures say what is wrong in one line; anything else is a bug and shows its stack.
  const expected = [VolfileError, PreflightError, MountError, NoDaemonError, FopError].some((c) => e instanceof c) || (e as Error)?.constructor === Error;
  const text = expected ? (e as Error).message : (e as Error)?.stack ?? String(e);
  tellParent({ error: text });
  process.stderr.write(`xlstack: ${text}\n`);
  exitAfterFlush(1);
});
