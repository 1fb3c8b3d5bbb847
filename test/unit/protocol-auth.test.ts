// Who may use a brick: logins by challenge and response (auth.login.*, username/password),
// mutual TLS (ssl.*, auth.ssl-allow), safe defaults and root-squash. Bricks and clients run
// in this process; waits are probes of their statedumps, bounded.
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import * as tls from 'tls';
import { Backoff } from '../../src/rpc/backoff';
import { FrameReader, Kind, VERSION, encodeFrame } from '../../src/rpc/frame';
import { TEST_PASSWORD, TEST_USER, clientLogin, freePort, serverLogin } from '../helpers/brick';
import { TestCerts, makeCerts, tlsOptions } from '../helpers/certs';
import { cleanupGraphs, errCode, newBridge, tempDir, within, writeFile } from '../helpers/graphs';
import { waitFor as until } from '../helpers/mount';
import { atCleanup, brickStartError, recordingProxy, startBrickGraph, startClientGraph, stopNetGraphs } from '../helpers/protocol';
import { RawConn, closeRawConns } from '../helpers/raw-peer';

const brickText = (dir: string, port: number, serverOptions: string) => `volume brick-posix
    type storage/posix
    option directory ${dir}
end-volume
volume brick-server
    type protocol/server
    option listen-port ${port}
${serverOptions}    subvolumes brick-posix
end-volume
`;

async function newBrick(serverOptions = serverLogin('brick-posix')) {
  const dir = tempDir('xlstack-auth-');
  const port = await freePort();
  const b = await startBrickGraph(brickText(dir, port, serverOptions));
  return { ...b, dir, port };
}

afterEach(async () => {
  closeRawConns();
  await stopNetGraphs();
  await cleanupGraphs();
}, 60_000);

const clientDump = (g: { graph: { xlators: Map<string, { dump(): Record<string, unknown> }> } }) =>
  g.graph.xlators.get('remote')!.dump() as { connected: boolean; failedAttempts: number; lastFailure?: string; lastBackoffMs?: number };
const serverDump = (g: { graph: { xlators: Map<string, { dump(): Record<string, unknown> }> } }) =>
  g.graph.xlators.get('brick-server')!.dump() as { clients: { user?: string }[]; logins: string[]; tls: boolean };

describe('logins: challenge and response', () => {
  test('a client with the right password comes up, and the password never travels', async () => {
    const b = await newBrick();
    const proxy = await recordingProxy(b.port);
    const c = await startClientGraph(proxy.port);
    expect(c.started).toBe('up');
    await writeFile(newBridge(c.graph), '/f', 'data');
    expect(fs.readFileSync(path.join(b.dir, 'f'), 'utf8')).toBe('data');
    expect(serverDump(b).clients.map((x) => x.user)).toEqual([TEST_USER]);
    const wire = proxy.bytes();
    expect(wire.includes(Buffer.from('data'))).toBe(true); // the proxy did see the traffic
    expect(wire.includes(Buffer.from(TEST_PASSWORD))).toBe(false);
    expect(b.log()).toMatch(new RegExp(`connected from .* as ${TEST_USER}`));
  });

  test('a wrong password: the brick logs why, the client logs "authentication failed" once, reports CHILD_DOWN and backs off', async () => {
    const b = await newBrick();
    const waits: number[] = [];
    const c = await startClientGraph(b.port, {
      login: clientLogin(TEST_USER, 'not-the-password'),
      frame: 0.2,
      deps: {
        backoff: new Backoff({ initialMs: 50, maxMs: 400, random: () => 0.5 }),
        // Records each wait; after five, waits until the client stops.
        sleep: (ms) => (waits.push(ms), waits.length < 5 ? Promise.resolve() : new Promise<void>(() => undefined)),
      },
    });
    expect(c.started).toBe('down');
    await until(() => waits.length === 5, 5000, 'five attempts');
    expect(waits).toEqual([50, 100, 200, 400, 400]);
    expect(clientDump(c).failedAttempts).toBe(5);
    expect(c.statuses).toEqual(['unknown', 'down']);
    const errors = c.logs.filter((l) => l.includes(' ERROR '));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/brick-posix refused this client: authentication failed/);
    expect(b.logs.filter((l) => /refused .*: authentication failed: wrong password for user "xlstack-test"/.test(l))).toHaveLength(5);
    expect(await errCode(newBridge(c.graph).getattr('/'))).toBe('ENOTCONN');
  });

  test('a user the volume does not allow, and a client without a login, are refused with the reason in the brick log', async () => {
    const b = await newBrick(serverLogin('brick-posix') + '    option auth.login.mallory.password secret\n');
    const c1 = await startClientGraph(b.port, { login: clientLogin('mallory', 'secret'), frame: 0.2 });
    const c2 = await startClientGraph(b.port, { login: '', frame: 0.2 });
    expect([c1.started, c2.started]).toEqual(['down', 'down']);
    expect(b.log()).toMatch(/authentication failed: user "mallory" may not log in to 'brick-posix'/);
    expect(b.log()).toMatch(/authentication failed: no login \(volume 'brick-posix' needs one/);
    for (const c of [c1, c2]) expect(c.log()).toMatch(/refused this client: authentication failed/);
  });

  test('an answer recorded on one connection is refused on another (a fresh nonce each time)', async () => {
    const b = await newBrick();
    const first = await RawConn.open(b.port);
    const hello = await first.helloBody();
    expect((await first.call(Kind.HELLO, hello))?.body).toMatchObject({ ok: true });
    const replay = await RawConn.open(b.port);
    expect(await within(replay.challenge)).not.toBe(await within(first.challenge));
    expect((await replay.call(Kind.HELLO, hello))?.body).toEqual({ ok: false, reason: 'authentication failed' });
    expect(await replay.waitClosed(3000)).toBe(true);
    expect(b.log()).toMatch(/wrong password for user "xlstack-test" \(or an answer to another connection's challenge\)/);
  });

  test('a brick that cannot prove it knows the password is not trusted by the client', async () => {
    // A look-alike: it challenges and welcomes anyone, without the proof a brick with the login sends.
    const sockets = new Set<net.Socket>();
    const fake = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.write(encodeFrame(Kind.CHALLENGE, 0, { nonce: 'x'.repeat(44) }));
      const reader = new FrameReader();
      s.on('data', (d: Buffer) => {
        for (const f of reader.push(d)) if (f.kind === Kind.HELLO) s.write(encodeFrame(Kind.WELCOME, f.id, { ok: true }));
      });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    atCleanup(() => {
      for (const s of sockets) s.destroy();
      fake.close();
    });
    const c = await startClientGraph((fake.address() as net.AddressInfo).port, { frame: 0.2 });
    expect(c.started).toBe('down');
    expect(c.log()).toMatch(/refused this client: authentication failed: the brick did not prove it knows the password/);
  });
});

describe('safe by default', () => {
  test('a brick with neither logins nor TLS refuses to start, and says what to set', async () => {
    const dir = tempDir('xlstack-auth-');
    const { message } = await brickStartError(brickText(dir, await freePort(), ''));
    expect(message).toMatch(/refusing to serve 'brick-posix' to anyone who can connect/);
    expect(message).toMatch(/auth\.login\.brick-posix\.allow/);
    expect(message).toMatch(/auth\.insecure-open on/);
  });

  test('auth.insecure-open on: it starts, warns, and serves clients without a login', async () => {
    const b = await newBrick('    option auth.insecure-open on\n');
    expect(b.log()).toMatch(/WARN .*auth\.insecure-open: 'brick-posix' is open to anyone who can connect/);
    const c = await startClientGraph(b.port, { login: '' });
    expect(c.started).toBe('up');
  });

  test('a user allowed in without a password is a configuration error; a login for another volume only a warning', async () => {
    const dir = tempDir('xlstack-auth-');
    const r = await brickStartError(brickText(dir, await freePort(), '    option auth.login.brick-posix.allow alice,bob\n    option auth.login.alice.password a\n'));
    expect(r.message).toMatch(/auth\.login\.brick-posix\.allow names bob, with no auth\.login\.<user>\.password/);
    const b = await newBrick(serverLogin('brick-posix') + '    option auth.login.other-volume.allow someone\n');
    expect(b.log()).toMatch(/auth\.login\.other-volume\.allow: this server serves 'brick-posix', not 'other-volume'; ignored/);
  });
});

describe('root-squash', () => {
  test("on: a client's root creates files as anonuid/anongid; off: as root", async () => {
    for (const [squash, owner] of [
      ['on', 65534],
      ['off', 0],
    ] as const) {
      const b = await newBrick(serverLogin('brick-posix') + `    option root-squash ${squash}\n`);
      const c = await startClientGraph(b.port);
      await writeFile(newBridge(c.graph), '/f', 'x');
      const st = fs.statSync(path.join(b.dir, 'f'));
      expect({ squash, uid: st.uid, gid: st.gid }).toEqual({ squash, uid: owner, gid: owner });
    }
  });
});

describe('mutual TLS', () => {
  let certs: TestCerts;
  // Not a tempDir (those go after each test): the certificates serve the whole block.
  beforeAll(() => {
    certs = makeCerts(fs.mkdtempSync(path.join(os.tmpdir(), 'xlstack-certs-')));
  });
  const certDir = () => path.dirname(certs.ca);
  afterAll(() => fs.rmSync(certDir(), { recursive: true, force: true }));

  const tlsBrick = () => newBrick(tlsOptions(certs.brick, certs.ca) + '    option auth.ssl-allow client1\n');

  test('a client whose certificate the CA signed, with its name in auth.ssl-allow, is served; nothing travels in clear', async () => {
    const b = await tlsBrick();
    expect(serverDump(b).tls).toBe(true);
    const proxy = await recordingProxy(b.port);
    const c = await startClientGraph(proxy.port, { login: '', extra: tlsOptions(certs.client, certs.ca) });
    expect(c.started).toBe('up');
    await writeFile(newBridge(c.graph), '/f', 'plain text secret');
    expect(fs.readFileSync(path.join(b.dir, 'f'), 'utf8')).toBe('plain text secret');
    expect(proxy.bytes().length).toBeGreaterThan(1000);
    expect(proxy.bytes().includes(Buffer.from('plain text secret'))).toBe(false);
  });

  test('a certificate of the same CA whose name is not in auth.ssl-allow is refused, and told why', async () => {
    const b = await tlsBrick();
    const c = await startClientGraph(b.port, { login: '', extra: tlsOptions(certs.intruder, certs.ca), frame: 0.2 });
    expect(c.started).toBe('down');
    expect(c.log()).toMatch(/refused this client: certificate name "intruder" is not in auth\.ssl-allow/);
    expect(b.log()).toMatch(/refused 127\.0\.0\.1:\d+: certificate name "intruder" is not in auth\.ssl-allow/);
  });

  test('a certificate another CA signed, no certificate, or no TLS at all: the TLS handshake fails and is logged', async () => {
    const b = await tlsBrick();
    const rogue = await startClientGraph(b.port, { login: '', extra: tlsOptions(certs.rogue, certs.ca), frame: 0.2 });
    expect(rogue.started).toBe('down');
    await until(() => /TLS handshake from .* failed/.test(b.log()), 5000, 'the brick to log the failed handshake');

    // TLS without a client certificate
    const bare = tls.connect({ host: '127.0.0.1', port: b.port, ca: fs.readFileSync(certs.ca), checkServerIdentity: () => undefined });
    bare.on('error', () => undefined);
    atCleanup(() => bare.destroy());
    await within(new Promise((r) => bare.once('connect', r)), 5000);
    const barePort = bare.localPort;
    await within(new Promise((r) => bare.once('close', r)), 5000);
    await until(() => b.log().includes(`TLS handshake from 127.0.0.1:${barePort} failed`), 5000, 'the brick to log the handshake without a certificate');

    // plain TCP speaking the protocol
    const plain = await RawConn.open(b.port);
    const plainPort = plain.localPort;
    plain.write(encodeFrame(Kind.HELLO, 1, { version: VERSION, volume: 'brick-posix', client: 'plain' }));
    expect(await plain.waitClosed(5000)).toBe(true);
    await until(() => b.log().includes(`TLS handshake from 127.0.0.1:${plainPort} failed`), 5000, 'the brick to log the plain connection');
    expect(plain.unsolicited).toEqual([]);
    expect(serverDump(b).clients).toEqual([]);
  });

  test('TLS and logins together: both are required', async () => {
    const b = await newBrick(tlsOptions(certs.brick, certs.ca) + serverLogin('brick-posix'));
    const noLogin = await startClientGraph(b.port, { login: '', extra: tlsOptions(certs.client, certs.ca), frame: 0.2 });
    expect(noLogin.started).toBe('down');
    const both = await startClientGraph(b.port, { extra: tlsOptions(certs.client, certs.ca) });
    expect(both.started).toBe('up');
    expect(serverDump(b).logins).toEqual([TEST_USER]);
  });

  test('a missing certificate file stops the client or brick from starting, naming the option and the file', async () => {
    const missing = { cert: path.join(certDir(), 'nope.pem'), key: certs.client.key };
    const r = await brickStartError(brickText(tempDir('xlstack-auth-'), await freePort(), tlsOptions(missing, certs.ca)));
    expect(r.message).toMatch(/cannot read ssl\.own-cert .*nope\.pem: ENOENT/);
  });
});
