// Names of files across children: renames and links keep the data where it is (same GFID,
// open fds untouched) and give the new name a linkto file on its hashed child; unlink and
// rmdir take linkto files with them; directories change on every copy or on none.
import * as fs from 'fs';
import * as path from 'path';
import { constants } from 'fs';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, ROOT_CALLER } from '../../src/core/types';
import { LINKTO_XATTR } from '../../xlators/cluster/distribute/linkto';
import { cleanupGraphs, errCode, readAll, writeFile } from '../helpers/graphs';
import { backingXattr, dataOn, isLinkto, nameOn, startDht } from './distribute-helpers';

afterEach(cleanupGraphs);

let seq = 0;
const prefix = () => `rn${++seq}`;
const req = { caller: ROOT_CALLER };
const exists = (dir: string, rel: string) => fs.existsSync(path.join(dir, rel));

test('a rename to a name hashed elsewhere keeps the GFID and the data in place; an open fd keeps working', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  const from = await nameOn(v, '/d', 0, 'src');
  const to = await nameOn(v, '/d', 1, 'dst');
  await writeFile(b, `/d/${from}`, 'hello');
  const gfid = (await b.getattr(`/d/${from}`)).gfid;
  const fh = await b.open(`/d/${from}`, constants.O_RDWR);
  await b.rename(`/d/${from}`, `/d/${to}`);
  expect((await b.getattr(`/d/${to}`)).gfid).toBe(gfid);
  expect(await errCode(b.getattr(`/d/${from}`))).toBe('ENOENT');
  expect(dataOn(v.dirs, `d/${to}`)).toEqual([0]);
  expect(isLinkto(v.dirs[1], `d/${to}`)).toBe(true);
  expect(backingXattr(path.join(v.dirs[1], 'd', to), LINKTO_XATTR)?.toString()).toBe(v.names[0]);
  expect(v.dirs.some((d) => exists(d, `d/${from}`))).toBe(false);
  expect(await b.write(`/d/${to}`, fh, Buffer.from('HE'), 0)).toBe(2);
  expect((await b.read(`/d/${to}`, fh, 10, 0)).toString()).toBe('HEllo');
  await b.release(`/d/${to}`, fh);
  expect(await readAll(b, `/d/${to}`)).toBe('HEllo');
  expect((await b.readdir('/d')).map((e) => e.name).filter((n) => n !== '.' && n !== '..')).toEqual([to]);
});

test('a rename over a file whose data is on a third child replaces it everywhere', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  const from = await nameOn(v, '/d', 0, 'src');
  const to = await nameOn(v, '/d', 1, 'dst');
  await writeFile(b, `/d/${from}`, 'new');
  // The old target: data on child 2, a linkto file on child 1 (its hashed child).
  fs.writeFileSync(path.join(v.dirs[2], 'd', to), 'old');
  expect(await readAll(b, `/d/${to}`)).toBe('old');
  expect(isLinkto(v.dirs[1], `d/${to}`)).toBe(true);
  const gfid = (await b.getattr(`/d/${from}`)).gfid;
  await b.rename(`/d/${from}`, `/d/${to}`);
  expect(await readAll(b, `/d/${to}`)).toBe('new');
  expect((await b.getattr(`/d/${to}`)).gfid).toBe(gfid);
  expect(exists(v.dirs[2], `d/${to}`)).toBe(false);
  expect(backingXattr(path.join(v.dirs[1], 'd', to), LINKTO_XATTR)?.toString()).toBe(v.names[0]);
  const listed = (await b.readdir('/d')).map((e) => e.name).filter((n) => n !== '.' && n !== '..');
  expect(listed).toEqual([to]);
});

test('renaming a file reached through a linkto file to another name of the same hashed child moves the linkto file with it', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  const from = await nameOn(v, '/d', 0, 'a');
  const to = await nameOn(v, '/d', 0, 'b');
  fs.writeFileSync(path.join(v.dirs[2], 'd', from), 'on two');
  expect(await readAll(b, `/d/${from}`)).toBe('on two');
  const linkIno = fs.statSync(path.join(v.dirs[0], 'd', from)).ino;
  await b.rename(`/d/${from}`, `/d/${to}`);
  expect(await readAll(b, `/d/${to}`)).toBe('on two');
  expect(exists(v.dirs[0], `d/${from}`)).toBe(false);
  expect(fs.statSync(path.join(v.dirs[0], 'd', to)).ino).toBe(linkIno);
  expect(dataOn(v.dirs, `d/${to}`)).toEqual([2]);
});

test('RENAME_NOREPLACE refuses a name that exists on any child; RENAME_EXCHANGE is not done', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  const from = await nameOn(v, '/d', 0, 'a');
  const to = await nameOn(v, '/d', 1, 'b');
  await writeFile(b, `/d/${from}`, 'a');
  fs.writeFileSync(path.join(v.dirs[2], 'd', to), 'b, misplaced');
  expect(await errCode(b.core.rename(req, '/d', from, '/d', to, RENAME_NOREPLACE))).toBe('EEXIST');
  expect(await errCode(b.core.rename(req, '/d', from, '/d', to, RENAME_EXCHANGE))).toBe('EINVAL');
  expect(await readAll(b, `/d/${from}`)).toBe('a');
  expect(await readAll(b, `/d/${to}`)).toBe('b, misplaced');
  const free = await nameOn(v, '/d', 2, 'c');
  await b.core.rename(req, '/d', from, '/d', free, RENAME_NOREPLACE);
  expect(await readAll(b, `/d/${free}`)).toBe('a');
});

test('unlink removes the data and the linkto file', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  const name = await nameOn(v, '/d', 0);
  fs.writeFileSync(path.join(v.dirs[1], 'd', name), 'x');
  await b.getattr(`/d/${name}`);
  expect(isLinkto(v.dirs[0], `d/${name}`)).toBe(true);
  await b.unlink(`/d/${name}`);
  expect(v.dirs.some((d) => exists(d, `d/${name}`))).toBe(false);
  expect(await errCode(b.getattr(`/d/${name}`))).toBe('ENOENT');
});

test('a hard link hashed to another child: a linkto file there, one file under two names until one goes', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  const one = await nameOn(v, '/d', 0, 'one');
  const two = await nameOn(v, '/d', 2, 'two');
  await writeFile(b, `/d/${one}`, 'shared');
  await b.link(`/d/${one}`, `/d/${two}`);
  const [a, c] = [await b.getattr(`/d/${one}`), await b.getattr(`/d/${two}`)];
  expect(a.gfid).toBe(c.gfid);
  expect(a.ino).toBe(c.ino);
  expect(c.nlink).toBe(2);
  expect(dataOn(v.dirs, `d/${two}`)).toEqual([0]);
  expect(isLinkto(v.dirs[2], `d/${two}`)).toBe(true);
  await b.unlink(`/d/${one}`);
  expect(await readAll(b, `/d/${two}`)).toBe('shared');
  expect((await b.getattr(`/d/${two}`)).nlink).toBe(1);
});

test('a directory is renamed on every copy, with its layout and files', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  for (let i = 0; i < 10; i++) await writeFile(b, `/d/f${i}`, `${i}`);
  const gfid = (await b.getattr('/d')).gfid;
  await b.rename('/d', '/e');
  expect((await b.getattr('/e')).gfid).toBe(gfid);
  for (const d of v.dirs) expect([exists(d, 'd'), exists(d, 'e')]).toEqual([false, true]);
  for (let i = 0; i < 10; i++) expect(await readAll(b, `/e/f${i}`)).toBe(`${i}`);
});

test('rmdir: stale linkto files do not keep a directory; a file on any child does, and then every copy stays', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  const name = await nameOn(v, '/d', 0);
  fs.writeFileSync(path.join(v.dirs[1], 'd', name), 'x');
  await b.getattr(`/d/${name}`); // a linkto file on child 0
  expect(await errCode(b.rmdir('/d'))).toBe('ENOTEMPTY');
  for (const d of v.dirs) expect(exists(d, 'd')).toBe(true);
  // Its data goes behind the volume's back: the linkto file is stale, the directory empty.
  fs.rmSync(path.join(v.dirs[1], 'd', name));
  await b.rmdir('/d');
  for (const d of v.dirs) expect(exists(d, 'd')).toBe(false);
});

test('a mkdir one child refuses is undone on the others', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  const name = await nameOn(v, '/d', 0);
  // Child 2 has a file of that name the volume has not seen yet.
  fs.writeFileSync(path.join(v.dirs[2], 'd', name), 'in the way');
  expect(await errCode(b.mkdir(`/d/${name}`, 0o755))).toBe('EEXIST');
  for (const d of v.dirs.slice(0, 2)) expect(exists(d, `d/${name}`)).toBe(false);
  expect(fs.statSync(path.join(v.dirs[2], 'd', name)).isFile()).toBe(true);
});
