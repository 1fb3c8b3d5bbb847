// A brick (`xlstack brick`, with login and features/access-control as volfiles/brick.vol
// has them) against local users speaking its protocol by hand:
// - a process running as uid 65534 without the password is refused, and gets nothing served;
// - with valid credentials, a caller uid that could not read a file on a local disk cannot
//   read it through the brick either (checked against the local disk, as that uid);
// - chmod of the brick root by a caller who does not own it is EPERM;
// - with root-squash, a client's root is nobody on the brick.
// Needs root (to run processes as other users; the brick keeps GFIDs in trusted.* xattrs).
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { TestBrick, serverLogin, startBrick } from '../helpers/brick';
import { ROOT_GFID, RawConn, outcome } from '../helpers/raw-peer';
import { cleanupScratch, track } from '../helpers/scratch';

const { O_RDONLY } = fs.constants;
const ALICE = { uid: 1234, gid: 1234, groups: [] as number[], pid: 99 };
const ROOT = { uid: 0, gid: 0, groups: [] as number[], pid: 98 };
const DIST = path.resolve(__dirname, '../..');

const volfile = (extra: string) => (dir: string, port: number) => `volume brick-posix
    type storage/posix
    option directory ${dir}
end-volume
volume brick
    type features/access-control
    subvolumes brick-posix
end-volume
volume brick-server
    type protocol/server
    option listen-port ${port}
${serverLogin('brick')}${extra}    subvolumes brick
end-volume
`;

afterAll(cleanupScratch);

/** Runs `script` with node as uid/gid `id`; its stdout (bounded: 20 s). */
function runAs(id: number, script: string, env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const child = track(spawn(process.execPath, ['-e', script], { uid: id, gid: id, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, out, err });
    });
  });
}

/** Opens, reads and closes `gfid` as `caller` through a logged-in raw connection: 'OK:<data>' or the errno. */
async function readAs(c: RawConn, gfid: string, caller: typeof ALICE): Promise<string> {
  const opened = await c.request('open', [{ path: '/x', gfid }, { flags: O_RDONLY }], 5000, caller);
  if (!opened?.ok) return outcome(opened);
  const read = await c.request('read', [opened.fd, 100, 0], 5000, caller);
  await c.request('release', [opened.fd], 5000, caller);
  return read?.ok ? `OK:${String(read.value)}` : outcome(read);
}

async function lookup(c: RawConn, name: string, caller: typeof ALICE): Promise<string> {
  const r = await c.request('lookup', [{ path: `/${name}`, parent: ROOT_GFID, name }], 5000, caller);
  if (!r?.ok) throw new Error(`lookup ${name}: ${outcome(r)}`);
  return (r.value as { gfid: string }).gfid;
}

describe('a brick against local users', () => {
  let brick: TestBrick;

  beforeAll(async () => {
    brick = await startBrick({ volfile: volfile('') });
    // Let other users reach the storage directory, so the local disk can be asked the same question.
    fs.chmodSync(path.dirname(brick.dir), 0o755);
    fs.chmodSync(brick.dir, 0o755);
    fs.writeFileSync(path.join(brick.dir, 'secret'), 'top secret', { mode: 0o600 });
    fs.writeFileSync(path.join(brick.dir, 'public'), 'for all', { mode: 0o644 });
  });

  afterAll(async () => {
    await brick?.stop();
  });

  test('a process of uid 65534 speaking the protocol without the password is refused, and nothing is served to it', async () => {
    const script = `
      const net = require('net');
      const { FrameReader, Kind, VERSION, encodeFrame } = require(${JSON.stringify(path.join(DIST, 'src/rpc/frame'))});
      const s = net.connect({ host: '127.0.0.1', port: Number(process.env.PORT) });
      const reader = new FrameReader();
      const seen = [];
      s.on('data', (d) => {
        for (const f of reader.push(d)) {
          seen.push({ kind: f.kind, id: f.id, body: f.kind === Kind.CHALLENGE ? 'nonce' : f.body });
          if (f.kind === Kind.CHALLENGE) {
            // no login, then a forged one, then a request claiming to be root
            s.write(encodeFrame(Kind.HELLO, 1, { version: VERSION, volume: 'brick', client: 'intruder' }));
            s.write(encodeFrame(Kind.REQUEST, 2, { op: 'open', caller: { uid: 0, gid: 0, groups: [], pid: 1 }, args: [{ path: '/secret', parent: '${ROOT_GFID}', name: 'secret' }, { flags: 0 }] }));
          }
        }
      });
      s.on('error', () => {});
      s.on('close', () => { process.stdout.write(JSON.stringify({ uid: process.getuid(), seen }) + '\\n'); process.exit(0); });
    `;
    const r = await runAs(65534, script, { PORT: String(brick.port) });
    expect(r.err).toBe('');
    const got = JSON.parse(r.out) as { uid: number; seen: { kind: number; id: number; body: unknown }[] };
    expect(got.uid).toBe(65534);
    // The challenge, the refusal of the HELLO, and no answer to the request.
    expect(got.seen).toEqual([
      { kind: 8, id: 0, body: 'nonce' },
      { kind: 4, id: 1, body: { ok: false, reason: 'authentication failed' } },
    ]);
    expect(brick.log()).toMatch(/refused 127\.0\.0\.1:\d+: authentication failed: no login/);
  });

  test('a forged login (any password) is refused too', async () => {
    const c = await RawConn.open(brick.port);
    expect(await c.hello('brick', 5000, undefined, { user: 'xlstack-test', password: 'guess' })).toEqual({ ok: false, reason: 'authentication failed' });
    expect(await c.waitClosed(5000)).toBe(true);
  });

  test('with valid credentials, a caller uid that cannot read a file on the local disk cannot read it through the brick', async () => {
    // The local disk's answer, as uid 1234.
    const local = spawnSync(process.execPath, ['-e', `try { require('fs').readFileSync(${JSON.stringify(path.join(brick.dir, 'secret'))}); console.log('OK') } catch (e) { console.log(e.code) }`], {
      uid: ALICE.uid,
      gid: ALICE.gid,
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(local.stdout.trim()).toBe('EACCES');
    const c = await RawConn.open(brick.port);
    expect(await c.hello('brick')).toEqual({ ok: true });
    const secret = await lookup(c, 'secret', ALICE);
    const pub = await lookup(c, 'public', ALICE);
    expect({ secret: await readAs(c, secret, ALICE), public: await readAs(c, pub, ALICE), rootSecret: await readAs(c, secret, ROOT) }).toEqual({
      secret: 'EACCES',
      public: 'OK:for all',
      rootSecret: 'OK:top secret',
    });
    c.destroy();
  });

  test('chmod of the brick root by a caller who does not own it is EPERM, and the root keeps its mode', async () => {
    const before = fs.statSync(brick.dir).mode;
    const c = await RawConn.open(brick.port);
    expect(await c.hello('brick')).toEqual({ ok: true });
    expect(outcome(await c.request('setattr', [{ path: '/', gfid: ROOT_GFID }, { mode: 0o777 }], 5000, ALICE))).toBe('EPERM');
    expect(outcome(await c.request('setattr', [{ path: '/', gfid: ROOT_GFID }, { uid: ALICE.uid }], 5000, ALICE))).toBe('EPERM');
    expect(fs.statSync(brick.dir).mode).toBe(before);
    c.destroy();
  });
});

describe('root-squash', () => {
  test("a client's root is anonuid on the brick: it cannot read root's 0600 file", async () => {
    const brick = await startBrick({ volfile: volfile('    option root-squash on\n') });
    fs.writeFileSync(path.join(brick.dir, 'secret'), 'top secret', { mode: 0o600 });
    fs.writeFileSync(path.join(brick.dir, 'public'), 'for all', { mode: 0o644 });
    const c = await RawConn.open(brick.port);
    expect(await c.hello('brick')).toEqual({ ok: true });
    const secret = await lookup(c, 'secret', ROOT);
    const pub = await lookup(c, 'public', ROOT);
    expect({ secret: await readAs(c, secret, ROOT), public: await readAs(c, pub, ROOT) }).toEqual({ secret: 'EACCES', public: 'OK:for all' });
    c.destroy();
    await brick.stop();
  });
});
