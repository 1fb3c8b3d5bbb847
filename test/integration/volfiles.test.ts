// Every volfile shipped in volfiles/ mounts and serves files (with its storage directories
// moved to a scratch area).
import * as fs from 'fs';
import * as path from 'path';
import { startMount, unmountAll, xlstack } from '../helpers/mount';

const VOLFILES = path.resolve(__dirname, '../../../volfiles');
const shipped = fs.readdirSync(VOLFILES).filter((f) => f.endsWith('.vol'));

afterAll(unmountAll);

test('volfiles/ ships at least the default volfile', () => {
  expect(shipped).toContain('default.vol');
});

test.each(shipped)('%s passes xlstack check', async (name) => {
  const r = await xlstack(['check', path.join(VOLFILES, name)]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
});

test.each(shipped)('%s mounts and serves files', async (name) => {
  const text = fs.readFileSync(path.join(VOLFILES, name), 'utf8').replace(/option directory \S+/g, 'option directory @BACKING@');
  const m = await startMount({ volfile: text });
  fs.mkdirSync(path.join(m.mountpoint, 'dir'));
  fs.writeFileSync(path.join(m.mountpoint, 'dir', 'file'), 'hello');
  expect(fs.readFileSync(path.join(m.mountpoint, 'dir', 'file'), 'utf8')).toBe('hello');
  expect(fs.readFileSync(path.join(m.backing, 'dir', 'file'), 'utf8')).toBe('hello');
  await m.unmount();
});
