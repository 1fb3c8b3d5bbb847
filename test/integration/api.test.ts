// The client API (src/api) against a real mount: the same POSIX checks run through
// Volume/File on one volume and through the kernel on a mount of another, and every value
// and errno must match. Then what only the API shows: per-call credentials, locks between
// two File objects, and a reload under open files.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { File, Volume } from '../../src/api';
import { FopError } from '../../src/core/errors';
import { POSIX_VOLFILE, TestMount, startMount, unmountAll, within, xlstack } from '../helpers/mount';
import { cleanupScratch, scratchDir } from '../helpers/scratch';

/** One step: an operation and its arguments (paths relative to the volume's root). */
type Step = [op: string, ...args: (string | number)[]];

const O = fs.constants;

const STEPS: Step[] = [
  ['mkdir', 'd', 0o755],
  ['mkdir', 'd', 0o755],
  ['write', 'd/f', 'hello world'],
  ['read', 'd/f'],
  ['stat', 'd/f'],
  ['pwrite', 'd/f', 'HELLO', 0],
  ['pread', 'd/f', 5, 6],
  ['truncate', 'd/f', 3],
  ['read', 'd/f'],
  ['append', 'd/f', '+tail'],
  ['read', 'd/f'],
  ['chmod', 'd/f', 0o640],
  ['stat', 'd/f'],
  ['chown', 'd/f', 1234, 2345],
  ['stat', 'd/f'],
  ['symlink', 'f', 'd/link'],
  ['readlink', 'd/link'],
  ['link', 'd/f', 'd/hard'],
  ['stat', 'd/hard'],
  ['setxattr', 'd/f', 'user.k', 'v1'],
  ['getxattr', 'd/f', 'user.k'],
  ['listxattr', 'd/f'],
  ['removexattr', 'd/f', 'user.k'],
  ['getxattr', 'd/f', 'user.k'],
  ['rename', 'd/hard', 'd/moved'],
  ['readdir', 'd'],
  ['unlink', 'd/moved'],
  ['rmdir', 'd'],
  ['unlink', 'd/f'],
  ['unlink', 'd/link'],
  ['rmdir', 'd'],
  ['stat', 'd'],
  ['read', 'missing'],
  ['mkdir', 'missing/sub', 0o755],
];

/** What a stat says that two different volumes must agree on. */
const statOf = (s: { size: number; mode: number; uid: number; gid: number; nlink: number }) => ({ size: s.size, mode: s.mode.toString(8), uid: s.uid, gid: s.gid, nlink: s.nlink });

/** The steps through the API. */
async function throughApi(vol: Volume): Promise<unknown[]> {
  const run = async ([op, ...a]: Step): Promise<unknown> => {
    const p = (x: string | number) => `/${x}`;
    const readAll = async (f: File) => (await f.pread(1 << 20, 0)).toString();
    switch (op) {
      case 'mkdir':
        return void (await vol.mkdir(p(a[0]), a[1] as number));
      case 'write': {
        const f = await vol.open(p(a[0]), O.O_CREAT | O.O_WRONLY | O.O_TRUNC, 0o644);
        await f.write(Buffer.from(a[1] as string));
        return f.close();
      }
      case 'append': {
        const f = await vol.open(p(a[0]), O.O_WRONLY | O.O_APPEND);
        await f.write(Buffer.from(a[1] as string));
        return f.close();
      }
      case 'read': {
        const f = await vol.open(p(a[0]));
        try {
          return await readAll(f);
        } finally {
          await f.close();
        }
      }
      case 'pwrite': {
        const f = await vol.open(p(a[0]), O.O_WRONLY);
        await f.pwrite(Buffer.from(a[1] as string), a[2] as number);
        return f.close();
      }
      case 'pread': {
        const f = await vol.open(p(a[0]));
        try {
          return (await f.pread(a[1] as number, a[2] as number)).toString();
        } finally {
          await f.close();
        }
      }
      case 'stat':
        return statOf(await vol.stat(p(a[0])));
      case 'truncate':
        return void (await vol.setattr(p(a[0]), { size: a[1] as number }));
      case 'chmod':
        return void (await vol.setattr(p(a[0]), { mode: a[1] as number }));
      case 'chown':
        return void (await vol.setattr(p(a[0]), { uid: a[1] as number, gid: a[2] as number }));
      case 'symlink':
        return void (await vol.symlink(a[0] as string, p(a[1])));
      case 'readlink':
        return (await vol.readlink(p(a[0]))).toString();
      case 'link':
        return void (await vol.link(p(a[0]), p(a[1])));
      case 'setxattr':
        return vol.setxattr(p(a[0]), a[1] as string, Buffer.from(a[2] as string));
      case 'getxattr':
        return (await vol.getxattr(p(a[0]), a[1] as string)).toString();
      case 'listxattr':
        return (await vol.listxattr(p(a[0]))).filter((n) => n.startsWith('user.')).sort();
      case 'removexattr':
        return vol.removexattr(p(a[0]), a[1] as string);
      case 'rename':
        return vol.rename(p(a[0]), p(a[1]));
      case 'readdir':
        return (await vol.readdir(p(a[0]))).map((e) => e.text).sort();
      case 'unlink':
        return vol.unlink(p(a[0]));
      case 'rmdir':
        return vol.rmdir(p(a[0]));
    }
    throw new Error(`no step ${op}`);
  };
  const out: unknown[] = [];
  for (const s of STEPS) out.push(await run(s).then((v) => v ?? 'ok', (e) => (e instanceof FopError ? e.code : String(e))));
  return out;
}

/** The same steps on a mounted directory, in a child process (never the serving one). */
const FS_CHILD = `
const fs = require('fs'), fsp = fs.promises, path = require('path');
const [root, steps] = JSON.parse(process.argv[1]);
const p = (x) => path.join(root, String(x));
const statOf = (s) => ({ size: s.size, mode: s.mode.toString(8), uid: s.uid, gid: s.gid, nlink: s.nlink });
const xattr = (args) => require('child_process').execFileSync(args[0], args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const run = async ([op, ...a]) => {
  switch (op) {
    case 'mkdir': return fsp.mkdir(p(a[0]), a[1]);
    case 'write': return fsp.writeFile(p(a[0]), a[1]);
    case 'append': return fsp.appendFile(p(a[0]), a[1]);
    case 'read': return fsp.readFile(p(a[0]), 'utf8');
    case 'pwrite': { const f = await fsp.open(p(a[0]), 'r+'); await f.write(Buffer.from(a[1]), 0, a[1].length, a[2]); return f.close(); }
    case 'pread': { const f = await fsp.open(p(a[0]), 'r'); const b = Buffer.alloc(a[1]); const r = await f.read(b, 0, a[1], a[2]); await f.close(); return b.subarray(0, r.bytesRead).toString(); }
    case 'stat': return statOf(await fsp.lstat(p(a[0])));
    case 'truncate': return fsp.truncate(p(a[0]), a[1]);
    case 'chmod': return fsp.chmod(p(a[0]), a[1]);
    case 'chown': return fsp.chown(p(a[0]), a[1], a[2]);
    case 'symlink': return fsp.symlink(a[0], p(a[1]));
    case 'readlink': return fsp.readlink(p(a[0]));
    case 'link': return fsp.link(p(a[0]), p(a[1]));
    case 'setxattr': xattr(['setfattr', '-n', a[1], '-v', a[2], p(a[0])]); return;
    case 'getxattr': try { return xattr(['getfattr', '--only-values', '-n', a[1], p(a[0])]); } catch (e) { return String(e.stderr).includes('No such attribute') ? { code: 'ENODATA' } : { code: 'EIO' }; }
    case 'listxattr': return xattr(['getfattr', '-m', '^user\\\\.', '--absolute-names', p(a[0])]).split('\\n').filter((l) => l.startsWith('user.')).sort();
    case 'removexattr': xattr(['setfattr', '-x', a[1], p(a[0])]); return;
    case 'rename': return fsp.rename(p(a[0]), p(a[1]));
    case 'readdir': return (await fsp.readdir(p(a[0]))).sort();
    case 'unlink': return fsp.unlink(p(a[0]));
    case 'rmdir': return fsp.rmdir(p(a[0]));
  }
  throw new Error('no step ' + op);
};
(async () => {
  const out = [];
  for (const s of steps) out.push(await run(s).then((v) => (v && v.code ? v.code : v ?? 'ok'), (e) => e.code || String(e)));
  process.stdout.write(JSON.stringify(out));
})();
`;

function throughMount(root: string): Promise<unknown[]> {
  return within(
    new Promise<unknown[]>((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', FS_CHILD, JSON.stringify([root, STEPS])], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`the mount side failed (${code}): ${err}`))));
    }),
    60_000,
  ) as Promise<unknown[]>;
}

let mnt: TestMount;
let vol: Volume;
let volBacking: string;

beforeAll(async () => {
  mnt = await startMount();
  const dir = scratchDir('xlstack-api-');
  volBacking = path.join(dir, 'backing');
  fs.mkdirSync(volBacking);
  const volfile = path.join(dir, 'api.vol');
  // access-control: without a kernel in front, the graph checks the caller's permissions itself.
  fs.writeFileSync(
    volfile,
    `${POSIX_VOLFILE.replace(/@BACKING@/g, volBacking)}\nvolume api-access\n    type features/access-control\n    subvolumes test-posix\nend-volume\n` +
      `volume api-locks\n    type features/locks\n    subvolumes api-access\nend-volume\n`,
  );
  vol = await Volume.open(volfile);
});

afterAll(async () => {
  await vol?.close();
  await unmountAll();
  await cleanupScratch();
});

test('the same POSIX steps give the same values and errnos through the API and through a mount', async () => {
  const onMount = await throughMount(mnt.mountpoint);
  const onApi = await throughApi(vol);
  const diff = STEPS.map((s, i) => ({ step: s.join(' '), mount: onMount[i], api: onApi[i] })).filter((d) => JSON.stringify(d.mount) !== JSON.stringify(d.api));
  expect(diff).toEqual([]);
  // The steps do meet errors, and not only successes.
  expect(onApi).toEqual(expect.arrayContaining(['EEXIST', 'ENOENT', 'ENODATA']));
});

test('credentials per call: what a user creates is theirs, and a user is refused what mode bits refuse', async () => {
  const alice = { uid: 1234, gid: 1234, groups: [], pid: 0 };
  const bob = { uid: 4321, gid: 4321, groups: [], pid: 0 };
  await vol.mkdir('/shared', 0o777);
  const f = await vol.open('/shared/alice', O.O_CREAT | O.O_WRONLY, 0o600, alice);
  await f.write(Buffer.from('secret'));
  await f.close();
  const st = fs.statSync(path.join(volBacking, 'shared', 'alice'));
  expect([st.uid, st.gid, st.mode & 0o777]).toEqual([1234, 1234, 0o600]);
  await expect(vol.open('/shared/alice', O.O_RDONLY, 0, bob)).rejects.toMatchObject({ code: 'EACCES' });
  await expect(vol.setattr('/shared/alice', { mode: 0o644 }, bob)).rejects.toMatchObject({ code: 'EPERM' });
  const again = await vol.open('/shared/alice', O.O_RDONLY, 0, alice);
  expect((await again.read(100)).toString()).toBe('secret');
  await again.close();
});

test('locks between two open files: a conflicting lock is refused, and granted once the holder closes', async () => {
  const a = await vol.open('/locked', O.O_CREAT | O.O_RDWR, 0o644);
  const b = await vol.open('/locked', O.O_RDWR);
  await a.lock('write', 0, 10);
  await expect(b.lock('write', 5, 10)).rejects.toMatchObject({ code: 'EAGAIN' });
  await b.lock('write', 10, 10);
  const waiting = b.lock('read', 0, 5, true);
  await a.close();
  await within(waiting, 10_000);
  await b.close();
});

test('a reload under open files: they keep working on the new graph', async () => {
  const f = await vol.open('/kept', O.O_CREAT | O.O_RDWR, 0o644);
  await f.write(Buffer.from('before'));
  const volfile = path.join(path.dirname(volBacking), 'api.vol');
  fs.appendFileSync(volfile, '\nvolume api-trace\n    type debug/trace\n    subvolumes api-locks\nend-volume\n');
  expect(await vol.reload()).toMatchObject({ action: 'switched' });
  await f.write(Buffer.from(' after'));
  expect((await f.pread(100, 0)).toString()).toBe('before after');
  await f.close();
  expect(vol.graph).toBe(2);
});

test('xlstack put and get copy a file into and out of a volume without a mount (a tool on the API)', async () => {
  const dir = scratchDir('xlstack-put-');
  const backing = path.join(dir, 'backing');
  fs.mkdirSync(backing);
  const volfile = path.join(dir, 'put.vol');
  fs.writeFileSync(volfile, POSIX_VOLFILE.replace(/@BACKING@/g, backing));
  const data = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  fs.writeFileSync(path.join(dir, 'in'), data, { mode: 0o640 });
  fs.chmodSync(path.join(dir, 'in'), 0o640);
  expect((await xlstack(['put', volfile, path.join(dir, 'in'), '/copied'])).code).toBe(0);
  expect(fs.readFileSync(path.join(backing, 'copied')).equals(data)).toBe(true);
  expect(fs.statSync(path.join(backing, 'copied')).mode & 0o777).toBe(0o640);
  expect((await xlstack(['get', volfile, '/copied', path.join(dir, 'out')])).code).toBe(0);
  expect(fs.readFileSync(path.join(dir, 'out')).equals(data)).toBe(true);
  const missing = await xlstack(['get', volfile, '/nope', path.join(dir, 'out2')]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain('ENOENT');
});
