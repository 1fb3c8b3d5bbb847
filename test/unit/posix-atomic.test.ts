// storage/posix: creation is atomic. A new entry exists complete (its GFID, owner, group
// and mode) or not at all: every system call a creation makes is failed in turn, and each
// time nothing is left, in the entry's directory or under .xlstack, and no fd stays open.
// While a creation runs, its name is never visible with root's ownership or without its
// GFID. Needs root: trusted.* xattrs, chown, mknod.

import * as fs from 'fs';
import * as path from 'path';
import { v4 as uuidv4 } from 'uuid';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import type { Caller } from '../../src/core/types';
import { sys } from '../../xlators/storage/posix/sys';
import { cleanupGraphs, errCode, handlePath, hex, lookup, startGraph, tempDir } from '../helpers/graphs';
import { mkdir, tree } from './posix-helpers';

const { O_RDWR, S_IFIFO, S_IFMT, S_IFREG, S_IFDIR, S_IFLNK } = fs.constants;
const USER: Caller = { uid: 1000, gid: 1000, groups: [], pid: 1 };
const GROUP = 4321;

afterEach(async () => {
  jest.restoreAllMocks();
  await cleanupGraphs();
});

type SysName = keyof typeof sys;
const SYS_CALLS = Object.keys(sys).filter((k) => typeof sys[k as SysName] === 'function') as SysName[];

/**
 * Routes every call of `sys` through `before(name)` (which may throw to fail that call) and
 * `after(name)`. Calls made from inside a hook, or by one sys call through another, are not seen.
 */
function instrument(before: (name: SysName) => void, after: (name: SysName) => void = () => undefined): void {
  let depth = 0;
  for (const name of SYS_CALLS) {
    const original = sys[name] as (...a: unknown[]) => unknown;
    jest.spyOn(sys, name).mockImplementation(((...args: unknown[]) => {
      if (depth > 0) return original.apply(sys, args);
      depth++;
      try {
        before(name);
        return original.apply(sys, args);
      } finally {
        try {
          after(name);
        } finally {
          depth--;
        }
      }
    }) as never);
  }
}

/** Each way of creating an entry, by `caller`, with GFID `gfid`. */
const KINDS: Record<string, (g: Graph, parent: Inode, name: string, gfid: string, caller: Caller) => Promise<unknown>> = {
  create: async (g, parent, name, gfid, caller) => {
    const inode = g.itable.get(gfid);
    const fd = g.newFd(inode, O_RDWR, false);
    try {
      return await g.top.create(g.frame('create', caller), { parent, name, inode }, 0o640, fd);
    } finally {
      await fd.unref();
    }
  },
  mkdir: (g, parent, name, gfid, caller) => g.top.mkdir(g.frame('mkdir', caller), { parent, name, inode: g.itable.get(gfid) }, 0o750),
  mknod: (g, parent, name, gfid, caller) => g.top.mknod(g.frame('mknod', caller), { parent, name, inode: g.itable.get(gfid) }, S_IFIFO | 0o640, 0),
  symlink: (g, parent, name, gfid, caller) => g.top.symlink(g.frame('symlink', caller), 'target', { parent, name, inode: g.itable.get(gfid) }),
};
const WANT_TYPE: Record<string, number> = { create: S_IFREG, mkdir: S_IFDIR, mknod: S_IFIFO, symlink: S_IFLNK };

/** A volume with a setgid directory another group owns: creating there by USER takes a chown and a chmod. */
async function setgidVolume() {
  const dir = tempDir();
  const g = await startGraph(dir);
  const sg = await mkdir(g, g.itable.root, 'sg', 0o777);
  await g.top.setattr(g.frame('setattr'), { inode: sg }, { gid: GROUP, mode: 0o2777 });
  return { dir, g, sg };
}

const openFds = () => fs.readdirSync('/proc/self/fd').length;

describe.each(Object.keys(KINDS))('%s: every step that fails leaves nothing', (kind) => {
  test('each system call of the creation failed in turn', async () => {
    const { dir, g, sg } = await setgidVolume();
    // The calls a successful creation makes, in order.
    const calls: SysName[] = [];
    instrument((name) => calls.push(name));
    await KINDS[kind](g, sg, 'dry-run', uuidv4(), USER);
    jest.restoreAllMocks();
    expect(calls.length).toBeGreaterThan(5);
    expect(calls).toEqual(expect.arrayContaining(['chown', 'setxattrAt']));

    for (let k = 0; k < calls.length; k++) {
      const name = `try-${k}`;
      const gfid = uuidv4();
      const before = tree(dir);
      const fds = openFds();
      let n = 0;
      instrument((call) => {
        if (n++ === k) throw Object.assign(new Error(`EIO: injected into ${call}`), { code: 'EIO' });
      });
      const code = await errCode(KINDS[kind](g, sg, name, gfid, USER));
      jest.restoreAllMocks();
      expect({ k, call: calls[k], code }).toEqual({ k, call: calls[k], code: 'EIO' });
      expect({ k, call: calls[k], tree: tree(dir) }).toEqual({ k, call: calls[k], tree: before });
      expect({ k, call: calls[k], fds: openFds() }).toEqual({ k, call: calls[k], fds });
      expect(await errCode(lookup(g, sg, name))).toBe('ENOENT');
      expect(fs.existsSync(handlePath(dir, gfid))).toBe(false);
    }
    // and without failures it works, leaving exactly the entry and its handle
    const before = tree(dir);
    const gfid = uuidv4();
    await KINDS[kind](g, sg, 'made', gfid, USER);
    const added = tree(dir).filter((p) => !before.includes(p));
    expect(added.filter((p) => !p.startsWith('sg/made/')).sort()).toEqual([path.join('.xlstack/handles', gfid.slice(0, 2), gfid), 'sg/made'].sort());
    const st = fs.lstatSync(path.join(dir, 'sg', 'made'));
    expect([st.mode & S_IFMT, st.uid, st.gid]).toEqual([WANT_TYPE[kind], USER.uid, GROUP]);
    expect(fs.readdirSync(path.join(dir, '.xlstack', 'tmp'))).toEqual([]);
  });
});

describe('a new entry is never visible before it is complete', () => {
  test.each(Object.keys(KINDS))('%s: after every system call, the name is absent or has its GFID, owner, group and mode', async (kind) => {
    const { dir, g, sg } = await setgidVolume();
    const entry = path.join(dir, 'sg', 'watched');
    const gfid = uuidv4();
    const seen: string[] = [];
    const problems: string[] = [];
    instrument(
      () => undefined,
      (call) => {
        const st = fs.lstatSync(entry, { throwIfNoEntry: false });
        if (!st) return;
        seen.push(call);
        let stored = '';
        try {
          stored = sys.getxattr(entry, 'trusted.gfid').toString('hex');
        } catch {
          stored = 'none';
        }
        const wantMode = kind === 'symlink' ? 0o777 : kind === 'mkdir' ? 0o2750 : 0o640;
        const got = { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, gfid: stored };
        const want = { uid: USER.uid, gid: GROUP, mode: wantMode, gfid: hex(gfid) };
        if (JSON.stringify(got) !== JSON.stringify(want)) problems.push(`after ${call}: ${JSON.stringify(got)}`);
      },
    );
    await KINDS[kind](g, sg, 'watched', gfid, USER);
    jest.restoreAllMocks();
    expect(seen.length).toBeGreaterThan(0);
    expect(problems).toEqual([]);
  });
});
