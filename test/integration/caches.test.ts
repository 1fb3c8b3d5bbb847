// The caches on real mounts (kernel transport). Each translator alone over storage/posix: it
// does its job (its statedump counters show what it served) and gives what a plain directory
// gives; all four together pass the whole comparison workload. Then two client mounts of one
// brick, every cache on: close-to-open, and another client's changes seen on B at once with
// features/upcall on the brick (B's stat polled up to a 2 s deadline, while its caches would
// trust what they hold for 60 s and more; how long each took is printed, typically under a
// millisecond: a latency is reported, not asserted, so a loaded machine cannot fail the test),
// within md-cache-timeout + attribute-timeout without it.
import * as fs from 'fs';
import * as path from 'path';
import { TestBrick, clientLogin, serverLogin, startBrick } from '../helpers/brick';
import { TestMount, POSIX_VOLFILE, startMount, statedump } from '../helpers/mount';
import { cleanupScratch, scratchDir } from '../helpers/scratch';
import { StepResult, compareResults, runWorkload } from '../helpers/workload';

afterAll(cleanupScratch);

/** `layers` (type and options, bottom-up) over storage/posix. */
function over(top: string, layers: [string, Record<string, string>][]): string {
  let text = POSIX_VOLFILE;
  let below = 'test-posix';
  layers.forEach(([type, opts], i) => {
    const name = i === layers.length - 1 ? top : `layer-${i}`;
    text += `volume ${name}\n    type ${type}\n${Object.entries(opts).map(([k, v]) => `    option ${k} ${v}\n`).join('')}    subvolumes ${below}\nend-volume\n`;
    below = name;
  });
  return text;
}

/** The caches as GlusterFS stacks them, bottom-up (write-behind under them). */
const ALL: [string, Record<string, string>][] = [
  ['performance/write-behind', {}],
  ['performance/read-ahead', {}],
  ['performance/readdir-ahead', {}],
  ['performance/io-cache', {}],
  ['performance/md-cache', {}],
];

/** A translator's statedump on the mount's active graph, by type. */
async function dumped(m: TestMount, type: string): Promise<Record<string, number>> {
  const d = await statedump(m);
  const g = d.graphs.find((x) => x.id === d.activeGraph)!;
  return g.xlators.find((x: { type: string }) => x.type === type);
}

const pattern = (n: number, seed = 0) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return b;
};

describe('each cache alone on a mount', () => {
  let m: TestMount | undefined;
  afterEach(() => m?.unmount());

  test('md-cache: stats and lookups the kernel sends again are answered from the cache, right', async () => {
    // The kernel trusts nothing: every stat reaches the daemon.
    m = await startMount({ volfile: over('mdc', [['performance/md-cache', { 'md-cache-timeout': '60' }]]), args: ['--attribute-timeout', '0', '--entry-timeout', '0'] });
    const files = Array.from({ length: 20 }, (_, i) => path.join(m!.mountpoint, `f${i}`));
    files.forEach((f, i) => fs.writeFileSync(f, 'x'.repeat(i)));
    const before = await dumped(m, 'performance/md-cache');
    for (let round = 0; round < 5; round++) files.forEach((f, i) => expect(fs.statSync(f).size).toBe(i));
    const after = await dumped(m, 'performance/md-cache');
    expect(after.hits - before.hits).toBeGreaterThanOrEqual(4 * 20);
    // A change through the mount shows at once.
    fs.appendFileSync(files[3], 'more');
    expect(fs.statSync(files[3]).size).toBe(7);
    fs.chmodSync(files[4], 0o600);
    expect(fs.statSync(files[4]).mode & 0o777).toBe(0o600);
    fs.renameSync(files[5], path.join(m.mountpoint, 'moved'));
    expect(fs.existsSync(files[5])).toBe(false);
    expect(fs.statSync(path.join(m.mountpoint, 'moved')).size).toBe(5);
  });

  test('io-cache: a file read again after another open is served from its pages, and a write through the mount is read back', async () => {
    m = await startMount({ volfile: over('ioc', [['performance/io-cache', { 'cache-size': '16MB' }]]) });
    const f = path.join(m.mountpoint, 'data');
    const data = pattern(4 << 20);
    fs.writeFileSync(f, data);
    expect(fs.readFileSync(f).equals(data)).toBe(true);
    const warm = await dumped(m, 'performance/io-cache');
    // Each open drops the kernel's pages: the read reaches the daemon, which has them.
    expect(fs.readFileSync(f).equals(data)).toBe(true);
    const again = await dumped(m, 'performance/io-cache');
    expect(again.misses).toBe(warm.misses);
    expect(again.hits - warm.hits).toBeGreaterThanOrEqual(32);
    const fd = fs.openSync(f, 'r+');
    fs.writeSync(fd, Buffer.from('CHANGED'), 0, 7, 1 << 20);
    fs.closeSync(fd);
    const back = fs.readFileSync(f);
    expect(back.subarray(1 << 20, (1 << 20) + 7).toString()).toBe('CHANGED');
    expect(back.subarray(0, 1 << 20).equals(data.subarray(0, 1 << 20))).toBe(true);
  });

  test('read-ahead: a sequential read finds pages read ahead of it, and gets the file exactly', async () => {
    m = await startMount({ volfile: over('ra', [['performance/read-ahead', { 'page-count': '4' }]]) });
    const f = path.join(m.mountpoint, 'big');
    const data = pattern(16 << 20, 3);
    fs.writeFileSync(path.join(m.backing, 'big'), data);
    expect(fs.readFileSync(f).equals(data)).toBe(true);
    const d = await dumped(m, 'performance/read-ahead');
    expect(d.prefetched).toBeGreaterThan(0);
    expect(d.hits + d.waited).toBeGreaterThan(0);
  });

  test('readdir-ahead: `ls -l` of 2,000 entries is served from entries read ahead, and lists what the directory holds', async () => {
    m = await startMount({ volfile: over('rda', [['performance/readdir-ahead', {}]]) });
    const dir = path.join(m.backing, 'many');
    fs.mkdirSync(dir);
    for (let i = 0; i < 2000; i++) fs.writeFileSync(path.join(dir, `n${i}`), String(i));
    const listed = fs.readdirSync(path.join(m.mountpoint, 'many')).sort();
    expect(listed).toEqual(fs.readdirSync(dir).sort());
    const sizes = listed.map((n) => fs.statSync(path.join(m!.mountpoint, 'many', n)).size);
    expect(sizes).toEqual(listed.map((n) => n.length - 1));
    const d = await dumped(m, 'performance/readdir-ahead');
    expect(d.served).toBeGreaterThan(0);
    expect(d.requests).toBeGreaterThanOrEqual(2);
  });
});

describe('all four caches on a mount give what a plain directory gives', () => {
  let m: TestMount;
  let onPlain: StepResult[];
  let onMount: StepResult[];

  beforeAll(async () => {
    const plain = scratchDir('xlstack-plain-caches-');
    fs.chmodSync(plain, 0o755);
    onPlain = await runWorkload(plain);
    m = await startMount({ volfile: over('caches', ALL) });
    onMount = await runWorkload(m.mountpoint);
  }, 180_000);

  afterAll(() => m?.unmount());

  test('the whole comparison workload', () => {
    expect(compareResults(onPlain, onMount, ['plain', 'mount'])).toEqual([]);
  });
});

// --- two client mounts of one brick ---------------------------------------------------------

const brickVolfile = (upcall: boolean) => (dir: string, port: number) => `volume brick-posix
    type storage/posix
    option directory ${dir}
end-volume
${upcall ? 'volume brick-upcall\n    type features/upcall\n    subvolumes brick-posix\nend-volume\n' : ''}
volume brick
    type features/locks
    subvolumes ${upcall ? 'brick-upcall' : 'brick-posix'}
end-volume

volume brick-server
    type protocol/server
    option listen-port ${port}
${serverLogin('brick')}    subvolumes brick
end-volume
`;

/** A client of the brick with every cache on; `mdTimeout` and io-cache's cache-timeout as given. */
const clientVolfile = (port: number, mdTimeout: number, ioTimeout: number) => `volume remote
    type protocol/client
    option remote-port ${port}
    option remote-subvolume brick
${clientLogin()}    option ping-timeout 5
    option frame-timeout 30
end-volume
volume c-wb
    type performance/write-behind
    subvolumes remote
end-volume
volume c-ra
    type performance/read-ahead
    subvolumes c-wb
end-volume
volume c-rda
    type performance/readdir-ahead
    subvolumes c-ra
end-volume
volume c-ioc
    type performance/io-cache
    option cache-timeout ${ioTimeout}
    subvolumes c-rda
end-volume
volume client
    type performance/md-cache
    option md-cache-timeout ${mdTimeout}
    subvolumes c-ioc
end-volume
`;

/**
 * Polls `probe` until it returns true or `deadlineMs` passes (bounded, never a sleep that must
 * land in a window); how long it took, or undefined if the deadline passed first.
 */
function seenWithin(probe: () => boolean, deadlineMs: number): number | undefined {
  const t0 = process.hrtime.bigint();
  for (;;) {
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
    if (probe()) return elapsed;
    if (elapsed > deadlineMs) return undefined;
  }
}

const statOr = (p: string) => {
  try {
    return fs.statSync(p);
  } catch {
    return undefined;
  }
};

describe('two mounts of one brick with features/upcall, every cache on', () => {
  let brick: TestBrick;
  let a: TestMount;
  let b: TestMount;
  const onA = (n: string) => path.join(a.mountpoint, n);
  const onB = (n: string) => path.join(b.mountpoint, n);
  const latencies: number[] = [];

  beforeAll(async () => {
    brick = await startBrick({ volfile: brickVolfile(true) });
    // Long kernel and cache timeouts: what B sees change, the upcall told it.
    const args = ['--attribute-timeout', '60', '--entry-timeout', '60'];
    a = await startMount({ volfile: clientVolfile(brick.port, 600, 60), args });
    b = await startMount({ volfile: clientVolfile(brick.port, 600, 60), args });
  });

  afterAll(async () => {
    await Promise.all([a?.unmount(), b?.unmount()]);
    await brick?.stop();
    // For the report: how long B took to see each change.
    if (latencies.length) process.stderr.write(`upcall: B saw ${latencies.length} changes within ${latencies.map((l) => l.toFixed(1)).join(', ')} ms\n`);
  });

  test('close-to-open: a file rewritten and closed on A is read anew on B, 20 times, though B holds it in its caches', async () => {
    fs.writeFileSync(onA('cto'), 'generation 00');
    for (let i = 1; i <= 20; i++) {
      expect(fs.readFileSync(onB('cto'), 'utf8')).toBe(`generation ${String(i - 1).padStart(2, '0')}`);
      fs.writeFileSync(onA('cto'), `generation ${String(i).padStart(2, '0')}`);
    }
    expect(fs.readFileSync(onB('cto'), 'utf8')).toBe('generation 20');
    const ioc = await dumped(b, 'performance/io-cache');
    expect(ioc.hits + ioc.misses).toBeGreaterThan(0);
  });

  test('a large file B read (in io-cache and read ahead) and A rewrote in the middle: B\'s next open reads the new bytes', async () => {
    const data = pattern(8 << 20, 1);
    fs.writeFileSync(onA('big'), data);
    expect(fs.readFileSync(onB('big')).equals(data)).toBe(true);
    expect(fs.readFileSync(onB('big')).equals(data)).toBe(true);
    const fd = fs.openSync(onA('big'), 'r+');
    const patch = pattern(300_000, 9);
    fs.writeSync(fd, patch, 0, patch.length, 3 << 20);
    fs.closeSync(fd);
    patch.copy(data, 3 << 20);
    expect(fs.readFileSync(onB('big')).equals(data)).toBe(true);
  });

  test('attributes changed on A are seen on B at once, though its caches trust them for minutes (mode, owner, times, size)', () => {
    fs.writeFileSync(onA('attrs'), 'abc');
    expect(fs.statSync(onB('attrs')).size).toBe(3);
    const changes: [string, () => void, () => boolean][] = [
      ['chmod', () => fs.chmodSync(onA('attrs'), 0o640), () => (fs.statSync(onB('attrs')).mode & 0o777) === 0o640],
      ['chown', () => fs.chownSync(onA('attrs'), 4242, 4343), () => fs.statSync(onB('attrs')).uid === 4242],
      ['utimes', () => fs.utimesSync(onA('attrs'), 1_000_000, 1_000_000), () => fs.statSync(onB('attrs')).mtimeMs === 1e9],
      ['append', () => fs.appendFileSync(onA('attrs'), 'defg'), () => fs.statSync(onB('attrs')).size === 7],
      ['truncate', () => fs.truncateSync(onA('attrs'), 1), () => fs.statSync(onB('attrs')).size === 1],
    ];
    for (const [what, change, seen] of changes) {
      expect([what, seen()]).toEqual([what, false]);
      change();
      const t = seenWithin(seen, 2000);
      expect([what, t !== undefined]).toEqual([what, true]);
      latencies.push(t!);
    }
  });

  test('names changed on A are seen on B at once (made, renamed, removed), though B\'s kernel trusts names 60 s', () => {
    fs.mkdirSync(onA('names'));
    fs.writeFileSync(onA('names/old'), 'x');
    expect(fs.existsSync(onB('names/old'))).toBe(true);
    expect(fs.existsSync(onB('names/made'))).toBe(false);
    expect(fs.readdirSync(onB('names'))).toEqual(['old']);
    const changes: [string, () => void, () => boolean][] = [
      ['create', () => fs.writeFileSync(onA('names/made'), 'y'), () => statOr(onB('names/made'))?.size === 1],
      ['rename', () => fs.renameSync(onA('names/old'), onA('names/new')), () => !statOr(onB('names/old')) && statOr(onB('names/new'))?.size === 1],
      ['unlink', () => fs.unlinkSync(onA('names/new')), () => !statOr(onB('names/new'))],
    ];
    for (const [what, change, seen] of changes) {
      change();
      const t = seenWithin(seen, 2000);
      expect([what, t !== undefined]).toEqual([what, true]);
      latencies.push(t!);
    }
    expect(fs.readdirSync(onB('names'))).toEqual(['made']);
  });

  test('the kernel on B was told (INVAL_INODE / INVAL_ENTRY), and nothing went wrong on any side', async () => {
    const d = await statedump(b);
    expect(d.transport.invalidations.inodes).toBeGreaterThan(0);
    expect(d.transport.invalidations.entries).toBeGreaterThan(0);
    for (const log of [a.log(), b.log(), brick.log()]) expect(log).not.toMatch(/ERROR/);
  });

  test('a brick restart: whatever changed while B was not connected is not served from any cache (B\'s or its kernel\'s)', async () => {
    fs.writeFileSync(onA('restart'), 'before the restart');
    expect(fs.readFileSync(onB('restart'), 'utf8')).toBe('before the restart');
    expect(fs.readFileSync(onB('restart'), 'utf8')).toBe('before the restart');
    const before = (await statedump(b)).transport.invalidations.inodes as number;
    await brick.kill9();
    // What no upcall could tell: the brick's file rewritten while nobody was connected.
    const backing = path.join(brick.dir, 'restart');
    const fd = fs.openSync(backing, 'r+');
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, 'after it, and longer');
    fs.closeSync(fd);
    await brick.start();
    expect(fs.statSync(onB('restart')).size).toBe(20);
    expect(fs.readFileSync(onB('restart'), 'utf8')).toBe('after it, and longer');
    // The kernel was told to drop everything (every nodeid B holds).
    expect((await statedump(b)).transport.invalidations.inodes as number).toBeGreaterThan(before);
  });
});

describe('two mounts of one brick without features/upcall', () => {
  let brick: TestBrick;
  let a: TestMount;
  let b: TestMount;
  const MD_TIMEOUT_S = 2;
  const ATTR_TIMEOUT_S = 1;

  beforeAll(async () => {
    brick = await startBrick({ volfile: brickVolfile(false) });
    const args = ['--attribute-timeout', String(ATTR_TIMEOUT_S), '--entry-timeout', String(ATTR_TIMEOUT_S)];
    a = await startMount({ volfile: clientVolfile(brick.port, MD_TIMEOUT_S, 1), args });
    b = await startMount({ volfile: clientVolfile(brick.port, MD_TIMEOUT_S, 1), args });
  });

  afterAll(async () => {
    await Promise.all([a?.unmount(), b?.unmount()]);
    await brick?.stop();
  });

  test('a change on A is seen on B within md-cache-timeout + attribute-timeout, and B answered from its cache meanwhile', async () => {
    fs.writeFileSync(path.join(a.mountpoint, 'f'), 'abc');
    const onB = path.join(b.mountpoint, 'f');
    expect(fs.statSync(onB).size).toBe(3);
    const hits = (await dumped(b, 'performance/md-cache')).hits;
    fs.appendFileSync(path.join(a.mountpoint, 'f'), 'defg');
    const bound = (MD_TIMEOUT_S + ATTR_TIMEOUT_S) * 1000;
    const t = seenWithin(() => fs.statSync(onB).size === 7, bound + 1000);
    expect(t).toBeDefined();
    // Nothing told B: once its kernel asked again (attribute-timeout), md-cache answered until it expired.
    expect((await dumped(b, 'performance/md-cache')).hits).toBeGreaterThan(hits);
  });

  test('close-to-open holds without upcalls too: a file rewritten and closed on A is read anew on B', () => {
    const onA = path.join(a.mountpoint, 'cto');
    const onB = path.join(b.mountpoint, 'cto');
    fs.writeFileSync(onA, 'first version');
    expect(fs.readFileSync(onB, 'utf8')).toBe('first version');
    expect(fs.readFileSync(onB, 'utf8')).toBe('first version');
    fs.writeFileSync(onA, 'other version');
    expect(fs.readFileSync(onB, 'utf8')).toBe('other version');
  });
});
