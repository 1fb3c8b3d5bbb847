import { constants } from 'fs';
import { Fd } from '../../src/core/fd';
import { Inode, InodeTable } from '../../src/core/inode';
import { Gfid, Iatt, ROOT_GFID } from '../../src/core/types';

const DIR = constants.S_IFDIR | 0o755;
const REG = constants.S_IFREG | 0o644;

let seq = 0;
/** A fresh, well-formed GFID. */
function gfid(): Gfid {
  seq++;
  return `00000000-0000-4000-8000-${seq.toString(16).padStart(12, '0')}`;
}

function iatt(g: Gfid, mode: number): Iatt {
  const t = { sec: 0, nsec: 0 };
  return { gfid: g, ino: 1, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, size: 0, blksize: 4096, blocks: 0, atime: t, mtime: t, ctime: t };
}

function table(lruLimit = 1000, onForget?: (i: Inode) => void, entryTimeoutMs = 1000): InodeTable {
  return new InodeTable({ lruLimit, entryTimeoutMs, onForget });
}

const gfids = (t: InodeTable) => [...t.all()].map((i) => i.gfid);

// Inodes, tables and fds point at each other: compare them through identity tags, so a
// failing assertion prints (and jest can serialise) something readable.
const tagged = new WeakMap<object, string>();
let nextTag = 0;
function tag(x: unknown): string {
  if (x === undefined || x === null || typeof x !== 'object') return String(x);
  let t = tagged.get(x);
  if (!t) {
    const what = x instanceof Inode ? `inode(${x.gfid})` : x instanceof Fd ? `fd(${x.id})` : x instanceof InodeTable ? 'table' : 'name' in x ? `dentry(${String(x.name)})` : 'object';
    t = `${what}#${++nextTag}`;
    tagged.set(x, t);
  }
  return t;
}
const tags = (xs: readonly unknown[]): string[] => xs.map(tag);

describe('InodeTable basics', () => {
  it('has a referenced directory root with the root GFID', () => {
    const t = table();
    expect(t.root.gfid).toBe(ROOT_GFID);
    expect(t.root.isDir).toBe(true);
    expect(t.root.refcount).toBe(1);
    expect(tag(t.root.table)).toBe(tag(t));
    expect(tag(t.find(ROOT_GFID))).toBe(tag(t.root));
    expect(tag(t.get(ROOT_GFID))).toBe(tag(t.root));
    expect(t.size).toBe(1);
    expect(t.path(t.root)).toBe('/');
  });

  it('find() returns undefined for an unknown GFID and does not create it', () => {
    const t = table();
    expect(t.find(gfid())).toBeUndefined();
    expect(t.size).toBe(1);
  });

  it('get() creates an inode once, without names or type, and returns the same object afterwards', () => {
    const t = table();
    const g = gfid();
    const a = t.get(g);
    expect(a).toBeInstanceOf(Inode);
    expect(a.gfid).toBe(g);
    expect(a.type).toBe(0);
    expect(a.refcount).toBe(0);
    expect(a.dentries.size).toBe(0);
    expect(tag(t.get(g))).toBe(tag(a));
    expect(tag(t.find(g))).toBe(tag(a));
    expect(t.size).toBe(2);
    expect(t.path(a)).toBeUndefined();
  });

  it('inode refcounting: ref/unref, and unref below zero throws', () => {
    const t = table();
    const a = t.get(gfid());
    expect(tag(a.ref())).toBe(tag(a));
    a.ref();
    expect(a.refcount).toBe(2);
    a.unref();
    a.unref();
    expect(a.refcount).toBe(0);
    expect(() => a.unref()).toThrow(/below zero/);
    expect(a.refcount).toBe(0);
  });
});

describe('InodeTable names', () => {
  it('link() with parent and name records the type and a dentry both ways', () => {
    const t = table(1000, undefined, 5000);
    const g = gfid();
    const before = Date.now();
    const d = t.link(iatt(g, DIR), t.root, 'dir');
    expect(d.gfid).toBe(g);
    expect(d.type).toBe(constants.S_IFDIR);
    expect(d.isDir).toBe(true);
    const dent = t.child(t.root, 'dir')!;
    expect(dent).toBeDefined();
    expect(tag(dent.inode)).toBe(tag(d));
    expect(tag(dent.parent)).toBe(tag(t.root));
    expect(dent.name).toBe('dir');
    expect(dent.validUntil).toBeGreaterThanOrEqual(before + 5000);
    expect(dent.validUntil).toBeLessThanOrEqual(Date.now() + 5000);
    expect(tags([...d.dentries])).toEqual(tags([dent]));
    expect(tag(t.root.children.get('dir'))).toBe(tag(dent));
    expect(t.path(d)).toBe('/dir');
  });

  it('link() without a name only records the inode', () => {
    const t = table();
    const f = t.link(iatt(gfid(), REG));
    expect(f.type).toBe(constants.S_IFREG);
    expect(f.isDir).toBe(false);
    expect(f.dentries.size).toBe(0);
    expect(t.root.children.size).toBe(0);
  });

  it('link() of the same name again refreshes the dentry instead of adding one', () => {
    const t = table();
    const g = gfid();
    const f = t.link(iatt(g, REG), t.root, 'f');
    const d1 = t.child(t.root, 'f')!;
    d1.validUntil = 0;
    expect(tag(t.link(iatt(g, REG), t.root, 'f'))).toBe(tag(f));
    expect(f.dentries.size).toBe(1);
    expect(tag(t.child(t.root, 'f'))).toBe(tag(d1));
    expect(d1.validUntil).toBeGreaterThan(Date.now());
  });

  it('child() returns undefined for a name the table does not know', () => {
    const t = table();
    expect(t.child(t.root, 'nothing')).toBeUndefined();
  });

  it('reconstructs nested paths', () => {
    const t = table();
    const a = t.link(iatt(gfid(), DIR), t.root, 'a');
    const b = t.link(iatt(gfid(), DIR), a, 'b');
    const c = t.link(iatt(gfid(), DIR), b, 'c');
    const f = t.link(iatt(gfid(), REG), c, 'file.txt');
    expect(t.path(a)).toBe('/a');
    expect(t.path(b)).toBe('/a/b');
    expect(t.path(c)).toBe('/a/b/c');
    expect(t.path(f)).toBe('/a/b/c/file.txt');
    expect(tag(t.child(c, 'file.txt')!.inode)).toBe(tag(f));
  });

  it('path() is undefined when an ancestor has no name', () => {
    const t = table();
    const orphanDir = t.link(iatt(gfid(), DIR));
    const f = t.link(iatt(gfid(), REG), orphanDir, 'f');
    expect(t.path(f)).toBeUndefined();
  });

  it('a file keeps several names (hard links)', () => {
    const t = table();
    const g = gfid();
    const d = t.link(iatt(gfid(), DIR), t.root, 'd');
    const f1 = t.link(iatt(g, REG), t.root, 'one');
    const f2 = t.link(iatt(g, REG), d, 'two');
    expect(tag(f2)).toBe(tag(f1));
    expect(f1.dentries.size).toBe(2);
    expect(tag(t.child(t.root, 'one')!.inode)).toBe(tag(f1));
    expect(tag(t.child(d, 'two')!.inode)).toBe(tag(f1));
    expect(['/one', '/d/two']).toContain(t.path(f1));
  });

  it('a directory keeps only one dentry: linking it under another name moves it', () => {
    const t = table();
    const g = gfid();
    const p1 = t.link(iatt(gfid(), DIR), t.root, 'p1');
    const p2 = t.link(iatt(gfid(), DIR), t.root, 'p2');
    const d = t.link(iatt(g, DIR), p1, 'sub');
    expect(t.path(d)).toBe('/p1/sub');
    expect(tag(t.link(iatt(g, DIR), p2, 'moved'))).toBe(tag(d));
    expect(d.dentries.size).toBe(1);
    expect(t.child(p1, 'sub')).toBeUndefined();
    expect(p1.children.size).toBe(0);
    expect(tag(t.child(p2, 'moved')!.inode)).toBe(tag(d));
    expect(t.path(d)).toBe('/p2/moved');
  });

  it('linking a name to another inode replaces the old dentry on both sides', () => {
    const t = table();
    const old = t.link(iatt(gfid(), REG), t.root, 'x');
    const nu = t.link(iatt(gfid(), REG), t.root, 'x');
    expect(tag(nu)).not.toBe(tag(old));
    expect(tag(t.child(t.root, 'x')!.inode)).toBe(tag(nu));
    expect(old.dentries.size).toBe(0);
    expect(t.path(old)).toBeUndefined();
    expect(t.path(nu)).toBe('/x');
  });

  it('unlink() drops the name but keeps the inode', () => {
    const t = table();
    const g = gfid();
    const f = t.link(iatt(g, REG), t.root, 'f');
    t.link(iatt(g, REG), t.root, 'hard');
    t.unlink(t.root, 'f');
    expect(t.child(t.root, 'f')).toBeUndefined();
    expect(f.dentries.size).toBe(1);
    expect(t.path(f)).toBe('/hard');
    t.unlink(t.root, 'hard');
    expect(f.dentries.size).toBe(0);
    expect(t.path(f)).toBeUndefined();
    expect(tag(t.find(g))).toBe(tag(f));
    expect(() => t.unlink(t.root, 'never-there')).not.toThrow();
  });

  it('rename() moves the name, across directories', () => {
    const t = table();
    const a = t.link(iatt(gfid(), DIR), t.root, 'a');
    const b = t.link(iatt(gfid(), DIR), t.root, 'b');
    const g = gfid();
    const f = t.link(iatt(g, REG), a, 'old');
    expect(tag(t.rename(a, 'old', b, 'new', iatt(g, REG)))).toBe(tag(f));
    expect(t.child(a, 'old')).toBeUndefined();
    expect(tag(t.child(b, 'new')!.inode)).toBe(tag(f));
    expect(f.dentries.size).toBe(1);
    expect(t.path(f)).toBe('/b/new');
  });

  it('rename() of a directory moves its subtree paths with it', () => {
    const t = table();
    const g = gfid();
    const d = t.link(iatt(g, DIR), t.root, 'd');
    const inner = t.link(iatt(gfid(), REG), d, 'inner');
    const other = t.link(iatt(gfid(), DIR), t.root, 'other');
    t.rename(t.root, 'd', other, 'd2', iatt(g, DIR));
    expect(t.path(inner)).toBe('/other/d2/inner');
    expect(t.child(t.root, 'd')).toBeUndefined();
  });

  it('rename() over an existing name replaces its dentry', () => {
    const t = table();
    const g = gfid();
    const src = t.link(iatt(g, REG), t.root, 'src');
    const victim = t.link(iatt(gfid(), REG), t.root, 'dst');
    t.rename(t.root, 'src', t.root, 'dst', iatt(g, REG));
    expect(tag(t.child(t.root, 'dst')!.inode)).toBe(tag(src));
    expect(victim.dentries.size).toBe(0);
    expect(t.root.children.size).toBe(1);
  });
});

describe('InodeTable LRU and forget', () => {
  it('forget() drops the inode and its dentries both ways, and calls onForget once', () => {
    const forgotten: Inode[] = [];
    const t = table(1000, (i) => forgotten.push(i));
    const d = t.link(iatt(gfid(), DIR), t.root, 'd');
    const f = t.link(iatt(gfid(), REG), d, 'f');
    t.forget(d);
    expect(tags(forgotten)).toEqual(tags([d]));
    expect(t.find(d.gfid)).toBeUndefined();
    expect(t.child(t.root, 'd')).toBeUndefined();
    expect(d.dentries.size).toBe(0);
    expect(d.children.size).toBe(0);
    // The child stays in the table, without its name.
    expect(tag(t.find(f.gfid))).toBe(tag(f));
    expect(f.dentries.size).toBe(0);
    expect(t.path(f)).toBeUndefined();
    t.forget(d);
    expect(tags(forgotten)).toEqual(tags([d]));
  });

  it('forget() never drops the root', () => {
    const forgotten: Inode[] = [];
    const t = table(1000, (i) => forgotten.push(i));
    t.forget(t.root);
    expect(tag(t.find(ROOT_GFID))).toBe(tag(t.root));
    expect(tags(forgotten)).toEqual(tags([]));
  });

  it('forget() of a stale Inode object leaves the live one for that GFID alone', () => {
    const forgotten: Inode[] = [];
    const t = table(1000, (i) => forgotten.push(i));
    const g = gfid();
    const first = t.get(g);
    t.forget(first);
    const second = t.get(g);
    expect(tag(second)).not.toBe(tag(first));
    t.forget(first);
    expect(tag(t.find(g))).toBe(tag(second));
    expect(tags(forgotten)).toEqual(tags([first]));
  });

  it('all() lists inodes least recently used first; find(), get() and touch() move one to the end', () => {
    const t = table();
    const [a, b, c] = [t.get(gfid()), t.get(gfid()), t.get(gfid())];
    expect(gfids(t)).toEqual([ROOT_GFID, a.gfid, b.gfid, c.gfid]);
    t.find(a.gfid);
    expect(gfids(t)).toEqual([ROOT_GFID, b.gfid, c.gfid, a.gfid]);
    t.touch(b);
    expect(gfids(t)).toEqual([ROOT_GFID, c.gfid, a.gfid, b.gfid]);
    t.get(c.gfid);
    expect(gfids(t)).toEqual([ROOT_GFID, a.gfid, b.gfid, c.gfid]);
  });

  it('the last unref of an inode makes it most recently used', () => {
    const t = table();
    const a = t.get(gfid()).ref();
    const b = t.get(gfid());
    expect(gfids(t)).toEqual([ROOT_GFID, a.gfid, b.gfid]);
    a.unref();
    expect(gfids(t)).toEqual([ROOT_GFID, b.gfid, a.gfid]);
  });

  it('touch() ignores an inode that is no longer in the table', () => {
    const t = table();
    const a = t.get(gfid());
    t.forget(a);
    t.touch(a);
    expect(t.find(a.gfid)).toBeUndefined();
    expect(t.size).toBe(1);
  });

  it('evicts least recently used unreferenced inodes beyond lruLimit, calling onForget', () => {
    const limit = 5;
    const forgotten: Gfid[] = [];
    const t = table(limit, (i) => forgotten.push(i.gfid));
    const made = Array.from({ length: 20 }, () => t.get(gfid()).gfid);
    const kept = gfids(t).filter((g) => g !== ROOT_GFID);
    // Never more unreferenced inodes than the limit, at least one kept, and the survivors are the newest.
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThanOrEqual(limit);
    expect(kept).toEqual(made.slice(made.length - kept.length));
    // The evicted ones went oldest first, each reported once.
    expect(forgotten).toEqual(made.slice(0, made.length - kept.length));
    expect(tag(t.find(ROOT_GFID))).toBe(tag(t.root));
  });

  it('eviction skips referenced inodes and the root', () => {
    const limit = 4;
    const forgotten: Gfid[] = [];
    const t = table(limit, (i) => forgotten.push(i.gfid));
    const pinned = t.link(iatt(gfid(), DIR), t.root, 'pinned').ref();
    const made = Array.from({ length: 30 }, (_, i) => t.link(iatt(gfid(), REG), pinned, `f${i}`).gfid);
    expect(tag(t.find(pinned.gfid))).toBe(tag(pinned));
    expect(t.path(pinned)).toBe('/pinned');
    expect(tag(t.find(ROOT_GFID))).toBe(tag(t.root));
    expect(forgotten).not.toContain(pinned.gfid);
    expect(forgotten).not.toContain(ROOT_GFID);
    expect(forgotten.length).toBeGreaterThan(0);
    expect(forgotten).toEqual(made.slice(0, forgotten.length));
  });

  it('an inode that drops its last reference becomes evictable', () => {
    const limit = 3;
    const forgotten: Gfid[] = [];
    const t = table(limit, (i) => forgotten.push(i.gfid));
    const held = t.get(gfid()).ref();
    for (let i = 0; i < 10; i++) t.get(gfid());
    expect(forgotten).not.toContain(held.gfid);
    held.unref(); // now the most recently used, but unreferenced
    for (let i = 0; i < 10; i++) t.get(gfid());
    expect(forgotten).toContain(held.gfid);
    expect(t.find(held.gfid)).toBeUndefined();
  });

  it('evicting an inode removes its name from its parent', () => {
    const t = table(2);
    const a = t.link(iatt(gfid(), REG), t.root, 'a');
    for (let i = 0; i < 5; i++) t.get(gfid());
    expect(t.find(a.gfid)).toBeUndefined();
    expect(t.child(t.root, 'a')).toBeUndefined();
  });

  // GlusterFS's lru-limit, and InodeTableOptions.lruLimit's own doc ("How many unreferenced
  // inodes to keep cached"), count only unreferenced inodes.
  it('lruLimit counts unreferenced inodes only: referenced ones and the root take no slot', () => {
    const t = table(2);
    const a = t.get(gfid());
    const b = t.get(gfid());
    expect(tag(t.find(a.gfid))).toBe(tag(a));
    expect(tag(t.find(b.gfid))).toBe(tag(b));
  });

  it('get()/link() never hand out an inode they already evicted (table full of referenced inodes)', () => {
    const t = table(1); // the root, referenced, is the only inode
    const g = gfid();
    const f = t.link(iatt(g, REG), t.root, 'fresh');
    // The caller has not had a chance to ref it yet: it must still be the table's inode for g.
    expect(tag(t.find(g))).toBe(tag(f));
    expect(tag(t.get(g))).toBe(tag(f));
    expect(tag(t.child(t.root, 'fresh')!.inode)).toBe(tag(t.find(g)));
  });
});

describe('Fd', () => {
  function setup() {
    const t = table();
    const inode = t.link(iatt(gfid(), REG), t.root, 'f');
    const released: Fd[] = [];
    let finish!: () => void;
    const gate = new Promise<void>((r) => (finish = r));
    const fd = new Fd(inode, constants.O_RDWR, false, async (f) => {
      released.push(f);
      await gate;
    });
    return { inode, fd, released, finish };
  }

  it('starts with one reference and references its inode', () => {
    const { inode, fd } = setup();
    expect(fd.refcount).toBe(1);
    expect(inode.refcount).toBe(1);
    expect(tag(fd.inode)).toBe(tag(inode));
    expect(fd.flags).toBe(constants.O_RDWR);
    expect(fd.isDir).toBe(false);
    expect(fd.ctx.size).toBe(0);
  });

  it('gets a distinct id per fd', () => {
    const a = setup().fd;
    const b = setup().fd;
    expect(a.id).not.toBe(b.id);
  });

  it('ref/unref count; only the last unref releases, exactly once, then unrefs the inode', async () => {
    const { inode, fd, released, finish } = setup();
    expect(tag(fd.ref())).toBe(tag(fd));
    fd.ref();
    expect(fd.refcount).toBe(3);
    await fd.unref();
    await fd.unref();
    expect(tags(released)).toEqual(tags([]));
    expect(inode.refcount).toBe(1);
    const last = fd.unref();
    expect(fd.refcount).toBe(0);
    expect(tags(released)).toEqual(tags([fd]));
    // The inode is held until the release callbacks finished.
    await Promise.resolve();
    expect(inode.refcount).toBe(1);
    finish();
    await last;
    expect(inode.refcount).toBe(0);
    expect(tags(released)).toEqual(tags([fd]));
  });

  it('unref below zero throws, and ref after release throws', async () => {
    const { inode, fd, released, finish } = setup();
    finish();
    await fd.unref();
    expect(() => fd.unref()).toThrow(/below zero/);
    expect(() => fd.ref()).toThrow(/after release/);
    expect(released).toHaveLength(1);
    expect(inode.refcount).toBe(0);
  });

  it('unrefs the inode even when the release callback fails', async () => {
    const t = table();
    const inode = t.get(gfid());
    const fd = new Fd(inode, 0, false, async () => {
      throw new Error('release failed');
    });
    await expect(fd.unref()).rejects.toThrow('release failed');
    expect(inode.refcount).toBe(0);
  });
});
