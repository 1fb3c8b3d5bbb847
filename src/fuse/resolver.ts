import { FopError } from '../core/errors';
import type { Loc } from '../core/fops';
import type { Frame } from '../core/frame';
import type { Graph } from '../core/graph';
import type { Inode } from '../core/inode';
import type { Iatt } from '../core/types';

/** A directory and a name in it (for fops that create or remove that name). */
export interface EntryTarget {
  readonly parent: Inode;
  readonly name: string;
  readonly loc: Loc;
}

/** An existing object (for fops on it). */
export interface InodeTarget {
  readonly inode: Inode;
  readonly loc: Loc;
}

export function splitPath(path: string): string[] {
  return path.split('/').filter((c) => c !== '');
}

/**
 * Resolves paths on one graph. Names are hints: a dentry in the graph's inode table is
 * trusted until it expires (entry-timeout); then, or when `fresh`, the graph is asked
 * again with a lookup, and what it says replaces what the table knew.
 */
export class Resolver {
  constructor(
    private readonly graph: Graph,
    private readonly frame: Frame,
    private readonly fresh = false,
  ) {}

  /** Looks up `name` in `parent` on the graph and records the answer. */
  async lookup(parent: Inode, name: string, path?: string): Promise<{ inode: Inode; iatt: Iatt }> {
    const table = this.graph.itable;
    try {
      const iatt = await this.graph.top.lookup(this.frame, { path, parent, name });
      return { inode: table.link(iatt, parent, name), iatt };
    } catch (e) {
      if (FopError.from(e).code === 'ENOENT') table.unlink(parent, name);
      throw e;
    }
  }

  /** The root, looked up on the graph (the answer carries its attributes). */
  async root(): Promise<{ inode: Inode; iatt: Iatt }> {
    const inode = this.graph.itable.root;
    return { inode, iatt: await this.graph.top.lookup(this.frame, { path: '/', inode }) };
  }

  async entry(path: string): Promise<EntryTarget> {
    const parts = splitPath(path);
    if (parts.length === 0) throw new FopError('EBUSY', 'the root has no name to change');
    const name = parts.pop()!;
    const parent = await this.walk(parts);
    if (!parent.isDir) throw new FopError('ENOTDIR', `${path}: parent is not a directory`);
    return { parent, name, loc: { path, parent, name, inode: this.graph.itable.child(parent, name)?.inode } };
  }

  async inode(path: string): Promise<InodeTarget> {
    const inode = await this.walk(splitPath(path));
    return { inode, loc: { path, inode } };
  }

  /** Asks the graph for the current attributes of `path` (what getattr must return). */
  async attributes(path: string): Promise<Iatt> {
    const parts = splitPath(path);
    if (parts.length === 0) return (await this.root()).iatt;
    const name = parts.pop()!;
    const parent = await this.walk(parts);
    if (!parent.isDir) throw new FopError('ENOTDIR');
    return (await this.lookup(parent, name, path)).iatt;
  }

  private async walk(parts: readonly string[]): Promise<Inode> {
    const table = this.graph.itable;
    let cur = table.root;
    let path = '';
    for (const name of parts) {
      if (!cur.isDir) throw new FopError('ENOTDIR', `${path || '/'} is not a directory`);
      path += '/' + name;
      const d = table.child(cur, name);
      if (d && !this.fresh && d.validUntil > Date.now()) {
        table.touch(d.inode);
        cur = d.inode;
      } else {
        cur = (await this.lookup(cur, name, path)).inode;
      }
    }
    return cur;
  }
}
