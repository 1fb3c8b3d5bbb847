// Every volfile shipped in volfiles/ is checked, and mounted or served as a user would (with
// its storage directory and port moved to a scratch area). `xlstack check` tells the truth:
// what it accepts mounts, what mount refuses it refuses with the same words, and GlusterFS's
// own volfiles load with --passthrough-unknown unless they spread data over several bricks.
import * as fs from 'fs';
import * as path from 'path';
import { freePort, startBrick } from '../helpers/brick';
import { Registry } from '../../src/core/registry';
import { FIXTURES, volfilesUnder } from '../helpers/fixtures';
import { isMounted, startMount, xlstack } from '../helpers/mount';
import { cleanupScratch, scratchDir } from '../helpers/scratch';

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

describe('GlusterFS volfiles with --passthrough-unknown', () => {
  const files = volfilesUnder(FIXTURES).map((f) => [path.relative(FIXTURES, f), f]);
  // A cluster type xlstack does not implement would be passed through: refused.
  const registry = new Registry();
  const clustered = (f: string) => [...fs.readFileSync(f, 'utf8').matchAll(/^\s*type (cluster\/[a-z-]+)\s*$/gm)].some((m) => !registry.find(m[1]));

  test('some have cluster translators, some do not', () => {
    const anyCluster = (f: string) => /^\s*type cluster\//m.test(fs.readFileSync(f, 'utf8'));
    expect(files.filter(([, f]) => anyCluster(f)).length).toBeGreaterThan(0);
    expect(files.filter(([, f]) => !anyCluster(f)).length).toBeGreaterThan(0);
    // Their cluster types (replicate, distribute) are all implemented now: none is refused
    // (the refusal of an unimplemented one is shown in test/unit/core-builder.test.ts).
    expect(files.filter(([, f]) => clustered(f)).map(([rel]) => rel)).toEqual([]);
  });

  test("GlusterFS's distribute volumes load with the flag, the DHT options xlstack does not implement ignored and logged", async () => {
    const file = path.join(FIXTURES, 'gvdist/gvdist.tcp-fuse.vol');
    const r = await xlstack(['check', file, '--passthrough-unknown']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/volume 'gvdist-dht': ignoring option 'force-migration' that cluster\/distribute does not know/);
    const strict = await xlstack(['check', file]);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toMatch(/volume 'gvdist-dht': unknown option 'lock-migration' for cluster\/distribute/);
  });

  test.each(files)('%s: check refuses it exactly when a cluster translator would be passed through', async (_rel, file) => {
    const r = await xlstack(['check', file, '--passthrough-unknown', '--log-level', 'error']);
    if (!clustered(file)) {
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`${file}: ok (`);
      return;
    }
    expect(r.code).toBe(1);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    const named = r.stderr.split('\n').filter((l) => l.includes('cannot be passed through'));
    expect(named.length).toBeGreaterThan(0);
    for (const l of named) {
      const m = new RegExp(`(?:^|xlstack: )${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:(\\d+): volume '([^']+)': type '(cluster/[a-z]+)' is not implemented by xlstack and cannot be passed through, even with --passthrough-unknown: .*silently`).exec(l);
      expect(m).not.toBeNull();
      expect(lines[Number(m![1]) - 1].trim()).toBe(`type ${m![3]}`);
    }
  });
});

describe('check and mount judge a volfile alike', () => {
  test('a NUL byte in a path option: check and mount both refuse it, with the same problem on the same line', async () => {
    const dir = scratchDir('xlstack-nul-');
    const vol = path.join(dir, 'nul.vol');
    fs.writeFileSync(vol, `volume p\n    type storage/posix\n    option directory ${dir}/a\0b\nend-volume\n`);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    const checked = await xlstack(['check', vol]);
    expect(checked.code).toBe(1);
    expect(checked.stderr).toContain(`${vol}:3: volume 'p': bad value for option 'directory': `);
    expect(checked.stderr).toContain('NUL byte');
    const mounted = await xlstack(['mount', vol, mnt]);
    expect(mounted.code).toBe(1);
    expect(isMounted(mnt)).toBe(false);
    const problem = (r: { stderr: string }) => r.stderr.split('\n').find((l) => l.startsWith(`${vol}:3:`));
    expect(problem(mounted)).toBe(problem(checked));
  });

  test('a chain of 10,000 volumes passes check and mounts, and files go through all of it', async () => {
    const N = 10_000;
    let text = 'volume v0\n    type storage/posix\n    option directory @BACKING@\nend-volume\n';
    for (let i = 1; i < N; i++) text += `volume v${i}\n    type ${i % 2 ? 'debug/trace' : 'features/not-here'}\n    subvolumes v${i - 1}\nend-volume\n`;
    const dir = scratchDir('xlstack-deep-');
    const vol = path.join(dir, 'deep.vol');
    fs.writeFileSync(vol, text.replace('@BACKING@', dir));
    const checked = await xlstack(['check', vol, '--passthrough-unknown', '--log-level', 'error']);
    expect(checked.stderr).toBe('');
    expect(checked.stdout).toContain(`ok (${N} volumes, top 'v${N - 1}')`);
    const m = await startMount({ volfile: text, args: ['--passthrough-unknown'] });
    fs.mkdirSync(path.join(m.mountpoint, 'd'));
    fs.writeFileSync(path.join(m.mountpoint, 'd', 'f'), 'ten thousand levels');
    expect(fs.readFileSync(path.join(m.mountpoint, 'd', 'f'), 'utf8')).toBe('ten thousand levels');
    expect(fs.readFileSync(path.join(m.backing, 'd', 'f'), 'utf8')).toBe('ten thousand levels');
    await m.unmount();
  });
});
