// What a peer can do to a brick over the wire, speaking the protocol by hand:
// (a) a peer outside auth.allow is refused (raw, and a real mount fails cleanly);
// (b) no request reaches outside the brick's directory, whatever path, name or GFID it
//     sends: every answer is an error or stays inside, and nothing outside changes.
// Needs root (the brick keeps GFIDs in trusted.* xattrs) and FUSE for the mount test.
import { spawn, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { v4 as uuidv4 } from 'uuid';
import { nameFromUtf8 } from '../../src/core/types';
import { Kind } from '../../src/rpc/frame';
import type { Reply } from '../../src/rpc/wire';
import { sys } from '../../xlators/storage/posix/sys';
import { TestBrick, brickVolfile, clientVolfile, startBrick } from '../helpers/brick';
import { isMounted, waitFor, xlstack } from '../helpers/mount';
import { ROOT_GFID, RawConn, closeRawConns, outcome } from '../helpers/raw-peer';
import { cleanupScratch, pidAlive as alive, scratchDir, track } from '../helpers/scratch';

const { O_RDONLY, O_RDWR, O_WRONLY, O_TRUNC, S_IFMT, S_IFLNK, S_IFREG, S_IFIFO, S_IFCHR } = fs.constants;

/** Errors that say "no" (EIO is not among them: it means something unexpected was thrown). */
const REFUSALS = ['EINVAL', 'ENOENT', 'ENOTDIR', 'ELOOP', 'EPERM', 'ESTALE', 'ENXIO', 'EEXIST', 'ENAMETOOLONG', 'EISDIR', 'EOPNOTSUPP', 'ENOTSUP', 'ENODATA', 'EACCES', 'EBADF', 'EXDEV', 'ENOTEMPTY'];

afterAll(cleanupScratch);

const tempDir = () => scratchDir('xlstack-rpc-safety-');

// --- (a) auth.allow ------------------------------------------------------------------------

describe('a peer outside auth.allow is refused', () => {
  let brick: TestBrick;

  beforeAll(async () => {
    brick = await startBrick({ volfile: (dir, port) => brickVolfile(dir, port, '    option transport.address 127.0.0.1\n    option auth.allow 127.0.0.2\n') });
  });

  afterAll(async () => {
    closeRawConns();
    await brick?.stop();
  });

  test('a raw HELLO from 127.0.0.1 gets WELCOME {ok: false} naming auth.allow, and the connection closes', async () => {
    const c = await RawConn.open(brick.port, { host: '127.0.0.1' });
    const port = c.localPort;
    const welcome = await c.hello('brick-posix', 5000);
    expect(welcome).toEqual({ ok: false, reason: '127.0.0.1 is not in auth.allow' });
    expect(await c.waitClosed(5000)).toBe(true);
    expect(c.badFrame).toBeUndefined();
    expect(brick.log()).toContain(`refused 127.0.0.1:${port}: 127.0.0.1 is not in auth.allow`);
    expect(brick.log()).toContain(`connection 127.0.0.1:${port}: refused: 127.0.0.1 is not in auth.allow`);
  });

  test('a refused peer gets no fop served: requests sent with or before its HELLO are not answered', async () => {
    // the HELLO and a request in one write: the request must not be served
    const c = await RawConn.open(brick.port, { host: '127.0.0.1' });
    const hello = c.call(Kind.HELLO, { version: 1, volume: 'brick-posix', client: 'sneaky' }, 5000);
    const req = c.request('stat', [{ path: '/', gfid: ROOT_GFID }], 2000);
    expect((await hello)?.body).toEqual({ ok: false, reason: '127.0.0.1 is not in auth.allow' });
    expect(await req).toBeUndefined();
    expect(await c.waitClosed(5000)).toBe(true);

    // a request with no HELLO at all
    const d = await RawConn.open(brick.port, { host: '127.0.0.1' });
    const port = d.localPort;
    expect(await d.request('lookup', [{ path: '/', gfid: ROOT_GFID }], 2000)).toBeUndefined();
    expect(await d.waitClosed(5000)).toBe(true);
    expect(brick.log()).toContain(`connection 127.0.0.1:${port}: a request before the handshake`);
  });

  test('a raw HELLO from 127.0.0.2 is welcome, and its fops are served', async () => {
    const c = await RawConn.open(brick.port, { host: '127.0.0.1', localAddress: '127.0.0.2' });
    expect(await c.hello('brick-posix', 5000)).toEqual({ ok: true });
    const r = await c.request('lookup', [{ path: '/', gfid: ROOT_GFID }]);
    expect(outcome(r)).toBe('OK');
    expect((r as { value: { gfid: string } }).value.gfid).toBe(ROOT_GFID);
    expect(c.closed).toBe(false);
    c.destroy();
  });

  test('the address pattern is matched whole: 127.0.0.22 and 127.0.0.20 are not 127.0.0.2', async () => {
    for (const localAddress of ['127.0.0.22', '127.0.0.20']) {
      const c = await RawConn.open(brick.port, { host: '127.0.0.1', localAddress });
      expect({ localAddress, welcome: await c.hello('brick-posix', 5000) }).toEqual({ localAddress, welcome: { ok: false, reason: `${localAddress} is not in auth.allow` } });
      expect(await c.waitClosed(5000)).toBe(true);
    }
  });

  test('a mount from 127.0.0.1 fails with a clear error and leaves nothing mounted', async () => {
    const d = tempDir();
    const mnt = path.join(d, 'mnt');
    fs.mkdirSync(mnt);
    const vol = path.join(d, 'client.vol');
    fs.writeFileSync(vol, clientVolfile(brick.port));
    const started = Date.now();
    const r = await xlstack(['mount', vol, mnt], { timeoutMs: 25_000 });
    // whatever happened (xlstack() never throws), leave nothing mounted
    if (isMounted(mnt)) spawnSync('fusermount', ['-uz', mnt], { timeout: 10_000 });
    const took = Date.now() - started;
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull(); // it exited by itself, not killed at the timeout
    expect(r.stderr).toMatch(new RegExp(`127\\.0\\.0\\.1:${brick.port}/brick-posix refused this client: 127\\.0\\.0\\.1 is not in auth\\.allow`));
    expect(r.stderr).toMatch(/did not come up/);
    expect(isMounted(mnt)).toBe(false);
    expect(took).toBeLessThan(20_000);
    expect(brick.log()).toMatch(/refused 127\.0\.0\.1:\d+: 127\.0\.0\.1 is not in auth\.allow/);
  }, 60_000);
});

// --- (b) no request reaches outside the brick's directory -----------------------------------

/** Everything about an object that a request could change (not atime: reading is fine). */
interface Seen {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  mtimeNs: string;
  ctimeNs: string;
  content?: string;
  target?: string;
  xattrs: Record<string, string>;
}

function xattrsOf(p: string): Record<string, string> {
  const out: Record<string, string> = {};
  let names: string[] = [];
  try {
    names = sys.listxattr(p);
  } catch {
    return out;
  }
  for (const n of names.sort()) {
    try {
      out[n] = sys.getxattr(p, n).toString('hex');
    } catch (e) {
      out[n] = `! ${(e as NodeJS.ErrnoException).code}`;
    }
  }
  return out;
}

/** Every object under `dir` (recursively, symlinks not followed), except the names in `skip` at the top. */
function snapshot(dir: string, skip: string[] = []): Record<string, Seen> {
  const out: Record<string, Seen> = {};
  const walk = (d: string, rel: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      if (rel === '' && skip.includes(name)) continue;
      const p = path.join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(p, { bigint: true });
      const seen: Seen = {
        type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other',
        mode: Number(st.mode),
        uid: Number(st.uid),
        gid: Number(st.gid),
        size: Number(st.size),
        nlink: Number(st.nlink),
        mtimeNs: String(st.mtimeNs),
        ctimeNs: String(st.ctimeNs),
        xattrs: xattrsOf(p),
      };
      if (st.isFile()) seen.content = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
      if (st.isSymbolicLink()) seen.target = fs.readlinkSync(p);
      out[r] = seen;
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(dir, '');
  return out;
}

describe("no request can reach outside the brick's directory, whatever path or GFID a client sends", () => {
  const PLANT = `xlstack-planted-${crypto.randomBytes(4).toString('hex')}`;
  // GFIDs of our own choosing (a fresh brick): letters in them, so upper case differs.
  const F = 'abcdef01-2345-4678-9abc-def012345678';
  const VICTIM = 'bcdef012-3456-4789-8bcd-ef0123456789';
  const D = 'cdef0123-4567-489a-9cde-f0123456789a';
  let brick: TestBrick;
  let c: RawConn;
  let base: string;
  let storage: string;
  let outside: string;
  let outsideFile: string;
  let before: Record<string, Seen>;
  /** GFIDs of symlinks (made through the protocol, or planted straight in the backing dir) by name. */
  const links: Record<string, string> = {};

  const loc = (parent: string, name: string, gfid?: string) => ({ path: `/${name}`, parent, name, gfid });
  const byGfid = (gfid: string) => ({ path: `<gfid:${gfid}>`, gfid });

  async function req(op: string, args: unknown[]): Promise<Reply | undefined> {
    return c.request(op, args, 10_000);
  }

  /** create, then release what it opened: its outcome. */
  async function create(l: unknown): Promise<string> {
    const r = await req('create', [l, 0o644, { flags: O_RDWR }]);
    if (r?.ok && typeof r.fd === 'number') await req('release', [r.fd]);
    return outcome(r);
  }

  async function open(l: unknown, flags: number, dir = false): Promise<Reply | undefined> {
    const r = await req(dir ? 'opendir' : 'open', [l, { flags }]);
    return r;
  }

  /** Every entry fop on (parent, name): their outcomes. */
  async function entryOps(parent: string, name: string): Promise<Record<string, string>> {
    const o: Record<string, string> = {};
    o.lookup = outcome(await req('lookup', [loc(parent, name)]));
    o.mkdir = outcome(await req('mkdir', [loc(parent, name, uuidv4()), 0o755]));
    o.create = await create(loc(parent, name, uuidv4()));
    o.mknod = outcome(await req('mknod', [loc(parent, name, uuidv4()), S_IFREG | 0o644, 0]));
    o.symlink = outcome(await req('symlink', [outside, loc(parent, name, uuidv4())]));
    o.unlink = outcome(await req('unlink', [loc(parent, name)]));
    o.rmdir = outcome(await req('rmdir', [loc(parent, name)]));
    o.renameInto = outcome(await req('rename', [loc(ROOT_GFID, 'victim'), loc(parent, name), 0]));
    o.renameFrom = outcome(await req('rename', [loc(parent, name), loc(ROOT_GFID, `${PLANT}-stolen`), 0]));
    o.link = outcome(await req('link', [byGfid(VICTIM), loc(parent, name)]));
    return o;
  }

  /** The outcomes that are not refusals (an empty object when all are). */
  function notRefused(outcomes: Record<string, string>): Record<string, string> {
    return Object.fromEntries(Object.entries(outcomes).filter(([, v]) => !REFUSALS.includes(v)));
  }

  function expectOutsideUntouched(): void {
    expect(snapshot(base, ['storage'])).toEqual(before);
    for (const p of ['/', '/tmp', '/etc', path.dirname(base), base, outside]) expect({ p, planted: fs.existsSync(path.join(p, PLANT)) }).toEqual({ p, planted: false });
    // the brick's own folder is where it was, and whole
    expect(fs.statSync(path.join(storage, '.xlstack', 'handles')).isDirectory()).toBe(true);
    expect(fs.readlinkSync(path.join(storage, '.xlstack', 'handles', '00', ROOT_GFID))).toBe('../../..');
    expect(alive(brick.pid)).toBe(true);
  }

  beforeAll(async () => {
    brick = await startBrick();
    storage = brick.dir;
    base = path.dirname(storage);
    // the sentinels, next to the storage directory
    outside = path.join(base, 'outside');
    fs.mkdirSync(outside, { mode: 0o750 });
    fs.mkdirSync(path.join(outside, 'sub'));
    fs.writeFileSync(path.join(outside, 'secret'), 'top secret', { mode: 0o640 });
    sys.setxattr(path.join(outside, 'secret'), 'user.sentinel', Buffer.from('s1'), 0);
    sys.setxattr(outside, 'user.sentinel', Buffer.from('s0'), 0);
    outsideFile = path.join(base, 'outside-file');
    fs.writeFileSync(outsideFile, 'outside file', { mode: 0o600 });
    sys.setxattr(outsideFile, 'user.sentinel', Buffer.from('s2'), 0);
    for (const p of [path.join(outside, 'secret'), outsideFile, path.join(outside, 'sub'), outside]) fs.utimesSync(p, 1_000_000_000, 1_000_000_000);
    // a symlink someone made straight in the backing directory
    fs.symlinkSync(outside, path.join(storage, 'planted-link'));
    before = snapshot(base, ['storage']);

    c = await RawConn.open(brick.port);
    expect(await c.hello('brick-posix', 5000)).toEqual({ ok: true });
    // inside: a file, a victim file for renames and links, a directory, symlinks every way out
    const made = await req('create', [loc(ROOT_GFID, 'f', F), 0o644, { flags: O_RDWR }]);
    expect(outcome(made)).toBe('OK');
    expect(outcome(await req('write', [made!.ok && made!.fd, Buffer.from('inside file'), 0]))).toBe('OK');
    await req('release', [made!.ok && made!.fd]);
    expect(await create(loc(ROOT_GFID, 'victim', VICTIM))).toBe('OK');
    expect(outcome(await req('mkdir', [loc(ROOT_GFID, 'd', D), 0o755]))).toBe('OK');
    const symlinks: [string, string, string][] = [
      [ROOT_GFID, 'out', outside],
      [ROOT_GFID, 'rel', '../outside'],
      [ROOT_GFID, 'outfile', path.join(outside, 'secret')],
      [ROOT_GFID, 'relfile', '../outside-file'],
      [ROOT_GFID, 'dotdot', '..'],
      [ROOT_GFID, 'slash', '/'],
      [ROOT_GFID, 'meta', '.xlstack'],
      [ROOT_GFID, 'handles', '.xlstack/handles'],
      [D, '.xlstack', outside],
      [D, 'up', '../..'],
    ];
    for (const [parent, name, target] of symlinks) {
      const gfid = uuidv4();
      const r = await req('symlink', [target, loc(parent, name, gfid)]);
      expect({ name, r: outcome(r) }).toEqual({ name, r: 'OK' });
      links[parent === D ? `d/${name}` : name] = gfid;
    }
    const planted = await req('lookup', [loc(ROOT_GFID, 'planted-link')]);
    expect(outcome(planted)).toBe('OK');
    links['planted-link'] = (planted as { value: { gfid: string } }).value.gfid;
  });

  afterAll(async () => {
    c?.destroy();
    await brick?.stop();
  });

  test('bad names (.., ., empty, a/b, ../escape, NUL, 256 bytes, /) are refused by every entry fop, at the root and below', async () => {
    const BAD = ['..', '.', '', 'a/b', `../${PLANT}`, `../../${PLANT}`, `a\0b`, `${PLANT}\0`, '\0', 'n'.repeat(256), nameFromUtf8('é'.repeat(128)), '/', `${PLANT}/`, `/${PLANT}`];
    const wrong: Record<string, Record<string, string>> = {};
    for (const parent of [ROOT_GFID, D]) {
      for (const name of BAD) {
        const o = notRefused(await entryOps(parent, name));
        if (Object.keys(o).length) wrong[`${parent === D ? 'd' : 'root'}/${JSON.stringify(name)}`] = o;
      }
    }
    expect(wrong).toEqual({});
    // nothing moved inside either
    expect(fs.readFileSync(path.join(storage, 'f'), 'utf8')).toBe('inside file');
    expect(fs.existsSync(path.join(storage, 'victim'))).toBe(true);
    expect(fs.readdirSync(path.join(storage, 'd')).sort()).toEqual(['.xlstack', 'up']);
    expectOutsideUntouched();
  });

  test('.xlstack at the root: not found, and nothing can be made, renamed, linked or listed there', async () => {
    const o = await entryOps(ROOT_GFID, '.xlstack');
    expect(o).toEqual({
      lookup: 'ENOENT',
      mkdir: 'EPERM',
      create: 'EPERM',
      mknod: 'EPERM',
      symlink: 'EPERM',
      unlink: 'ENOENT',
      rmdir: 'ENOENT',
      renameInto: 'EPERM',
      renameFrom: 'ENOENT',
      link: 'EPERM',
    });
    // the root's listing does not show it
    const dir = await open(byGfid(ROOT_GFID), O_RDONLY, true);
    expect(outcome(dir)).toBe('OK');
    const listed = await req('readdir', [(dir as { fd: number }).fd, 1 << 20, 0]);
    await req('release', [(dir as { fd: number }).fd]);
    const names = ((listed as { value: { name: string }[] }).value ?? []).map((e) => e.name).sort();
    expect(names).toEqual(['d', 'dotdot', 'f', 'handles', 'meta', 'out', 'outfile', 'planted-link', 'rel', 'relfile', 'slash', 'victim'].sort());
    // symlinks into it are symlinks: no way in through them
    for (const name of ['meta', 'handles']) {
      const g = links[name];
      const r: Record<string, string> = {
        lookupIn: outcome(await req('lookup', [loc(g, 'handles')])),
        lookupIn00: outcome(await req('lookup', [loc(g, '00')])),
        opendir: outcome(await open(byGfid(g), O_RDONLY, true)),
        open: outcome(await open(byGfid(g), O_RDONLY)),
        mkdirIn: outcome(await req('mkdir', [loc(g, PLANT, uuidv4()), 0o755])),
      };
      expect({ name, r: notRefused(r) }).toEqual({ name, r: {} });
    }
    // a symlink named .xlstack below the root is just a symlink, and not a directory
    const g = links['d/.xlstack'];
    expect(notRefused({ lookup: outcome(await req('lookup', [loc(g, 'secret')])), opendir: outcome(await open(byGfid(g), O_RDONLY, true)), ...(await entryOps(g, PLANT)) })).toEqual({});
    expect(fs.readdirSync(path.join(storage, '.xlstack'))).toEqual(expect.arrayContaining(['handles', 'tmp']));
    expect(fs.readdirSync(path.join(storage, '.xlstack')).filter((n) => n.includes(PLANT))).toEqual([]);
    expectOutsideUntouched();
  });

  test('malformed GFIDs are EINVAL wherever a GFID goes', async () => {
    const BAD_GFIDS = [
      '../../etc',
      '../../../../../../etc/passwd',
      '',
      'garbage',
      F.toUpperCase(),
      `${F}/..`,
      `${F}/`,
      `../${F.slice(0, 2)}/${F}`,
      `${F}\0`,
      F.replace(/-/g, ''),
      ` ${F}`,
      `/${F}`,
      'x'.repeat(36),
      '..',
      outside,
    ];
    const wrong: Record<string, Record<string, string>> = {};
    for (const bad of BAD_GFIDS) {
      const o: Record<string, string> = {
        lookup: outcome(await req('lookup', [byGfid(bad)])),
        stat: outcome(await req('stat', [byGfid(bad)])),
        access: outcome(await req('access', [byGfid(bad), 0])),
        readlink: outcome(await req('readlink', [byGfid(bad)])),
        open: outcome(await open(byGfid(bad), O_RDONLY)),
        opendir: outcome(await open(byGfid(bad), O_RDONLY, true)),
        truncate: outcome(await req('truncate', [byGfid(bad), 0])),
        setattr: outcome(await req('setattr', [byGfid(bad), { mode: 0o777 }])),
        getxattr: outcome(await req('getxattr', [byGfid(bad), 'user.sentinel'])),
        setxattr: outcome(await req('setxattr', [byGfid(bad), 'user.planted', Buffer.from('x'), 0])),
        listxattr: outcome(await req('listxattr', [byGfid(bad)])),
        removexattr: outcome(await req('removexattr', [byGfid(bad), 'user.sentinel'])),
        statfs: outcome(await req('statfs', [byGfid(bad)])),
        linkFrom: outcome(await req('link', [byGfid(bad), loc(ROOT_GFID, PLANT)])),
        lookupIn: outcome(await req('lookup', [loc(bad, 'secret')])),
        mkdirIn: outcome(await req('mkdir', [loc(bad, PLANT, uuidv4()), 0o755])),
        createIn: await create(loc(bad, PLANT, uuidv4())),
        symlinkIn: outcome(await req('symlink', ['x', loc(bad, PLANT, uuidv4())])),
        renameInto: outcome(await req('rename', [loc(ROOT_GFID, 'victim'), loc(bad, PLANT), 0])),
        mkdirAs: outcome(await req('mkdir', [loc(ROOT_GFID, PLANT, bad), 0o755])),
        createAs: await create(loc(ROOT_GFID, PLANT, bad)),
        symlinkAs: outcome(await req('symlink', [outside, loc(ROOT_GFID, PLANT, bad)])),
        mknodAs: outcome(await req('mknod', [loc(ROOT_GFID, PLANT, bad), S_IFREG | 0o644, 0])),
      };
      const notEinval = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== 'EINVAL'));
      if (Object.keys(notEinval).length) wrong[JSON.stringify(bad)] = notEinval;
    }
    expect(wrong).toEqual({});
    expect(fs.existsSync(path.join(storage, PLANT))).toBe(false);
    expectOutsideUntouched();
  });

  test('a GFID nobody has is refused (ESTALE or ENOENT), as an object and as a parent', async () => {
    const g = uuidv4();
    const o: Record<string, string> = {
      lookup: outcome(await req('lookup', [byGfid(g)])),
      stat: outcome(await req('stat', [byGfid(g)])),
      open: outcome(await open(byGfid(g), O_RDONLY)),
      opendir: outcome(await open(byGfid(g), O_RDONLY, true)),
      truncate: outcome(await req('truncate', [byGfid(g), 0])),
      setxattr: outcome(await req('setxattr', [byGfid(g), 'user.planted', Buffer.from('x'), 0])),
      link: outcome(await req('link', [byGfid(g), loc(ROOT_GFID, PLANT)])),
      ...Object.fromEntries(Object.entries(await entryOps(g, PLANT)).map(([k, v]) => [`${k}In`, v])),
    };
    expect(Object.fromEntries(Object.entries(o).filter(([, v]) => v !== 'ESTALE' && v !== 'ENOENT'))).toEqual({});
    expectOutsideUntouched();
  });

  test('symlinks (to outside, to .., to /) and files are never directories: as parents, or opened as directories', async () => {
    const wrong: Record<string, Record<string, string>> = {};
    const leaked: string[] = [];
    for (const [name, g] of [...Object.entries(links), ['f (a file)', F] as [string, string]]) {
      const o: Record<string, string> = {
        lookupSecret: outcome(await req('lookup', [loc(g, 'secret')])),
        lookupEtc: outcome(await req('lookup', [loc(g, 'etc')])),
        lookupSub: outcome(await req('lookup', [loc(g, 'sub')])),
        unlinkSecret: outcome(await req('unlink', [loc(g, 'secret')])),
        rmdirSub: outcome(await req('rmdir', [loc(g, 'sub')])),
        renameSecretIn: outcome(await req('rename', [loc(g, 'secret'), loc(ROOT_GFID, `${PLANT}-stolen`), 0])),
        ...(await entryOps(g, PLANT)),
      };
      const dir = await open(byGfid(g), O_RDONLY, true);
      o.opendir = outcome(dir);
      if (dir?.ok && typeof dir.fd === 'number') {
        const listed = await req('readdir', [dir.fd, 1 << 20, 0]);
        await req('release', [dir.fd]);
        const names = ((listed as { value?: { name: string }[] })?.value ?? []).map((e) => e.name);
        if (names.includes('secret') || names.includes('sub') || names.includes('passwd')) leaked.push(`${name}: ${names.join(',')}`);
      }
      const bad = notRefused(o);
      if (Object.keys(bad).length) wrong[name] = bad;
    }
    expect({ wrong, leaked }).toEqual({ wrong: {}, leaked: [] });
    expectOutsideUntouched();
  });

  test('by the GFID of a symlink to outside, nothing reaches the target: open, truncate, setattr, xattrs', async () => {
    const wrong: Record<string, Record<string, string>> = {};
    const leaks: string[] = [];
    for (const name of ['outfile', 'relfile', 'out', 'rel', 'planted-link', 'slash']) {
      const g = links[name];
      const o: Record<string, string> = {
        openRdonly: outcome(await open(byGfid(g), O_RDONLY)),
        openRdwr: outcome(await open(byGfid(g), O_RDWR)),
        openTrunc: outcome(await open(byGfid(g), O_WRONLY | O_TRUNC)),
        truncate: outcome(await req('truncate', [byGfid(g), 0])),
        truncate3: outcome(await req('truncate', [byGfid(g), 3])),
        chmod: outcome(await req('setattr', [byGfid(g), { mode: 0o777 }])),
        chmodSetuid: outcome(await req('setattr', [byGfid(g), { mode: 0o4777 }])),
        setUserXattr: outcome(await req('setxattr', [byGfid(g), 'user.planted', Buffer.from('x'), 0])),
        replaceUserXattr: outcome(await req('setxattr', [byGfid(g), 'user.sentinel', Buffer.from('overwritten'), 0])),
        removeUserXattr: outcome(await req('removexattr', [byGfid(g), 'user.sentinel'])),
        getUserXattr: outcome(await req('getxattr', [byGfid(g), 'user.sentinel'])),
        setGfidXattr: outcome(await req('setxattr', [byGfid(g), 'trusted.gfid', Buffer.alloc(16), 0])),
      };
      const bad = notRefused(o);
      if (Object.keys(bad).length) wrong[name] = bad;
      // these may succeed, on the link itself: check what they say
      const chown = await req('setattr', [byGfid(g), { uid: 4321, gid: 4321, atime: { sec: 1, nsec: 0 }, mtime: 'now' }]);
      if (chown?.ok && ((chown.value as { mode: number }).mode & S_IFMT) !== S_IFLNK) leaks.push(`${name}: setattr answered for a non-symlink`);
      const stat = await req('stat', [byGfid(g)]);
      if (stat?.ok && ((stat.value as { mode: number }).mode & S_IFMT) !== S_IFLNK) leaks.push(`${name}: stat is not a symlink's`);
      const list = await req('listxattr', [byGfid(g)]);
      if (list?.ok && (list.value as string[]).includes('user.sentinel')) leaks.push(`${name}: listxattr shows the target's xattrs`);
      const trusted = await req('setxattr', [byGfid(g), 'trusted.planted', Buffer.from('on the link'), 0]);
      if (trusted?.ok) expect(sys.getxattr(path.join(storage, name), 'trusted.planted').toString()).toBe('on the link');
      // a hard link of the symlink is another symlink, inside
      const hard = await req('link', [byGfid(g), loc(ROOT_GFID, `hard-${name}`)]);
      if (hard?.ok) expect(fs.lstatSync(path.join(storage, `hard-${name}`)).isSymbolicLink()).toBe(true);
    }
    expect({ wrong, leaks }).toEqual({ wrong: {}, leaks: [] });
    expectOutsideUntouched();
  });

  test('a directory renamed away and replaced by a symlink to outside: its GFID still leads to the directory, inside', async () => {
    const d2 = uuidv4();
    expect(outcome(await req('mkdir', [loc(ROOT_GFID, 'd2', d2), 0o755]))).toBe('OK');
    expect(await create(loc(d2, 'inner', uuidv4()))).toBe('OK');
    expect(outcome(await req('rename', [loc(ROOT_GFID, 'd2'), loc(ROOT_GFID, 'moved'), 0]))).toBe('OK');
    expect(outcome(await req('symlink', [outside, loc(ROOT_GFID, 'd2', uuidv4())]))).toBe('OK');
    expect(outcome(await req('lookup', [loc(ROOT_GFID, 'd2')]))).toBe('OK');

    const made = await create(loc(d2, PLANT, uuidv4()));
    expect(['OK', ...REFUSALS]).toContain(made);
    if (made === 'OK') expect(fs.existsSync(path.join(storage, 'moved', PLANT))).toBe(true);
    expect(outcome(await req('lookup', [loc(d2, 'secret')]))).toBe('ENOENT');
    const dir = await open(byGfid(d2), O_RDONLY, true);
    expect(outcome(dir)).toBe('OK');
    const listed = await req('readdir', [(dir as { fd: number }).fd, 1 << 20, 0]);
    await req('release', [(dir as { fd: number }).fd]);
    const names = ((listed as { value: { name: string }[] }).value ?? []).map((e) => e.name).sort();
    expect(names).toEqual(['inner', ...(made === 'OK' ? [PLANT] : [])].sort());
    expectOutsideUntouched();
  });

  test('the root and directories cannot be hard-linked, and no new object can take a GFID already in use', async () => {
    const o: Record<string, string> = {
      linkRoot: outcome(await req('link', [byGfid(ROOT_GFID), loc(ROOT_GFID, `${PLANT}-root`)])),
      linkDir: outcome(await req('link', [byGfid(D), loc(ROOT_GFID, `${PLANT}-dir`)])),
      mkdirAsRoot: outcome(await req('mkdir', [loc(ROOT_GFID, `${PLANT}-1`, ROOT_GFID), 0o755])),
      createAsRoot: await create(loc(ROOT_GFID, `${PLANT}-2`, ROOT_GFID)),
      symlinkAsRoot: outcome(await req('symlink', [outside, loc(ROOT_GFID, `${PLANT}-3`, ROOT_GFID)])),
      mknodAsRoot: outcome(await req('mknod', [loc(ROOT_GFID, `${PLANT}-4`, ROOT_GFID), S_IFREG | 0o644, 0])),
      mkdirAsFile: outcome(await req('mkdir', [loc(ROOT_GFID, `${PLANT}-5`, F), 0o755])),
      symlinkAsDir: outcome(await req('symlink', [outside, loc(ROOT_GFID, `${PLANT}-6`, D)])),
      createAsSymlink: await create(loc(ROOT_GFID, `${PLANT}-7`, links.out)),
    };
    expect(o).toEqual({
      linkRoot: 'EPERM',
      linkDir: 'EPERM',
      mkdirAsRoot: 'EEXIST',
      createAsRoot: 'EEXIST',
      symlinkAsRoot: 'EEXIST',
      mknodAsRoot: 'EEXIST',
      mkdirAsFile: 'EEXIST',
      symlinkAsDir: 'EEXIST',
      createAsSymlink: 'EEXIST',
    });
    expect(fs.readdirSync(storage).filter((n) => n.startsWith(PLANT))).toEqual([]);
    expectOutsideUntouched();
  });

  test('a fifo a client made is never opened by the brick (open or truncate by its GFID)', async () => {
    // A reader blocked opening the fifo wakes up the moment anyone opens it for writing (and
    // a brick opening it for reading would block: no reply). The reader also echoes the marks
    // the test sends it: after every fop was answered, a mark, then the test opens the fifo
    // itself. The reader's lines in that order show nobody opened it before the test did.
    const fifo = uuidv4();
    expect(outcome(await req('mknod', [loc(ROOT_GFID, 'fifo', fifo), S_IFIFO | 0o666, 0]))).toBe('OK');
    const nul = uuidv4();
    expect(outcome(await req('mknod', [loc(ROOT_GFID, 'null', nul), S_IFCHR | 0o666, (1 << 8) | 3]))).toBe('OK');
    const fifoPath = path.join(storage, 'fifo');
    const script = `
      require('fs').open(${JSON.stringify(fifoPath)}, 'r', (e) => { process.stdout.write(e ? 'error ' + e.code + '\\n' : 'opened\\n'); process.exit(0); });
      process.stdin.setEncoding('utf8').on('data', (d) => process.stdout.write('mark ' + d));
      process.stdout.write('ready\\n');
    `;
    const reader = track(spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] }));
    let out = '';
    reader.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const lines = () => out.split('\n').filter(Boolean);
    let writer: number | undefined;
    try {
      await waitFor(() => lines().length > 0, 10_000, 'the fifo reader to start');

      const opens: Record<string, string> = {};
      for (const [what, g] of [
        ['fifo', fifo],
        ['null', nul],
      ]) {
        opens[`${what} open O_RDONLY`] = outcome(await open(byGfid(g), O_RDONLY));
        opens[`${what} open O_WRONLY`] = outcome(await open(byGfid(g), O_WRONLY));
        opens[`${what} open O_RDWR`] = outcome(await open(byGfid(g), O_RDWR));
      }
      expect(opens).toEqual({
        'fifo open O_RDONLY': 'ENXIO',
        'fifo open O_WRONLY': 'ENXIO',
        'fifo open O_RDWR': 'ENXIO',
        'null open O_RDONLY': 'ENXIO',
        'null open O_WRONLY': 'ENXIO',
        'null open O_RDWR': 'ENXIO',
      });
      const truncated = outcome(await req('truncate', [byGfid(fifo), 0]));
      expect(REFUSALS.includes(truncated) ? 'refused' : truncated).toBe('refused');

      // Every fop above was answered: whatever the brick opened, it opened before this mark.
      reader.stdin!.write('answered\n');
      await waitFor(() => lines().length >= 2, 10_000, 'the reader to echo the mark');
      // Now the test opens the fifo for writing (once the reader waits in open: ENXIO before that).
      await waitFor(
        () => {
          if (lines().includes('opened')) return true; // someone else did already: the order below tells
          try {
            writer = fs.openSync(fifoPath, O_WRONLY | fs.constants.O_NONBLOCK);
            return true;
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ENXIO') throw e;
            return false;
          }
        },
        10_000,
        'the reader to wait in open',
      );
      await waitFor(() => lines().length >= 3, 10_000, 'the reader to open the fifo');
      expect(lines()).toEqual(['ready', 'mark answered', 'opened']);
    } finally {
      if (writer !== undefined) fs.closeSync(writer);
      reader.kill('SIGKILL');
    }
    expectOutsideUntouched();
  });

  test('afterwards: the brick still serves, and nothing outside its directory changed', async () => {
    const r = await req('lookup', [loc(ROOT_GFID, 'f')]);
    expect(outcome(r)).toBe('OK');
    expect((r as { value: { gfid: string } }).value.gfid).toBe(F);
    expect(c.closed).toBe(false);
    expectOutsideUntouched();
    // and the sentinel is exactly as made
    expect(fs.readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('top secret');
    expect(fs.statSync(path.join(outside, 'secret')).mode & 0o7777).toBe(0o640);
    expect(sys.getxattr(path.join(outside, 'secret'), 'user.sentinel').toString()).toBe('s1');
    expect(fs.readdirSync(outside).sort()).toEqual(['secret', 'sub']);
    expect(fs.readdirSync(base).sort()).toEqual(['brick.vol', 'outside', 'outside-file', 'storage']);
    expect(fs.readFileSync(outsideFile, 'utf8')).toBe('outside file');
  });
});
