// The wire format (src/rpc/frame.ts) and one connection (src/rpc/peer.ts): frames survive
// any split of the byte stream, every malformed frame is a FrameError (a frame too large
// before a byte of it is buffered), and a Peer matches answers to calls, times them out,
// and ends with a reason that is logged.
import { spawnSync } from 'child_process';
import * as net from 'net';
import * as path from 'path';
import { Logger } from '../../src/core/log';
import { Frame, FrameError, FrameReader, Kind, MAX_FRAME, VERSION, decodeFrame, encodeFrame } from '../../src/rpc/frame';
import { CallTimeout, Disconnected, Peer } from '../../src/rpc/peer';
import { rawFrame } from '../helpers/raw-peer';
import { waitFor as waitUntil } from '../helpers/mount';

/** The frame after its 4-byte length prefix (what decodeFrame takes). */
const body = (frame: Buffer) => frame.subarray(4);

const roundTrip = (kind: Kind, id: number, value: unknown) => decodeFrame(body(encodeFrame(kind, id, value)));

describe('encodeFrame / decodeFrame', () => {
  test('nested values, several Buffers, an empty Buffer, unicode and null come back equal', () => {
    const a = Buffer.from('first buffer');
    const b = Buffer.from([0, 1, 2, 255, 254, 0]);
    const value = {
      op: 'write',
      args: [7, a, 42, { deep: { deeper: [b, Buffer.alloc(0), null, 'x'] } }],
      text: 'héllo wörld — 日本語 🚀 \u0000 "quoted" \\ back',
      nothing: null,
      n: -1.5,
      t: true,
      empty: {},
      list: [],
    };
    const f = roundTrip(Kind.REQUEST, 0xdeadbeef, value);
    expect(f.kind).toBe(Kind.REQUEST);
    expect(f.id).toBe(0xdeadbeef);
    expect(f.body).toEqual(value);
    const got = f.body as typeof value;
    expect(Buffer.isBuffer(got.args[1])).toBe(true);
    expect((got.args[1] as Buffer).equals(a)).toBe(true);
    const deep = (got.args[3] as { deep: { deeper: unknown[] } }).deep.deeper;
    expect((deep[0] as Buffer).equals(b)).toBe(true);
    expect(Buffer.isBuffer(deep[1]) && (deep[1] as Buffer).length).toBe(0);
  });

  test('a body that is null, a bare Buffer, a string or undefined', () => {
    expect(roundTrip(Kind.PING, 1, null).body).toBeNull();
    expect(roundTrip(Kind.PONG, 2, undefined).body).toBeNull();
    expect(roundTrip(Kind.REPLY, 3, 'ünïcode').body).toBe('ünïcode');
    const raw = Buffer.from('raw bytes \x00\xff');
    const f = roundTrip(Kind.REPLY, 4, raw);
    expect(Buffer.isBuffer(f.body) && (f.body as Buffer).equals(raw)).toBe(true);
  });

  test('Buffers travel raw in the payload, not encoded in the JSON header', () => {
    const data = Buffer.alloc(4096, 0xab);
    const frame = encodeFrame(Kind.REQUEST, 9, { data });
    const headerLength = frame.readUInt32BE(10);
    expect(frame.length).toBe(14 + headerLength + data.length);
    expect(JSON.parse(frame.toString('utf8', 14, 14 + headerLength))).toEqual({ data: { $buf: [0, 4096] } });
    expect(frame.subarray(14 + headerLength).equals(data)).toBe(true);
  });

  test('every kind and the largest id', () => {
    for (const kind of [Kind.REQUEST, Kind.REPLY, Kind.HELLO, Kind.WELCOME, Kind.PING, Kind.PONG, Kind.BYE, Kind.CHALLENGE, Kind.CANCEL]) {
      const f = roundTrip(kind, 0xffffffff, { kind });
      expect([f.kind, f.id, f.body]).toEqual([kind, 0xffffffff, { kind }]);
    }
  });

  test('encodeFrame refuses a body over MAX_FRAME, and takes one of exactly MAX_FRAME', () => {
    expect(() => encodeFrame(Kind.REQUEST, 1, Buffer.alloc(MAX_FRAME))).toThrow(FrameError);
    // The largest bare Buffer that fits: 10 fixed bytes + header {"$buf":[0,N]} + N payload bytes.
    let n = MAX_FRAME - 10 - 20;
    while (10 + Buffer.byteLength(`{"$buf":[0,${n}]}`) + n > MAX_FRAME) n--;
    expect(10 + Buffer.byteLength(`{"$buf":[0,${n}]}`) + n).toBe(MAX_FRAME);
    const frame = encodeFrame(Kind.REPLY, 1, Buffer.alloc(n, 1));
    expect(frame.readUInt32BE(0)).toBe(MAX_FRAME);
    expect(() => encodeFrame(Kind.REPLY, 1, Buffer.alloc(n + 1, 1))).toThrow(FrameError);
    expect((new FrameReader().push(frame)[0].body as Buffer).length).toBe(n);
  });

  test('encodeFrame refuses an oversized body with a FrameError, without copying it into the JS heap first', () => {
    // A reply to a huge read is such a body. A 128 MiB Buffer must be refused by its size;
    // an encoder that lets JSON.stringify call Buffer.prototype.toJSON first builds an
    // array of 128 Mi numbers and dies of heap exhaustion instead (run in a child process).
    const frameJs = path.resolve(__dirname, '../../src/rpc/frame.js');
    const script = `const { encodeFrame, FrameError } = require(${JSON.stringify(frameJs)});
      try { encodeFrame(2, 1, { ok: true, value: Buffer.alloc(128 * 1024 * 1024) }); console.log('ENCODED'); }
      catch (e) { console.log(e instanceof FrameError ? 'FRAME-ERROR' : 'OTHER ' + e.message); }`;
    const r = spawnSync(process.execPath, ['--max-old-space-size=256', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    const fatal = String(r.stderr)
      .split('\n')
      .filter((l) => /FATAL|heap|Mark-Compact/.test(l))
      .slice(0, 3);
    const diagnosis = `exit ${r.status} signal ${r.signal}; stdout: ${r.stdout.trim()}; stderr: ${fatal.join(' | ')}`;
    expect({ out: r.stdout.trim(), diagnosis: r.stdout.trim() === 'FRAME-ERROR' ? '' : diagnosis }).toEqual({ out: 'FRAME-ERROR', diagnosis: '' });
  });
});

describe('decodeFrame refuses malformed frames', () => {
  const cases: [string, Buffer, RegExp][] = [
    ['empty', Buffer.alloc(0), /truncated frame: 0 bytes/],
    ['shorter than the fixed header', Buffer.alloc(9), /truncated frame: 9 bytes/],
    ['another protocol version', body(rawFrame({ version: VERSION + 1 })), new RegExp(`protocol version ${VERSION + 1}`)],
    ['version 0', body(rawFrame({ version: 0 })), /protocol version 0/],
    ['kind 0', body(rawFrame({ kind: 0 })), /unknown frame kind 0/],
    ['kind 11', body(rawFrame({ kind: 11 })), /unknown frame kind 11/],
    ['kind 255', body(rawFrame({ kind: 255 })), /unknown frame kind 255/],
    ['a header length beyond the frame', body(rawFrame({ header: '{}', headerLength: 3 })), /header of 3 bytes in a frame of 12/],
    ['a header length of 2^32-1', body(rawFrame({ header: '{}', headerLength: 0xffffffff })), /header of 4294967295 bytes/],
    ['malformed JSON', body(rawFrame({ header: '{"op":' })), /malformed header/],
    ['an empty header', body(rawFrame({ header: '' })), /malformed header/],
    ['a header that is not UTF-8 JSON', body(rawFrame({ header: Buffer.from([0xff, 0xfe, 0x00]) })), /malformed header/],
    ['a $buf past the payload', body(rawFrame({ header: '{"$buf":[0,5]}', payload: Buffer.alloc(4) })), /buffer \[0, 5\] outside the 4 byte payload/],
    ['a $buf starting past the payload', body(rawFrame({ header: '{"a":{"$buf":[5,0]}}', payload: Buffer.alloc(4) })), /outside the 4 byte payload/],
    ['a $buf with a negative start', body(rawFrame({ header: '{"$buf":[-1,1]}', payload: Buffer.alloc(4) })), /outside/],
    ['a $buf with a negative length', body(rawFrame({ header: '{"$buf":[2,-1]}', payload: Buffer.alloc(4) })), /outside/],
    ['a $buf with a fractional start', body(rawFrame({ header: '{"$buf":[0.5,1]}', payload: Buffer.alloc(4) })), /outside/],
    ['a $buf with string bounds', body(rawFrame({ header: '{"$buf":["0","1"]}', payload: Buffer.alloc(4) })), /outside/],
    ['a $buf with no bounds', body(rawFrame({ header: '[{"$buf":[]}]', payload: Buffer.alloc(4) })), /outside/],
    ['a $buf of 2^53 bytes', body(rawFrame({ header: '{"$buf":[0,9007199254740992]}', payload: Buffer.alloc(4) })), /outside/],
  ];

  test.each(cases)('%s', (_what, frame, message) => {
    let thrown: unknown;
    try {
      decodeFrame(frame);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(FrameError);
    expect((thrown as Error).message).toMatch(message);
  });

  test('a $buf that ends exactly at the payload end, and an empty one there, are fine', () => {
    const f = decodeFrame(body(rawFrame({ header: '[{"$buf":[1,3]},{"$buf":[4,0]}]', payload: Buffer.from('abcd') })));
    const [x, y] = f.body as Buffer[];
    expect(x.toString()).toBe('bcd');
    expect(y.length).toBe(0);
  });

  test('deeply nested JSON is a FrameError, not a crash', () => {
    const depth = 200_000;
    const frame = body(rawFrame({ header: '['.repeat(depth) + ']'.repeat(depth) }));
    let result: unknown;
    try {
      result = decodeFrame(frame);
    } catch (e) {
      result = e;
    }
    // Either it parses (an array of arrays) or it is refused as a FrameError: nothing else.
    if (result instanceof Error) expect(result).toBeInstanceOf(FrameError);
    else expect((result as Frame).kind).toBe(Kind.REQUEST);
  });
});

describe('FrameReader', () => {
  const frames = [
    encodeFrame(Kind.HELLO, 1, { version: VERSION, volume: 'v', client: 'c' }),
    encodeFrame(Kind.REQUEST, 2, { op: 'write', args: [1, Buffer.from('data data data'), 0] }),
    encodeFrame(Kind.PING, 3, null),
    encodeFrame(Kind.REPLY, 4, { ok: true, value: Buffer.alloc(0) }),
  ];
  const stream = Buffer.concat(frames);
  const expected = frames.map((f) => decodeFrame(body(f)));

  test('several frames in one chunk', () => {
    const r = new FrameReader();
    expect(r.push(stream)).toEqual(expected);
    expect(r.pending).toBe(0);
  });

  test('fed byte by byte: each frame comes out exactly when its last byte arrives', () => {
    const r = new FrameReader();
    const out: Frame[] = [];
    const ends = new Set<number>();
    let at = 0;
    for (const f of frames) ends.add((at += f.length));
    for (let i = 0; i < stream.length; i++) {
      const got = r.push(stream.subarray(i, i + 1));
      expect({ at: i + 1, n: got.length }).toEqual({ at: i + 1, n: ends.has(i + 1) ? 1 : 0 });
      out.push(...got);
    }
    expect(out).toEqual(expected);
    expect(r.pending).toBe(0);
  });

  test('split in two at every byte boundary', () => {
    for (let i = 0; i <= stream.length; i++) {
      const r = new FrameReader();
      const out = [...r.push(stream.subarray(0, i)), ...r.push(stream.subarray(i))];
      expect({ split: i, out }).toEqual({ split: i, out: expected });
    }
  });

  test('split in three at many boundaries (pieces of a frame spanning several chunks)', () => {
    for (let i = 0; i <= stream.length; i += 3) {
      for (let j = i; j <= stream.length; j += 7) {
        const r = new FrameReader();
        const out = [...r.push(stream.subarray(0, i)), ...r.push(stream.subarray(i, j)), ...r.push(stream.subarray(j))];
        expect(out.length).toBe(expected.length);
        expect(out).toEqual(expected);
      }
    }
  });

  test('pending counts the bytes of an incomplete frame', () => {
    const r = new FrameReader();
    expect(r.push(stream.subarray(0, frames[0].length + 5))).toHaveLength(1);
    expect(r.pending).toBe(5);
  });

  test('a frame announced larger than MAX_FRAME is refused from its 4-byte prefix alone', () => {
    for (const length of [MAX_FRAME + 1, 0x7fffffff, 0xffffffff]) {
      const prefix = Buffer.alloc(4);
      prefix.writeUInt32BE(length, 0);
      const r = new FrameReader();
      expect(() => r.push(prefix)).toThrow(FrameError);
      expect(() => new FrameReader().push(prefix)).toThrow(new RegExp(`frame of ${length} bytes announced; the limit is ${MAX_FRAME}`));
      // and when the prefix comes a byte at a time: refused at its 4th byte
      const r2 = new FrameReader();
      for (let i = 0; i < 3; i++) expect(r2.push(prefix.subarray(i, i + 1))).toEqual([]);
      expect(() => r2.push(prefix.subarray(3))).toThrow(FrameError);
    }
  });

  test('a prefix of exactly MAX_FRAME is accepted (the frame is awaited)', () => {
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(MAX_FRAME, 0);
    const r = new FrameReader();
    expect(r.push(prefix)).toEqual([]);
    expect(r.pending).toBe(4);
  });

  test('a frame too large after good frames in the same chunk is still refused', () => {
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(0xffffffff, 0);
    expect(() => new FrameReader().push(Buffer.concat([frames[0], frames[2], prefix]))).toThrow(FrameError);
  });

  test.each([
    ['a length shorter than the fixed header', Buffer.concat([Buffer.from([0, 0, 0, 9]), Buffer.alloc(9)]), /truncated frame: 9 bytes/],
    ['a zero length', Buffer.from([0, 0, 0, 0]), /truncated frame: 0 bytes/],
    ['another version', rawFrame({ version: 7 }), /protocol version 7/],
    ['an unknown kind', rawFrame({ kind: 99 }), /unknown frame kind 99/],
    ['a header length beyond the frame', rawFrame({ header: '{}', headerLength: 100 }), /header of 100 bytes/],
    ['malformed JSON', rawFrame({ header: '{{' }), /malformed header/],
    ['a $buf outside the payload', rawFrame({ header: '{"$buf":[2,3]}', payload: Buffer.alloc(4) }), /outside the 4 byte payload/],
    ['a negative $buf', rawFrame({ header: '{"$buf":[-4,2]}', payload: Buffer.alloc(4) }), /outside/],
  ])('a stream with %s is a FrameError, fed whole or byte by byte', (_what, bad, message) => {
    expect(() => new FrameReader().push(Buffer.concat([frames[2], bad]))).toThrow(message);
    const r = new FrameReader();
    let thrown: unknown;
    for (let i = 0; i < bad.length && !thrown; i++) {
      try {
        r.push(bad.subarray(i, i + 1));
      } catch (e) {
        thrown = e;
      }
    }
    expect(thrown).toBeInstanceOf(FrameError);
    expect((thrown as Error).message).toMatch(message);
  });
});

// --- Peer ---------------------------------------------------------------------------

interface Pair {
  readonly server: net.Server;
  /** The accepted side, as a raw socket. */
  readonly far: net.Socket;
  /** The connecting side. */
  readonly near: net.Socket;
}

const pairs: Pair[] = [];

/** Two connected sockets over 127.0.0.1 (a socketpair, as near as net gets). */
async function socketPair(): Promise<Pair> {
  const server = net.createServer();
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const near = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      near.once('connect', resolve);
      near.once('error', reject);
    }),
    5000,
    'the connection',
  );
  const far = await withTimeout(accepted, 5000, 'the connection to be accepted');
  const p = { server, far, near };
  pairs.push(p);
  return p;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function makePeer(socket: net.Socket, onFrame: (peer: Peer, f: Frame) => void = () => {}) {
  const lines: string[] = [];
  const closes: string[] = [];
  const peer = new Peer(socket, { log: Logger.create('debug', (l) => lines.push(l)), onFrame, onClose: (_p, reason) => closes.push(reason) });
  return { peer, lines, closes };
}

afterEach(async () => {
  for (const p of pairs.splice(0)) {
    p.near.destroy();
    p.far.destroy();
    await new Promise((r) => p.server.close(r));
  }
});

describe('Peer', () => {
  /** A far side that answers every call with its body, echoed (REQUEST -> REPLY, HELLO -> WELCOME, PING -> PONG). */
  function echo(p: Peer, f: Frame): void {
    const answer = { [Kind.REQUEST]: Kind.REPLY, [Kind.HELLO]: Kind.WELCOME, [Kind.PING]: Kind.PONG }[f.kind as number];
    if (answer) p.send(answer, f.id, { echo: f.body });
  }

  test('call() gets its answer, Buffers included; concurrent calls answered out of order each get their own', async () => {
    const { near, far } = await socketPair();
    const client = makePeer(near);
    const held: Frame[] = [];
    const server = makePeer(far, (p, f) => {
      held.push(f);
      // answer in reverse order, once all three arrived
      if (held.length === 3) for (const h of held.reverse()) echo(p, h);
    });
    const data = Buffer.from('payload bytes');
    const calls = [client.peer.call(Kind.REQUEST, { n: 1, data }, 5000), client.peer.call(Kind.HELLO, { n: 2 }, 5000), client.peer.call(Kind.PING, null, 5000)];
    const answers = (await withTimeout(Promise.all(calls), 5000, 'the answers')) as { echo: { n: number; data?: Buffer } | null }[];
    expect(answers[0].echo).toEqual({ n: 1, data });
    expect(Buffer.isBuffer(answers[0].echo!.data)).toBe(true);
    expect(answers[1].echo).toEqual({ n: 2 });
    expect(answers[2].echo).toBeNull();
    expect(client.peer.closed).toBe(false);
    expect(server.peer.closed).toBe(false);
  });

  test('a call with no answer fails with CallTimeout; its late answer is taken for no other call and does not end the connection', async () => {
    const { near, far } = await socketPair();
    const client = makePeer(near);
    const requests: Frame[] = [];
    const server = makePeer(far, (_p, f) => requests.push(f));
    const started = Date.now();
    await expect(client.peer.call(Kind.REQUEST, { op: 'lookup' }, 150)).rejects.toBeInstanceOf(CallTimeout);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(140);
    expect(took).toBeLessThan(3000);
    await waitUntil(() => requests.length === 1, 5000, 'the request to arrive');
    // A second call is waiting when the first one's answer comes late: it must not get it.
    const second = client.peer.call(Kind.REQUEST, { op: 'stat' }, 5000);
    await waitUntil(() => requests.length === 2, 5000, 'the second request to arrive');
    server.peer.send(Kind.REPLY, requests[0].id, { ok: true, late: true });
    await new Promise((r) => setTimeout(r, 100));
    server.peer.send(Kind.REPLY, requests[1].id, { ok: true, second: true });
    expect(await second).toEqual({ ok: true, second: true });
    expect(requests[0].id).not.toBe(requests[1].id);
    expect(client.peer.closed).toBe(false);
  });

  test('an answer of the wrong kind is not the answer (the call keeps waiting)', async () => {
    const { near, far } = await socketPair();
    const client = makePeer(near);
    makePeer(far, (p, f) => p.send(Kind.PONG, f.id, 'not a reply'));
    await expect(client.peer.call(Kind.REQUEST, { op: 'stat' }, 300)).rejects.toBeInstanceOf(CallTimeout);
  });

  test('ids: each call gets a fresh one, and a REQUEST frame from the other side goes to onFrame', async () => {
    const { near, far } = await socketPair();
    const got: Frame[] = [];
    const client = makePeer(near, (_p, f) => got.push(f));
    const seen: number[] = [];
    makePeer(far, (p, f) => {
      seen.push(f.id);
      echo(p, f);
    });
    for (let i = 0; i < 20; i++) await client.peer.call(Kind.PING, i, 5000);
    expect(new Set(seen).size).toBe(20);
    far.write(encodeFrame(Kind.REQUEST, 12345, { op: 'from the far side' }));
    await waitUntil(() => got.length === 1, 5000, 'the frame');
    expect(got[0]).toEqual({ kind: Kind.REQUEST, id: 12345, body: { op: 'from the far side' } });
  });

  test('close() rejects every waiting call with Disconnected, once, with its reason; later calls fail at once', async () => {
    const { near, far } = await socketPair();
    const client = makePeer(near);
    const server = makePeer(far); // never answers
    const waiting = [client.peer.call(Kind.REQUEST, { a: 1 }, 10_000), client.peer.call(Kind.PING, null, 10_000)];
    const settled = Promise.allSettled(waiting);
    client.peer.close('the test is done');
    client.peer.close('a second reason');
    const results = await withTimeout(settled, 2000, 'the calls to fail');
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(Disconnected);
      expect(((r as PromiseRejectedResult).reason as Error).message).toBe('the test is done');
    }
    expect(client.peer.closed).toBe(true);
    expect(client.peer.reason).toBe('the test is done');
    expect(client.closes).toEqual(['the test is done']);
    expect(client.lines.filter((l) => l.includes('the test is done'))).toHaveLength(1);
    expect(client.lines.some((l) => l.includes('a second reason'))).toBe(false);
    await expect(client.peer.call(Kind.REQUEST, {}, 1000)).rejects.toBeInstanceOf(Disconnected);
    expect(() => client.peer.send(Kind.PING, 1, null)).toThrow(Disconnected);
    // the other side sees the connection end
    await waitUntil(() => server.peer.closed, 5000, 'the far side to see the close');
    expect(server.peer.reason).toBe('closed by the peer');
  });

  test.each([
    ['a frame announcing 4 GiB', Buffer.from([0xff, 0xff, 0xff, 0xff]), /^bad frame: frame of 4294967295 bytes announced/],
    ['another protocol version', rawFrame({ version: 9, kind: Kind.REPLY }), /^bad frame: protocol version 9/],
    ['an unknown kind', rawFrame({ kind: 42 }), /^bad frame: unknown frame kind 42/],
    ['a truncated frame', Buffer.from([0, 0, 0, 3, 1, 2, 3]), /^bad frame: truncated frame: 3 bytes/],
    ['malformed JSON', rawFrame({ kind: Kind.REPLY, header: '{"ok":tru' }), /^bad frame: malformed header/],
    ['a $buf outside the payload', rawFrame({ kind: Kind.REPLY, header: '{"$buf":[0,99]}' }), /^bad frame: buffer \[0, 99\] outside/],
  ])('%s from the other side closes the connection with that reason, logged, and fails waiting calls', async (_what, bytes, reason) => {
    const { near, far } = await socketPair();
    const client = makePeer(near);
    const waiting = client.peer.call(Kind.REQUEST, { op: 'stat' }, 10_000);
    const settled = waiting.then(
      () => 'resolved',
      (e: Error) => e,
    );
    far.resume(); // read (and discard) what the peer sends, so the far side sees the close
    far.write(bytes);
    const result = await withTimeout(settled, 5000, 'the waiting call to fail');
    expect(result).toBeInstanceOf(Disconnected);
    expect(client.peer.closed).toBe(true);
    expect(client.peer.reason).toMatch(reason);
    expect(client.closes).toHaveLength(1);
    expect(client.closes[0]).toMatch(reason);
    expect(client.lines.some((l) => l.includes(`connection ${client.peer.address}: ${client.peer.reason}`))).toBe(true);
    // and the socket is really closed: the far side sees it end
    await withTimeout(new Promise((r) => (far.destroyed ? r(undefined) : far.once('close', r))), 5000, 'the socket to close');
  });

  test('a good frame and a bad one in one chunk: the connection closes with the bad one\'s reason', async () => {
    const { near, far } = await socketPair();
    const got: Frame[] = [];
    const client = makePeer(near, (_p, f) => got.push(f));
    far.write(Buffer.concat([encodeFrame(Kind.PING, 5, null), Buffer.from([0xff, 0xff, 0xff, 0xff])]));
    await waitUntil(() => client.peer.closed, 5000, 'the close');
    expect(client.peer.reason).toMatch(/^bad frame: frame of 4294967295 bytes/);
    // Whether or not the PING got through, no frame after the bad one may have.
    expect(got.every((f) => f.kind === Kind.PING && f.id === 5)).toBe(true);
  });

  test('the other side closing mid-frame, and closing cleanly, are told apart', async () => {
    const a = await socketPair();
    const midFrame = makePeer(a.near);
    const half = encodeFrame(Kind.REPLY, 1, { ok: true, value: 'x'.repeat(100) });
    a.far.end(half.subarray(0, 30));
    await waitUntil(() => midFrame.peer.closed, 5000, 'the close');
    expect(midFrame.peer.reason).toBe('closed in the middle of a frame (30 bytes of it)');

    const b = await socketPair();
    const clean = makePeer(b.near);
    b.far.end(encodeFrame(Kind.PONG, 1, null));
    await waitUntil(() => clean.peer.closed, 5000, 'the close');
    expect(clean.peer.reason).toBe('closed by the peer');
  });
});
