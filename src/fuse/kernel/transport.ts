import { constants } from 'fs';
import { FopError } from '../../core/errors';
import { withDeadline } from '../../core/time';
import { reopenFlags } from '../../core/fd';
import type { Logger } from '../../core/log';
import { RecordEvent, RecordWriter, Resume, fromWireConn, toWireConn } from '../../supervisor/record';
import type { SupervisorDump } from '../../supervisor/supervisor';
import { BaseFd } from '../basefd';
import type { BridgeCore } from '../core';
import { findByGfid, inFrame } from '../migrator';
import type { MountSpec, Mounted } from '../mounted';
import { KernelAdapter } from './adapter';
import { detachWhenDead, mountKernel, setReadAhead, unmountKernel } from './mount';
import { withReplay } from './replay';
import { KernelSession } from './session';

const { O_APPEND } = constants;

/** How long a retiring worker waits for the requests it took to be answered, and for each flush. */
const RETIRE_TIMEOUT_MS = 10_000;
/** How long the kernel may take to send INIT after the mount. */
const INIT_TIMEOUT_MS = 10_000;

/**
 * Serves a bridge core on a mountpoint over the kernel's FUSE protocol: mounts, answers INIT,
 * and serves from the event loop until the connection ends.
 */
export async function mountKernelTransport(spec: MountSpec): Promise<Mounted> {
  const mount = await mountKernel(spec.mountpoint, { fsname: spec.fsname, allowOther: true, defaultPermissions: true });
  const adapter = newAdapter(spec);
  const session = new KernelSession(mount.fd, adapter, { log: spec.log.child('fuse'), busyPollUs: spec.busyPollUs });
  void session.closed.then(adapter.followInvalidations(session));
  try {
    session.start();
    await Promise.race([
      session.ready,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`the kernel sent no INIT within ${INIT_TIMEOUT_MS / 1000} s`)), INIT_TIMEOUT_MS).unref()),
    ]);
  } catch (e) {
    session.close('mount failed');
    await mount.unmount(true).catch(() => undefined);
    throw e;
  }
  if (mount.via === 'mount') detachWhenDead(mount.mountpoint);
  const why = setReadAhead(mount.mountpoint);
  if (why) spec.log.debug(why);
  return {
    transport: 'kernel',
    mountpoint: mount.mountpoint,
    ended: session.closed,
    unmount: (lazy) => mount.unmount(lazy),
    dump: () => ({ transport: 'kernel', ...session.dump(), invalidations: adapter.dumpInvalidations() }),
  };
}

function newAdapter(spec: MountSpec): KernelAdapter {
  const { entryTimeoutMs, attrTimeoutMs, negativeTimeoutMs } = spec;
  return new KernelAdapter(spec.core, spec.log.child('fuse'), { entryTimeoutMs, attrTimeoutMs, negativeTimeoutMs, groupsTimeoutMs: 1000 });
}

/** What a worker under a supervisor is given: the device fd it inherited, its record, where it takes over. */
export interface SupervisedIo {
  /** The /dev/fuse fd (the supervisor's open file, inherited). */
  readonly fd: number;
  /** Where every nodeid and handle given to the kernel is written down, before the reply. */
  readonly record: RecordWriter;
  /** What the last worker left (undefined: the first worker, which answers INIT). */
  readonly resume?: Resume;
  /** The supervisor's state as this worker started (for statedumps). */
  readonly supervisor: SupervisorDump;
}

/**
 * Serves a mount a supervisor made and holds, as its worker: the first worker answers INIT
 * and records what was negotiated; a later one takes over the nodeids and handles the
 * kernel holds from the record (handles reopened by GFID with their flags and openId, as
 * a graph switch would), then asks the kernel to send again what its predecessor read and
 * did not answer.
 */
export async function serveSupervisedKernel(spec: MountSpec, io: SupervisedIo): Promise<Mounted> {
  const log = spec.log.child('fuse');
  const core = spec.core;
  const adapter = newAdapter(spec);
  let recordFailed = false;
  const write = (ev: RecordEvent, now = false) => {
    try {
      if (now) io.record.write(ev);
      else io.record.add(ev);
    } catch (e) {
      if (!recordFailed) log.error(`${(e as Error).message}: a new worker would not know what the kernel holds`);
      recordFailed = true;
    }
  };
  const restored = io.resume ? await restore(core, io.resume, log) : undefined;
  core.nodes.observer = { looked: (id, gfid) => write({ e: 'look', id, gfid }), forgot: (id, n) => write({ e: 'forget', id, n }) };
  core.basefds.observer = {
    opened: (b) => write({ e: 'open', h: { fh: b.id, gfid: b.gfid, flags: b.flags, dir: b.isDir, openId: b.openId } }),
    closed: (fh) => write({ e: 'close', fh }),
  };
  const intents = new Map(io.resume?.intents ?? []);
  const appends = new Map(io.resume?.appends ?? []);
  const fs = withReplay(adapter, {
    // Before the object is made: a worker dying right after must leave its GFID on record.
    intend: (u, gfid) => write({ e: 'intent', u, gfid }, true),
    intended: (u) => intents.get(u),
    gfidOf: (nodeid) => core.nodes.withId(nodeid)?.gfid,
    appending: (fh) => ((core.basefds.find(fh)?.flags ?? 0) & O_APPEND) !== 0,
    // Before the write: a worker dying right after it must leave the size it saw on record.
    intendAppend: (u, size) => write({ e: 'append', u, size }, true),
    appendedAt: (u) => appends.get(u),
    locked: (fh, owner, flock, lock) => {
      const gfid = core.basefds.find(fh)?.gfid;
      if (gfid) write({ e: 'lk', l: { fh, gfid, owner: owner.toString(16), flock, lock } });
    },
    flushed: (fh, owner) => {
      const gfid = core.basefds.find(fh)?.gfid;
      if (gfid && owner) write({ e: 'flush', gfid, owner: owner.toString(16) });
    },
    log,
  });
  const flush = () => {
    try {
      io.record.flush();
    } catch (e) {
      if (!recordFailed) log.error(`${(e as Error).message}: a new worker would not know what the kernel holds`);
      recordFailed = true;
    }
  };
  const session = new KernelSession(io.fd, fs, { log, busyPollUs: spec.busyPollUs, beforeReply: flush });
  void session.closed.then(adapter.followInvalidations(session));
  if (io.resume) {
    session.resume(fromWireConn(io.resume.conn));
  } else {
    session.start();
    try {
      const conn = await Promise.race([
        session.ready,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`the kernel sent no INIT within ${INIT_TIMEOUT_MS / 1000} s`)), INIT_TIMEOUT_MS).unref()),
      ]);
      write({ e: 'init', conn: toWireConn(conn) }, true);
    } catch (e) {
      session.close('mount failed');
      throw e;
    }
    const why = setReadAhead(spec.mountpoint);
    if (why) log.debug(why);
  }
  return {
    transport: 'kernel',
    mountpoint: spec.mountpoint,
    ended: session.closed,
    unmount: (lazy) => unmountKernel(spec.mountpoint, lazy),
    retire: async () => {
      await successorWaits();
      await session.retire(RETIRE_TIMEOUT_MS);
      // What the graph holds back (write-behind) reaches storage before a new worker reopens the files.
      for (const base of [...core.basefds.all()]) {
        if (base.isDir) continue;
        const { graph, fd } = base.current;
        await withDeadline(inFrame(graph, 'flush', (frame) => graph.top.flush(frame, fd)), RETIRE_TIMEOUT_MS, `flush of handle ${base.id}`).catch((e) =>
          log.warn(`retiring: flush of handle ${base.id} failed: ${(e as Error).message}`),
        );
      }
      // From here the record is the successor's: this worker's teardown must not touch it.
      flush();
      core.nodes.observer = undefined;
      core.basefds.observer = undefined;
    },
    dump: () => ({
      transport: 'kernel',
      supervisor: io.supervisor,
      generation: io.resume?.generation ?? 1,
      restored,
      replayed: fs.replayed(),
      ...session.dump(),
      invalidations: adapter.dumpInvalidations(),
    }),
  };
}

/** How long an upgrade waits for the supervisor's word. */
const SUCCESSOR_TIMEOUT_MS = 10_000;

/** Tells the supervisor this worker retires for an upgrade, and waits for its go. */
function successorWaits(): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!process.send) return reject(new Error('no supervisor to hand over to'));
    const timer = setTimeout(() => (process.off('message', take), reject(new Error(`no answer from the supervisor within ${SUCCESSOR_TIMEOUT_MS / 1000} s; this worker serves on`))), SUCCESSOR_TIMEOUT_MS);
    const take = (m: { retire?: boolean }) => {
      if (!m || !('retire' in m)) return;
      clearTimeout(timer);
      process.off('message', take);
      if (m.retire) resolve();
      else reject(new Error('the supervisor refused the upgrade; this worker serves on'));
    };
    process.on('message', take);
    process.send({ upgrade: true });
  });
}

/** Takes over the nodeids and handles of the record; a handle whose file is gone answers EBADF. */
async function restore(core: BridgeCore, r: Resume, log: Logger): Promise<Record<string, number>> {
  core.nodes.restore(r.nodes, r.maxNodeid);
  const g = core.active;
  let lost = 0;
  for (const h of r.handles) {
    try {
      const inode = await findByGfid(g, h.gfid);
      if (!inode) throw new FopError('ESTALE', `GFID ${h.gfid} is gone`);
      const fd = g.newFd(inode, reopenFlags(h.flags), h.dir, h.openId);
      try {
        await inFrame(g, 'open', (frame) => (h.dir ? g.top.opendir(frame, { inode }, fd) : g.top.open(frame, { inode }, fd)));
      } catch (e) {
        await fd.unref();
        throw e;
      }
      core.basefds.restore(new BaseFd(h.fh, h.gfid, h.flags, h.dir, undefined, { graph: g, fd }));
    } catch (e) {
      lost++;
      log.warn(`handle ${h.fh} (${h.gfid}) could not be reopened by the new worker (${FopError.from(e).code}): it answers EBADF`);
    }
  }
  // The locks held through those handles, taken again before anything else is served.
  let relocked = 0;
  for (const l of r.locks) {
    if (!core.basefds.find(l.fh)) continue;
    try {
      await core.lk({ caller: { uid: 0, gid: 0, pid: l.lock.pid, groups: [] }, lkOwner: l.owner }, l.fh, 'set', l.lock, l.flock ? 'flock' : 'posix');
      relocked++;
    } catch (e) {
      log.error(`handle ${l.fh}: the lock ${JSON.stringify(l.lock)} of owner ${l.owner} could not be taken again (${FopError.from(e).code})`);
    }
  }
  log.info(`worker generation ${r.generation}: took over ${r.nodes.length} nodeid(s), ${r.handles.length - lost} of ${r.handles.length} handle(s), ${relocked} of ${r.locks.length} lock request(s)`);
  return { nodeids: r.nodes.length, handles: r.handles.length - lost, lostHandles: lost, lockRequests: relocked };
}
