// Who this process is to the servers it talks to. A brick keys what a client holds (open
// files, locks, its reply cache) by the identity, so a process that stands in for another
// (a mount's new worker, for its supervisor) takes the identity over and, with it, what the
// last one held.
import { randomUUID } from 'crypto';
import * as os from 'os';

export interface ProcessIdentity {
  /** For logs: host:pid of the process users know (a mount's supervisor). */
  readonly name: string;
  /** What a server knows this process by, across connections and graphs. */
  readonly uuid: string;
}

let current: ProcessIdentity = { name: `${os.hostname()}:${process.pid}`, uuid: randomUUID() };

export const processIdentity = (): ProcessIdentity => current;

/** Set once, before any graph is built (a worker takes its supervisor's). */
export function setProcessIdentity(id: ProcessIdentity): void {
  current = id;
}
