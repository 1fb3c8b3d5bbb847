import * as fs from 'fs';
import { cleanupGraphs, readAll, writeFile } from '../helpers/graphs';
import { dataOn, onChild, startDht } from './distribute-helpers';

afterEach(cleanupGraphs);

test('smoke: files spread, read back, listed once', async () => {
  const v = await startDht(3);
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  for (let i = 0; i < 60; i++) await writeFile(b, `/d/f${i}`, `content ${i}`);
  for (let i = 0; i < 60; i++) expect(await readAll(b, `/d/f${i}`)).toBe(`content ${i}`);
  const names = (await b.readdir('/d')).map((e) => e.name).filter((n) => n !== '.' && n !== '..');
  expect(names.sort()).toEqual(Array.from({ length: 60 }, (_, i) => `f${i}`).sort());
  const per = v.dirs.map((d) => onChild(d, 'd').length);
  expect(per.reduce((a, b) => a + b)).toBe(60);
  for (const n of per) expect(n).toBeGreaterThan(5);
  for (let i = 0; i < 60; i++) expect(dataOn(v.dirs, `d/f${i}`)).toHaveLength(1);
  expect(fs.existsSync(v.dirs[1] + '/d')).toBe(true);
});
