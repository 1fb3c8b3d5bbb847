// Children going down and up: the volume is up while one child is; a directory made while a
// child is down gets its copy there on the next lookup once it is back; what needs every copy
// (rmdir, a directory rename) is refused meanwhile; names hashed to the down child fail
// clearly, the others work.
import * as fs from 'fs';
import * as path from 'path';
import { XlEvent } from '../../src/core/events';
import { cleanupGraphs, errCode, readAll, writeFile } from '../helpers/graphs';
import { nameOn, startDht } from './distribute-helpers';

afterEach(cleanupGraphs);

let seq = 0;

test('up while any child is up; down when none is', async () => {
  const v = await startDht(2, { prefix: `ch${++seq}` });
  const [c0, c1] = v.dht.children;
  expect(v.graph.status$.value).toBe('up');
  v.dht.notify(XlEvent.CHILD_DOWN, c0);
  expect(v.graph.status$.value).toBe('up');
  v.dht.notify(XlEvent.CHILD_DOWN, c1);
  expect(v.graph.status$.value).toBe('down');
  v.dht.notify(XlEvent.CHILD_UP, c1);
  expect(v.graph.status$.value).toBe('up');
  expect(v.dht.dump()).toMatchObject({ children: [{ name: v.names[0], up: false }, { name: v.names[1], up: true }] });
});

test('a directory made while a child is down is made there on the next lookup once it is back', async () => {
  const v = await startDht(3, { prefix: `ch${++seq}` });
  const b = v.bridge;
  const two = v.dht.children[2];
  await b.mkdir('/top', 0o755);
  const name = await nameOn(v, '/top', 0, 'd');
  const onDown = await nameOn(v, '/top', 2, 'x');
  v.dht.notify(XlEvent.CHILD_DOWN, two);
  // A directory's name answers on its hashed child: that one must be up.
  expect(await errCode(b.mkdir(`/top/${onDown}`, 0o755))).toBe('ENOTCONN');
  await b.mkdir(`/top/${name}`, 0o711);
  expect(fs.existsSync(path.join(v.dirs[2], 'top', name))).toBe(false);
  // Its layout leaves the down child out: names go to the others.
  for (let i = 0; i < 20; i++) await writeFile(b, `/top/${name}/f${i}`, `${i}`);
  expect(await errCode(b.rmdir(`/top/${name}`))).toBe('ENOTCONN');
  expect(await errCode(b.rename(`/top/${name}`, '/top/e'))).toBe('ENOTCONN');
  v.dht.notify(XlEvent.CHILD_UP, two);
  await b.getattr(`/top/${name}`);
  const copy = fs.statSync(path.join(v.dirs[2], 'top', name));
  expect(copy.mode & 0o7777).toBe(0o711);
  for (let i = 0; i < 20; i++) expect(await readAll(b, `/top/${name}/f${i}`)).toBe(`${i}`);
  expect(fs.readdirSync(path.join(v.dirs[2], 'top', name))).toEqual([]);
});

test('a name hashed to a down child cannot be made (ENOTCONN); the others can', async () => {
  const v = await startDht(3, { prefix: `ch${++seq}` });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  const there = await nameOn(v, '/d', 1, 'down');
  const elsewhere = await nameOn(v, '/d', 0, 'up');
  v.dht.notify(XlEvent.CHILD_DOWN, v.dht.children[1]);
  expect(await errCode(b.create(`/d/${there}`, 0o644, fs.constants.O_RDWR))).toBe('ENOTCONN');
  await writeFile(b, `/d/${elsewhere}`, 'fine');
  expect(await readAll(b, `/d/${elsewhere}`)).toBe('fine');
  expect(fs.existsSync(path.join(v.dirs[1], 'd', there))).toBe(false);
});
