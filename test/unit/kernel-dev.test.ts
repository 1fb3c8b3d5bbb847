// The fuse_dev addon on sockets (SOCK_SEQPACKET keeps message boundaries, as /dev/fuse does):
// counts or -errno instead of exceptions, one writev per reply, the poll, the notifier thread,
// and handles that tolerate a second stop.
import * as fs from 'fs';
import { constants } from 'os';
import { withDeadline } from '../../src/core/time';
import { dev, SOCK_SEQPACKET } from '../../src/fuse/kernel/dev';

const E = constants.errno;
const WAIT_MS = 5000;
const open: number[] = [];

function pair(): [number, number] {
  const p = dev.socketpair(SOCK_SEQPACKET);
  if (typeof p === 'number') throw new Error(`socketpair: ${p}`);
  open.push(...p);
  return p;
}

afterEach(() => {
  for (const fd of open.splice(0)) dev.close(fd);
});

it('read and write answer -errno instead of throwing', () => {
  const b = Buffer.alloc(16);
  expect(dev.read(-1, b)).toBe(-E.EBADF);
  expect(dev.write(-1, b, 16)).toBe(-E.EBADF);
  expect(dev.close(-1)).toBe(-E.EBADF);
  const [a] = pair();
  expect(dev.setNonblock(a)).toBe(0);
  expect(dev.read(a, b)).toBe(-E.EAGAIN);
  expect(dev.recvFd(a)).toBe(-E.EAGAIN);
});

it('a write is one message of buf[0, len) and extra[0, extraLen)', () => {
  const [a, b] = pair();
  expect(dev.write(a, Buffer.from('headerXX'), 6, Buffer.from('body-and-more'), 4)).toBe(10);
  expect(dev.write(a, Buffer.from('only'), 4)).toBe(4);
  const got = Buffer.alloc(64);
  expect(dev.read(b, got)).toBe(10);
  expect(got.subarray(0, 10).toString()).toBe('headerbody');
  expect(dev.read(b, got)).toBe(4);
  expect(() => dev.write(a, Buffer.alloc(4), 5)).toThrow(/write\(fd, buffer, length/); // a length past the buffer is a bug
});

it('the poll calls back on the loop thread when the fd is readable; stopping twice, or a busy window after the stop, is harmless', async () => {
  const [a, b] = pair();
  let calls = 0;
  const readable = new Promise<number>((resolve) => {
    const h = dev.pollStart(
      b,
      (status) => {
        calls++;
        const got = Buffer.alloc(8);
        expect(dev.read(b, got)).toBe(3);
        dev.pollStop(h as never);
        dev.pollStop(h as never);
        dev.pollSpin(h as never);
        resolve(status);
      },
      1000,
    );
    expect(typeof h).toBe('object');
  });
  dev.write(a, Buffer.from('abc'), 3);
  expect(await withDeadline(readable, WAIT_MS, 'the poll callback')).toBe(0);
  expect(calls).toBe(1);
});

it('the notifier writes whole messages in order off the loop; after close, -EBADF', async () => {
  const [a, b] = pair();
  const n = dev.notifierOpen(a);
  if (typeof n === 'number') throw new Error(`notifierOpen: ${n}`);
  const results = await withDeadline(Promise.all([dev.notifierWrite(n, Buffer.from('one')), dev.notifierWrite(n, Buffer.from('second'))]), WAIT_MS, 'the notifier');
  expect(results).toEqual([3, 6]);
  const got = Buffer.alloc(16);
  expect(dev.read(b, got)).toBe(3);
  expect(dev.read(b, got)).toBe(6);
  expect(got.subarray(0, 6).toString()).toBe('second');
  dev.notifierClose(n);
  dev.notifierClose(n);
  expect(await withDeadline(dev.notifierWrite(n, Buffer.from('late')), WAIT_MS, 'a late write')).toBe(-E.EBADF);
});

it('recvFd: -ENOMSG when the peer closed without sending one', () => {
  const [a, b] = pair();
  dev.close(b);
  open.splice(open.indexOf(b), 1);
  expect(dev.recvFd(a)).toBe(-E.ENOMSG);
});

it('mount and umount2 answer -errno', async () => {
  expect(dev.mount('x', '/nonexistent-mountpoint', 'fuse.xlstack', 0, 'fd=-1,rootmode=40000,user_id=0,group_id=0')).toBeLessThan(0);
  const dir = fs.mkdtempSync('/tmp/xlstack-dev-');
  try {
    expect(await withDeadline(dev.umount2(dir, 0), WAIT_MS, 'umount2')).toBe(-E.EINVAL);
  } finally {
    fs.rmdirSync(dir);
  }
});
