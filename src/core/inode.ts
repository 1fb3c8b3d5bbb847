import { Gfid, Iatt, ROOT_GFID, S_IFMT, isDir } from './types';
import { constants } from 'fs';

/** A name of an inode inside a directory, as last seen by a lookup. */
export interface Dentry {
  readonly parent: Inode;
  readonly name: string;
  readonly inode: Inode;
  /** Until when (ms since epoch) the name may be trusted without a fresh lookup. */
  validUntil: number;
}

/**
 * One file or directory of one graph. Its identity is the GFID; the per-translator
 * context lives here, keyed by the translator object.
 */
export class Inode {
  /** File type bits (S_IFREG, S_IFDIR, ...) once a lookup told them; 0 before. */
  type = 0;
  readonly ctx = new Map<object, unknown>();
  /** Names of this inode (several for hard links, at most one for a directory). */
  readonly dentries = new Set<Dentry>();
  /** Names inside this directory. */
  readonly children = new Map<string, Dentry>();
  private refs = 0;

  constructor(
    readonly gfid: Gfid,
    readonly table: InodeTable,
  ) {}

  get isDir(): boolean {
    return this.type === constants.S_IFDIR;
  }

  get refcount(): number {
    return this.refs;
  }

  ref(): this {
    if (this.refs++ === 0) this.table.referenced(this, +1);
    return this;
  }

  unref(): void {
    if (this.refs <= 0) throw new Error(`inode ${this.gfid}: unref below zero`);
    if (--this.refs === 0) this.table.referenced(this, -1);
  }
}

export interface InodeTableOptions {
  /** How many unreferenced inodes to keep cached (GlusterFS's lru-limit). */
  lruLimit: number;
  /** How long a looked-up name is trusted, in ms (FUSE's entry-timeout). */
  entryTimeoutMs: number;
  /** Called for each inode dropped from the table, so translators can free their context. */
  onForget?: (inode: Inode) => void;
}

/**
 * The inodes of one graph, keyed by GFID, with the names (dentries) lookups found.
 * Names are hints with a lifetime: a resolver trusts a dentry until `validUntil` and
 * otherwise asks the graph again.
 */
export class InodeTable {
  readonly root: Inode;
  /** Insertion order is recency: the first entries are the least recently used. */
  private readonly inodes = new Map<Gfid, Inode>();
  /** How many inodes of the table someone holds a reference to. */
  private held = 0;

  constructor(private readonly opts: InodeTableOptions) {
    this.root = new Inode(ROOT_GFID, this);
    this.root.type = constants.S_IFDIR;
    this.inodes.set(ROOT_GFID, this.root);
    this.root.ref();
  }

  get size(): number {
    return this.inodes.size;
  }

  find(gfid: Gfid): Inode | undefined {
    const inode = this.inodes.get(gfid);
    if (inode) this.touch(inode);
    return inode;
  }

  /** The inode for a GFID, created (without names) if the table does not know it. */
  get(gfid: Gfid): Inode {
    let inode = this.find(gfid);
    if (!inode) {
      inode = new Inode(gfid, this);
      this.inodes.set(gfid, inode);
      this.evict(inode);
    }
    return inode;
  }

  /** Records what a lookup (or an entry-creating fop) returned: the inode, and its name if given. */
  link(iatt: Iatt, parent?: Inode, name?: string): Inode {
    const inode = this.get(iatt.gfid);
    inode.type = iatt.mode & S_IFMT;
    if (parent && name !== undefined) this.addDentry(parent, name, inode);
    return inode;
  }

  child(parent: Inode, name: string): Dentry | undefined {
    return parent.children.get(name);
  }

  unlink(parent: Inode, name: string): void {
    const d = parent.children.get(name);
    if (d) this.removeDentry(d);
  }

  rename(oldParent: Inode, oldName: string, newParent: Inode, newName: string, iatt: Iatt): Inode {
    this.unlink(oldParent, oldName);
    return this.link(iatt, newParent, newName);
  }

  /** A path of the inode from the names the table knows, or undefined. */
  path(inode: Inode): string | undefined {
    const parts: string[] = [];
    const seen = new Set<Inode>();
    for (let cur = inode; cur !== this.root; ) {
      const d = first(cur.dentries);
      if (!d || seen.has(cur)) return undefined;
      seen.add(cur);
      parts.push(d.name);
      cur = d.parent;
    }
    return '/' + parts.reverse().join('/');
  }

  /** Marks an inode as recently used (moves it to the end of the LRU order). */
  touch(inode: Inode): void {
    if (this.inodes.get(inode.gfid) !== inode) return;
    this.inodes.delete(inode.gfid);
    this.inodes.set(inode.gfid, inode);
  }

  /** An inode of this table gained its first reference (+1) or lost its last (-1). */
  referenced(inode: Inode, delta: 1 | -1): void {
    if (this.inodes.get(inode.gfid) !== inode) return;
    this.held += delta;
    if (delta < 0) {
      this.touch(inode);
      this.evict(inode);
    }
  }

  /** Drops an inode nobody references any more, with every name in or of it. */
  forget(inode: Inode): void {
    if (inode === this.root || this.inodes.get(inode.gfid) !== inode) return;
    this.inodes.delete(inode.gfid);
    if (inode.refcount > 0) this.held--;
    for (const d of [...inode.dentries]) this.removeDentry(d);
    for (const d of [...inode.children.values()]) this.removeDentry(d);
    this.opts.onForget?.(inode);
  }

  /** Every inode, least recently used first (for statedumps). */
  all(): IterableIterator<Inode> {
    return this.inodes.values();
  }

  private addDentry(parent: Inode, name: string, inode: Inode): void {
    const validUntil = Date.now() + this.opts.entryTimeoutMs;
    const old = parent.children.get(name);
    if (old?.inode === inode) {
      old.validUntil = validUntil;
      return;
    }
    if (old) this.removeDentry(old);
    // A directory has one name: a new one replaces whatever the table knew.
    if (isDir(inode.type)) for (const d of [...inode.dentries]) this.removeDentry(d);
    const d: Dentry = { parent, name, inode, validUntil };
    parent.children.set(name, d);
    inode.dentries.add(d);
  }

  private removeDentry(d: Dentry): void {
    if (d.parent.children.get(d.name) === d) d.parent.children.delete(d.name);
    d.inode.dentries.delete(d);
  }

  /** Drops the least recently used unreferenced inodes beyond lruLimit (never `keep`). */
  private evict(keep: Inode): void {
    let excess = this.inodes.size - this.held - this.opts.lruLimit;
    for (const inode of this.inodes.values()) {
      if (excess <= 0) break;
      if (inode.refcount > 0 || inode === keep) continue;
      this.forget(inode);
      excess--;
    }
  }
}

function first<T>(set: Set<T>): T | undefined {
  for (const v of set) return v;
  return undefined;
}
