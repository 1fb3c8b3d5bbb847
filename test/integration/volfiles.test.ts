// Every volfile shipped in volfiles/ is checked, and mounted or served as a user would (with
// its storage directory and port moved to a scratch area).
import * as fs from 'fs';
import * as path from 'path';
import { freePort, startBrick } from '../helpers/brick';
import { startMount, xlstack } from '../helpers/mount';
import { cleanupScratch } from '../helpers/scratch';

const VOLFILES = path.resolve(__dirname, '../../../volfiles');
const shipped = fs.readdirSync(VOLFILES).filter((f) => f.endsWith('.vol'));
const text = (name: string) => fs.readFileSync(path.join(VOLFILES, name), 'utf8');

afterAll(cleanupScratch);

test('volfiles/ ships the default volfile and a brick with its client', () => {
  expect(shipped).toEqual(expect.arrayContaining(['default.vol', 'brick.vol', 'client.vol']));
});

test.each(shipped)('%s passes xlstack check', async (name) => {
  const r = await xlstack(['check', path.join(VOLFILES, name)]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
});

test('default.vol mounts and serves files', async () => {
  const m = await startMount({ volfile: text('default.vol').replace(/option directory \S+/g, 'option directory @BACKING@') });
  fs.mkdirSync(path.join(m.mountpoint, 'dir'));
  fs.writeFileSync(path.join(m.mountpoint, 'dir', 'file'), 'hello');
  expect(fs.readFileSync(path.join(m.mountpoint, 'dir', 'file'), 'utf8')).toBe('hello');
  expect(fs.readFileSync(path.join(m.backing, 'dir', 'file'), 'utf8')).toBe('hello');
  await m.unmount();
});

test('client.vol mounts brick.vol over loopback', async () => {
  const port = await freePort();
  const brick = await startBrick({ port, volfile: (dir, p) => text('brick.vol').replace(/option directory \S+/, `option directory ${dir}`).replace(/listen-port \d+/, `listen-port ${p}`) });
  const m = await startMount({ volfile: text('client.vol').replace(/remote-port \d+/, `remote-port ${port}`) });
  fs.mkdirSync(path.join(m.mountpoint, 'dir'));
  fs.writeFileSync(path.join(m.mountpoint, 'dir', 'file'), 'over the wire');
  expect(fs.readFileSync(path.join(m.mountpoint, 'dir', 'file'), 'utf8')).toBe('over the wire');
  await m.unmount(); // write-behind hands everything to the brick before the client leaves
  expect(fs.readFileSync(path.join(brick.dir, 'dir', 'file'), 'utf8')).toBe('over the wire');
  await brick.stop();
});
