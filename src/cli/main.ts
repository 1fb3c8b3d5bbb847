#!/usr/bin/env node
// libuv's default of 4 threads would let four slow disk calls stall every other one;
// must be set before anything uses the pool.
process.env.UV_THREADPOOL_SIZE ??= '16';

import { VolfileError } from '../core/volfile';
import { UsageError } from './args';
import * as commands from './commands';
import { PreflightError } from './preflight';

const USAGE = `usage:
  xlstack mount VOLFILE MOUNTPOINT [--pidfile FILE] [--passthrough-unknown] [--log-level LEVEL]
                                   [--busy-poll-us N]
      serve VOLFILE on MOUNTPOINT in the foreground (logs to stderr); SIGTERM/SIGINT unmount.
      --busy-poll-us: after each request keep polling N µs for the next (default 1000, 0: off)
  xlstack reload MOUNTPOINT
      re-read the volfile (same as SIGHUP): options change in place, a new topology switches graphs
  xlstack unmount MOUNTPOINT [--lazy]
      unmount cleanly (refused while busy, unless --lazy)
  xlstack statedump MOUNTPOINT
      print the mount's state (graphs, inodes, fds, handles) as JSON
  xlstack brick VOLFILE [--pidfile FILE] [--log-level LEVEL]
      serve a brick: the volfile's protocol/server listens for protocol/client peers
  xlstack check VOLFILE [--passthrough-unknown]
      check a volfile without mounting it
`;

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  mount: commands.mount,
  unmount: commands.unmount,
  reload: commands.reload,
  statedump: commands.statedump,
  check: commands.check,
  brick: commands.brick,
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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`xlstack: ${e.message}\n${USAGE}`);
      process.exit(2);
    }
    // Expected failures say what is wrong; anything else is a bug and shows its stack.
    const expected = e instanceof VolfileError || e instanceof PreflightError || (e as Error)?.constructor === Error;
    process.stderr.write(`xlstack: ${expected ? (e as Error).message : (e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
