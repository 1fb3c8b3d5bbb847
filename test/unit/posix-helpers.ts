// Fop wrappers shared by the storage/posix test files: each makes or finds an object on a
// graph (posix alone, see ../helpers/graphs) and links its inode, as a transport would.
import * as fs from 'fs';
import { v4 as uuidv4 } from 'uuid';
import type { Fd } from '../../src/core/fd';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import type { Caller, Dirent, DirentPlus, Iatt } from '../../src/core/types';

const { O_RDWR, O_RDONLY } = fs.constants;

/** Creates parent/name, open on an fd the caller must unref. */
export async function create(g: Graph, parent: Inode, name: string, mode = 0o644, flags = O_RDWR, caller?: Caller): Promise<{ iatt: Iatt; fd: Fd; inode: Inode }> {
  const inode = g.itable.get(uuidv4());
  const fd = g.newFd(inode, flags, false);
  try {
    const iatt = await g.top.create(g.frame('create', caller), { path: name, parent, name, inode }, mode, fd);
    g.itable.link(iatt, parent, name);
    return { iatt, fd, inode };
  } catch (e) {
    await fd.unref();
    throw e;
  }
}

/** Creates parent/name with `data` in it, closed. */
export async function createFile(g: Graph, parent: Inode, name: string, data = ''): Promise<Inode> {
  const { fd, inode } = await create(g, parent, name);
  try {
    if (data) await g.top.write(g.frame('write'), fd, Buffer.from(data, 'latin1'), 0);
  } finally {
    await fd.unref();
  }
  return inode;
}

export async function mkdir(g: Graph, parent: Inode, name: string, mode = 0o755, caller?: Caller): Promise<Inode> {
  const inode = g.itable.get(uuidv4());
  const iatt = await g.top.mkdir(g.frame('mkdir', caller), { path: name, parent, name, inode }, mode);
  return g.itable.link(iatt, parent, name);
}

export async function mknod(g: Graph, parent: Inode, name: string, mode: number, rdev = 0, caller?: Caller): Promise<Inode> {
  const inode = g.itable.get(uuidv4());
  const iatt = await g.top.mknod(g.frame('mknod', caller), { path: name, parent, name, inode }, mode, rdev);
  return g.itable.link(iatt, parent, name);
}

export async function symlink(g: Graph, parent: Inode, name: string, target: string, caller?: Caller): Promise<Inode> {
  const inode = g.itable.get(uuidv4());
  const iatt = await g.top.symlink(g.frame('symlink', caller), target, { path: name, parent, name, inode });
  return g.itable.link(iatt, parent, name);
}

export async function open(g: Graph, inode: Inode, flags = O_RDWR): Promise<Fd> {
  const fd = g.newFd(inode, flags, false);
  try {
    await g.top.open(g.frame('open'), { path: '<file>', inode }, fd);
    return fd;
  } catch (e) {
    await fd.unref();
    throw e;
  }
}

export async function openDir(g: Graph, inode: Inode): Promise<Fd> {
  const fd = g.newFd(inode, O_RDONLY, true);
  try {
    await g.top.opendir(g.frame('opendir'), { path: '<dir>', inode }, fd);
    return fd;
  } catch (e) {
    await fd.unref();
    throw e;
  }
}

/** A whole listing (readdir or readdirp), in `size`-byte batches, each from its predecessor's last cookie. */
export async function listAll(g: Graph, inode: Inode, plus: true, size?: number): Promise<DirentPlus[]>;
export async function listAll(g: Graph, inode: Inode, plus?: false, size?: number): Promise<Dirent[]>;
export async function listAll(g: Graph, inode: Inode, plus = false, size = 4096): Promise<Dirent[]> {
  const fd = await openDir(g, inode);
  try {
    const out: Dirent[] = [];
    for (let offset = 0, rounds = 0; rounds < 100_000; rounds++) {
      const chunk = plus ? await g.top.readdirp(g.frame('readdirp'), fd, size, offset) : await g.top.readdir(g.frame('readdir'), fd, size, offset);
      if (chunk.length === 0) return out;
      out.push(...chunk);
      offset = chunk[chunk.length - 1].offset;
    }
    throw new Error('the listing never ended');
  } finally {
    await fd.unref();
  }
}

export async function readAllFd(g: Graph, fd: Fd, max = 1 << 20): Promise<Buffer> {
  return g.top.read(g.frame('read'), fd, max, 0);
}

/** Every name under `dir` (recursively, as byte strings relative to it), for before/after comparisons. */
export function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: Buffer) => {
    const abs = Buffer.concat([Buffer.from(dir), rel.length ? Buffer.concat([Buffer.from('/'), rel]) : Buffer.alloc(0)]);
    for (const e of fs.readdirSync(abs, { withFileTypes: true, encoding: 'buffer' })) {
      const name = e.name as unknown as Buffer;
      const r = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      out.push(r.toString('latin1'));
      if (e.isDirectory()) walk(r);
    }
  };
  walk(Buffer.alloc(0));
  return out.sort();
}
