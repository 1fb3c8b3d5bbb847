// Moving a file to its hashed child (rebalance), online. The file is locked exclusively in
// MIGRATE_DOMAIN on the child it leaves (S) and the one it goes to (D): every fop that changes
// a file holds it shared there, so while the migration runs, writers wait (bounded), and
// nothing they do is missed. Under the locks:
//   1. D gets a linkto file for it (or reuses the one it has): lookups still go to S.
//   2. The data is copied (holes kept), synced; xattrs, owner and times follow.
//   3. D is marked complete with the file's mode (PENDING_XATTR), then S's name goes: from
//      now on S's copy has no name, and every fop that reaches it (an fd opened before) looks
//      for the file by GFID, finds D, moves there and runs again (files.ts).
//   4. D takes the mode and stops being a linkto file.
// A crash before 3 leaves S as it was (D a linkto file, filled or not); a crash between 3 and
// 4 leaves D complete and marked, S gone: whoever finds it so finishes 4 (`finish`). So the
// file is always found, and no write acknowledged by either copy is lost.
import { constants } from 'fs';
import { Expired, FopError, Frame, LOCK_TO_EOF, ROOT_CALLER, isLnk, isReg } from '../../../src/core/index';
import type { Fd, Inode, Loc, Xlator } from '../../../src/core/index';
import { randomUUID } from 'crypto';
import { Cluster, internal } from './cluster';
import type { Dirs } from './dirs';
import { clearLinkto, makeLinkto, setPending } from './linkto';
import { MIGRATE_DOMAIN, Unlock, lockOn } from './locks';
import type { DataFound, Finisher, LinktoFound, Lookups } from './lookup';

export type MigrateReport =
  | { readonly result: 'moved'; readonly child: string; readonly from: string; readonly bytes: number }
  | { readonly result: 'in-place'; readonly child: string }
  | { readonly result: 'skipped'; readonly child?: string; readonly reason: string };

/** The size of each read and write of a copy. */
const COPY_CHUNK = 1024 * 1024;

export class Migration {
  constructor(
    private readonly c: Cluster,
    private readonly dirs: Dirs,
    private readonly lookups: Lookups,
  ) {}

  /** Moves the file named `name` in `parent` to its hashed child, if it is on another. */
  async migrate(frame: Frame, parent: Inode, name: string): Promise<MigrateReport> {
    const entry = { parent, name };
    const h = await this.dirs.hashed(frame, parent, name);
    const all = await this.lookups.probeAll(frame, entry);
    const down = all.find((f) => f.kind === 'down');
    if (down) return { result: 'skipped', reason: `${this.c.childName(down.child)} is down` };
    if (all.some((f) => f.kind === 'dir')) return { result: 'skipped', reason: 'a directory' };
    const copies = all.filter((f): f is DataFound => f.kind === 'data');
    const data = await this.lookups.dataOf(frame, all, entry);
    if (!data) return { result: 'skipped', reason: 'no such file (any more)' };
    const here = this.c.childName(data.child);
    if (copies.length > 1) {
      this.c.log.error(`${name} in ${parent.gfid}: data on ${copies.map((f) => this.c.childName(f.child)).join(', ')}; left as it is`);
      return { result: 'skipped', child: here, reason: 'data on several children' };
    }
    if (data.child === h) return { result: 'in-place', child: here };
    if (data.iatt.nlink > 1) return { result: 'skipped', child: here, reason: 'it has hard links' };
    return this.move(parent, name, this.c.host.itable.get(data.iatt.gfid), data.child, h);
  }

  private async move(parent: Inode, name: string, inode: Inode, s: number, d: number): Promise<MigrateReport> {
    const at = { inode, gfid: inode.gfid };
    const what = `the fops in flight on ${inode.gfid}`;
    const unlocks: Unlock[] = [];
    try {
      for (const i of [s, d]) unlocks.push(await lockOn(this.c, i, MIGRATE_DOMAIN, at, 'write', this.c.bounds.migrateLockMs, what, ROOT_CALLER));
    } catch (e) {
      await Promise.all(unlocks.map((u) => u()));
      if (FopError.from(e).code === 'ETIMEDOUT') return { result: 'skipped', child: this.c.childName(s), reason: `busy: fops kept it for ${this.c.bounds.migrateLockMs} ms` };
      throw e;
    }
    try {
      const report = await internal(this.c, 'migrate', (frame) => this.moveLocked(frame, parent, name, inode, s, d));
      if (report.result === 'moved') {
        this.c.place(inode, { kind: 'file', cached: d });
        this.c.counters.migrations++;
        this.c.log.debug(`moved ${name} (${inode.gfid}) from ${report.from} to ${report.child}, ${report.bytes} bytes`);
      }
      return report;
    } finally {
      // Waited for: a rebalance that ends right after must not leave them in flight.
      await Promise.all(unlocks.reverse().map((u) => u()));
    }
  }

  private async moveLocked(frame: Frame, parent: Inode, name: string, inode: Inode, s: number, d: number): Promise<MigrateReport> {
    const entry = { parent, name };
    const src = await this.lookups.probe(frame, s, entry);
    const skip = (reason: string): MigrateReport => ({ result: 'skipped', child: this.c.childName(s), reason });
    // Anything that changes the file's names holds it shared: what is seen now stays.
    if (src.kind !== 'data' || src.iatt.gfid !== inode.gfid) return skip('it changed meanwhile');
    if (src.iatt.nlink > 1) return skip('it has hard links');
    const dst = await this.lookups.probe(frame, d, entry);
    const fresh = dst.kind === 'missing';
    if (!fresh && !(dst.kind === 'linkto' && dst.iatt.gfid === inode.gfid)) return skip(`${this.c.childName(d)} has something else named so`);
    const deadline = this.c.clock.now() + this.c.bounds.migrateMs;
    const loc = { parent, name, inode };
    try {
      const bytes = isReg(src.iatt.mode) ? await this.moveData(frame, loc, s, d, fresh, deadline) : await this.moveOther(frame, loc, src, s, d, fresh);
      return { result: 'moved', child: this.c.childName(d), from: this.c.childName(s), bytes };
    } catch (e) {
      if (e instanceof Expired) return skip(`its copy took longer than migrate-timeout (${this.c.bounds.migrateMs} ms)`);
      if (e instanceof Skip) return skip(e.message);
      throw e;
    }
  }

  /** A regular file: copied into a linkto file on D, then the switch (steps 1 to 4 above). Returns the bytes copied. */
  private async moveData(frame: Frame, loc: Loc & { inode: Inode }, s: number, d: number, fresh: boolean, deadline: number): Promise<number> {
    const S = this.c.children[s];
    const D = this.c.children[d];
    const at = { inode: loc.inode, gfid: loc.inode.gfid };
    const sfd = this.c.host.newFd(loc.inode, constants.O_RDONLY, false);
    try {
      await S.open(frame, at, sfd);
      if (await appLocked(this.c, S, sfd)) throw new Skip('an application holds a lock on it');
      if (fresh) await makeLinkto(this.c, frame, d, loc, s);
      else await setPending(this.c, frame, d, at, undefined);
      const dfd = this.c.host.newFd(loc.inode, constants.O_WRONLY, false);
      let switched = false;
      try {
        await D.open(frame, at, dfd);
        await D.ftruncate(frame, dfd, 0);
        const { size } = await S.fstat(frame, sfd);
        const bytes = await copyData(frame, S, sfd, D, dfd, size, () => this.c.clock.now() > deadline);
        await D.ftruncate(frame, dfd, size);
        await D.fsync(frame, dfd, false);
        await this.copyXattrs(frame, S, D, at);
        const st = await S.fstat(frame, sfd);
        await D.fsetattr(frame, dfd, { uid: st.uid, gid: st.gid });
        await D.fsetattr(frame, dfd, { atime: st.atime, mtime: st.mtime });
        if (this.c.clock.now() > deadline) throw new Expired(`copying ${loc.inode.gfid}`, this.c.bounds.migrateMs);
        await setPending(this.c, frame, d, at, st.mode);
        await S.unlink(frame, loc);
        switched = true;
        await this.commit(frame, d, at, st.mode).catch((e) =>
          this.c.log.warn(`${loc.name} (${loc.inode.gfid}): its switch to ${this.c.childName(d)} is left for the next lookup to finish: ${(e as Error).message}`),
        );
        return bytes;
      } catch (e) {
        if (!switched) {
          // D stays a linkto file (to S, which still has the file): empty it and drop the mark.
          await D.ftruncate(frame, dfd, 0).catch(() => undefined);
          await setPending(this.c, frame, d, at, undefined).catch(() => undefined);
        }
        throw e;
      } finally {
        await dfd.unref();
      }
    } finally {
      await sfd.unref();
    }
  }

  /** Step 4: D takes the file's mode and is no linkto file any more. */
  private async commit(frame: Frame, d: number, at: Loc, mode: number): Promise<void> {
    await this.c.children[d].setattr(frame, at, { mode: mode & 0o7777 });
    await clearLinkto(this.c, frame, d, at);
  }

  /** Symlinks, fifos, devices, sockets: made anew on D with the same GFID (no data to copy), then S's goes. */
  private async moveOther(frame: Frame, loc: Loc & { inode: Inode }, src: DataFound, s: number, d: number, fresh: boolean): Promise<number> {
    const S = this.c.children[s];
    const D = this.c.children[d];
    const at = { inode: loc.inode, gfid: loc.inode.gfid };
    const st = src.iatt;
    const target = isLnk(st.mode) ? await S.readlink(frame, at) : undefined;
    // D's linkto file has the GFID: it goes first (meanwhile lookups find S by asking every child).
    if (!fresh) await D.unlink(frame, loc);
    try {
      if (target !== undefined) await D.symlink(frame, target, loc);
      else await D.mknod(frame, loc, st.mode, st.rdev);
      await D.setattr(frame, at, { uid: st.uid, gid: st.gid });
      await D.setattr(frame, at, { atime: st.atime, mtime: st.mtime });
      await S.unlink(frame, loc);
    } catch (e) {
      await D.unlink(frame, loc).catch(() => undefined);
      if (!fresh) await makeLinkto(this.c, frame, d, loc, s).catch(() => undefined);
      throw e;
    }
    return 0;
  }

  /** The file's own xattrs (user, security, ACLs) on the new copy; one that cannot be copied stops the migration. */
  private async copyXattrs(frame: Frame, S: Xlator, D: Xlator, at: Loc): Promise<void> {
    for (const name of await S.listxattr(frame, at)) {
      const value = await S.getxattr(frame, at, name);
      try {
        await D.setxattr(frame, at, name, value, 0);
      } catch (e) {
        throw new Skip(`its xattr ${name} cannot be copied: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Finishes a switch a crash interrupted between steps 3 and 4 (see above), under the
   * exclusive lock on D (a migration still running holds it: this waits for it, then finds
   * the file switched). Nothing is done if S's copy still has a name (no switch happened).
   */
  readonly finish: Finisher = (_frame, at: LinktoFound) =>
    internal(this.c, 'finish-switch', async (frame) => {
      const d = at.child;
      const gfid = at.iatt.gfid;
      const loc = { inode: this.c.host.itable.get(gfid), gfid };
      const unlock = await lockOn(this.c, d, MIGRATE_DOMAIN, loc, 'write', this.c.bounds.fopWaitMs, `the switch of ${gfid}`, ROOT_CALLER);
      try {
        const now = await this.lookups.probe(frame, d, loc);
        if (now.kind === 'data') return now;
        if (now.kind !== 'linkto' || now.pendingMode === undefined) return undefined;
        if (now.target !== undefined) {
          const old = await this.lookups.probe(frame, now.target, loc);
          if (old.kind === 'data' && old.iatt.nlink > 0) return undefined;
        }
        await this.commit(frame, d, loc, now.pendingMode);
        this.c.log.info(`finished the interrupted switch of ${gfid} to ${this.c.childName(d)}`);
        const done = await this.lookups.probe(frame, d, loc);
        return done.kind === 'data' ? done : undefined;
      } finally {
        await unlock();
      }
    });
}

/** A reason to leave a file where it is (not an error of the rebalance). */
class Skip extends Error {}

/** Whether an application holds a POSIX or flock lock on the file (its locks would not follow it). */
async function appLocked(c: Cluster, S: Xlator, sfd: Fd): Promise<boolean> {
  const frame = c.host.frame('dht-lock-probe', { caller: ROOT_CALLER, lkOwner: `dht-probe.${randomUUID()}` });
  const probe = { type: 'write' as const, start: 0, end: LOCK_TO_EOF, pid: 0 };
  try {
    for (const kind of ['posix', 'flock'] as const) {
      if ((await S.lk(frame, sfd, 'get', probe, kind)).type !== 'unlock') return true;
    }
    return false;
  } catch (e) {
    // No lock translator there: no application lock either.
    if (FopError.from(e).code === 'ENOSYS') return false;
    throw e;
  } finally {
    frame.done();
  }
}

/** Copies `size` bytes, skipping holes where the child can tell them; returns the bytes copied. */
async function copyData(frame: Frame, S: Xlator, sfd: Fd, D: Xlator, dfd: Fd, size: number, late: () => boolean): Promise<number> {
  let copied = 0;
  for (let off = 0; off < size; ) {
    const start = await seekOr(frame, S, sfd, off, 'data', off);
    if (start === undefined || start >= size) break;
    const end = Math.min(size, (await seekOr(frame, S, sfd, start, 'hole', size)) ?? size);
    for (let p = start; p < end; ) {
      if (late()) throw new Expired('copying', 0);
      const data = await S.read(frame, sfd, Math.min(COPY_CHUNK, end - p), p);
      if (data.length === 0) return copied;
      for (let w = 0; w < data.length; ) w += await D.write(frame, dfd, data.subarray(w), p + w);
      p += data.length;
      copied += data.length;
    }
    off = end;
  }
  return copied;
}

/** lseek SEEK_DATA/SEEK_HOLE; `otherwise` where the child cannot tell; undefined: no data after `offset`. */
async function seekOr(frame: Frame, S: Xlator, sfd: Fd, offset: number, what: 'data' | 'hole', otherwise: number): Promise<number | undefined> {
  try {
    return await S.seek(frame, sfd, offset, what);
  } catch (e) {
    const code = FopError.from(e).code;
    if (code === 'ENXIO') return undefined;
    if (code === 'EOPNOTSUPP' || code === 'ENOSYS' || code === 'EINVAL') return otherwise;
    throw e;
  }
}

