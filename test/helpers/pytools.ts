// System calls Node has no API for (renameat2, fallocate modes, SEEK_DATA/SEEK_HOLE, fcntl and
// flock locks between processes, pwrite past 2^53), done by python3 with ctypes. Each scenario
// prints one JSON document on stdout; errors are errno names, never text (it holds paths).
//
// The lock scenarios fork "agents": each a process with its own fds and locks, doing one command
// at a time for the orchestrator over a pipe. Every wait is bounded (AGENT_TIMEOUT_S); agents are
// SIGKILLed by their pid at the end, whatever happened. Pids in results are role names ('A', 'B').
import { spawn } from 'child_process';
import * as fs from 'fs';

/** python3 from the standard directories first: PATH may hold shims another uid cannot run. */
export function python3(): string {
  for (const p of ['/usr/bin/python3', '/bin/python3', '/usr/local/bin/python3']) {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return 'python3';
}

export const PYTOOLS = String.raw`
import ctypes, errno, json, os, select, signal, sys, time

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 16
F_GETLK, F_SETLK, F_SETLKW = 5, 6, 7
LOCK_TYPES = {'read': 0, 'write': 1, 'unlock': 2}
TYPE_NAMES = {v: k for k, v in LOCK_TYPES.items()}
FLOCK_OPS = {'sh': 1 | 4, 'ex': 2 | 4, 'un': 8}
SYS_FCNTL = {'x86_64': 72, 'aarch64': 25}.get(os.uname().machine)
AGENT_TIMEOUT_S = 10

def ename(n):
    return errno.errorcode.get(n, 'E%d' % n)

def attempt(fn):
    try:
        r = fn()
        return 'ok' if r is None else r
    except OSError as e:
        return ename(e.errno)

def check(r):
    if r != 0:
        raise OSError(ctypes.get_errno(), 'failed')

libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]

class Flock(ctypes.Structure):
    _fields_ = [('l_type', ctypes.c_short), ('l_whence', ctypes.c_short), ('l_start', ctypes.c_int64),
                ('l_len', ctypes.c_int64), ('l_pid', ctypes.c_int)]

def renameat2(a, b, flags):
    return attempt(lambda: check(libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags)))

def read(p):
    try:
        with open(p, 'rb') as f:
            return f.read().decode('latin1')
    except OSError as e:
        return {'error': ename(e.errno)}

def kind(p):
    try:
        return 'dir' if os.path.isdir(p) and not os.path.islink(p) else 'file'
    except OSError as e:
        return ename(e.errno)

def rename_flags(d):
    j = lambda n: os.path.join(d, n)
    for n, text in [('a', 'AAA'), ('b', 'BBBBB'), ('c', 'C')]:
        with open(j(n), 'w') as f:
            f.write(text)
    os.mkdir(j('dir'))
    with open(j('dir/inside'), 'w') as f:
        f.write('in dir')
    out = {}
    out['noreplaceOverFile'] = renameat2(j('a'), j('b'), RENAME_NOREPLACE)
    out['afterNoreplace'] = [read(j('a')), read(j('b'))]
    out['noreplaceToNewName'] = renameat2(j('c'), j('c2'), RENAME_NOREPLACE)
    out['afterNoreplaceNew'] = sorted(os.listdir(d))
    out['exchangeFiles'] = renameat2(j('a'), j('b'), RENAME_EXCHANGE)
    out['afterExchange'] = [read(j('a')), read(j('b'))]
    out['exchangeFileAndDir'] = renameat2(j('a'), j('dir'), RENAME_EXCHANGE)
    out['kindsAfter'] = [kind(j('a')), kind(j('dir'))]
    out['insideMovedDir'] = read(j('a/inside'))
    out['exchangeWithMissing'] = renameat2(j('b'), j('missing'), RENAME_EXCHANGE)
    out['bothFlags'] = renameat2(j('b'), j('c2'), RENAME_NOREPLACE | RENAME_EXCHANGE)
    out['listing'] = sorted(os.listdir(d))
    return out

def fallocate_step(d):
    p = os.path.join(d, 'f')
    MiB, K64 = 1 << 20, 64 * 1024
    fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    out = {}
    def st():
        s = os.fstat(fd)
        return {'size': s.st_size, 'blocks': s.st_blocks}
    def fa(mode, off, length):
        return attempt(lambda: check(libc.fallocate(fd, mode, off, length)))
    def zeros(off, length):
        return os.pread(fd, length, off).count(0)
    try:
        out['posixFallocate'] = attempt(lambda: os.posix_fallocate(fd, 0, MiB))
        out['afterPosixFallocate'] = st()
        out['allocatedReadsZero'] = zeros(0, MiB) == MiB
        os.pwrite(fd, b'\x5a' * MiB, 0)
        out['keepSizePastEof'] = fa(FALLOC_FL_KEEP_SIZE, MiB, MiB)
        out['afterKeepSize'] = st()
        out['punchHole'] = fa(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, K64, K64)
        out['afterPunch'] = st()
        out['punchedZeros'] = zeros(K64, K64)
        out['zeroRange'] = fa(FALLOC_FL_ZERO_RANGE, 4 * K64, K64)
        out['afterZeroRange'] = st()
        out['zeroRangeZeros'] = zeros(4 * K64, K64)
        out['zerosInFile'] = zeros(0, MiB)
        out['untouchedAround'] = [os.pread(fd, 1, K64 - 1), os.pread(fd, 1, 2 * K64), os.pread(fd, 1, 5 * K64)] == [b'\x5a'] * 3
        out['punchWithoutKeepSize'] = fa(FALLOC_FL_PUNCH_HOLE, 0, K64)
        out['badMode'] = fa(0x4000, 0, K64)
        out['negativeLength'] = fa(0, 0, -1)
        out['sizeAtEnd'] = st()['size']
    finally:
        os.close(fd)
    return out

def seek_step(d):
    p = os.path.join(d, 'sparse')
    MiB = 1 << 20
    fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    out = {}
    try:
        os.pwrite(fd, b'a' * 4096, 0)
        os.pwrite(fd, b'b' * 4096, MiB)
        os.ftruncate(fd, 3 * MiB)
        os.fsync(fd)
        for name, off, whence in [('data0', 0, os.SEEK_DATA), ('hole0', 0, os.SEEK_HOLE), ('dataInHole', 8192, os.SEEK_DATA),
                                  ('holeInData', MiB + 10, os.SEEK_HOLE), ('dataAfterLast', MiB + 8192, os.SEEK_DATA),
                                  ('holeAfterLast', 2 * MiB, os.SEEK_HOLE), ('dataAtEof', 3 * MiB, os.SEEK_DATA),
                                  ('holeAtEof', 3 * MiB, os.SEEK_HOLE), ('dataPastEof', 4 * MiB, os.SEEK_DATA)]:
            out[name] = attempt(lambda: os.lseek(fd, off, whence))
        empty = os.open(os.path.join(d, 'empty'), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            out['emptyData'] = attempt(lambda: os.lseek(empty, 0, os.SEEK_DATA))
            out['emptyHole'] = attempt(lambda: os.lseek(empty, 0, os.SEEK_HOLE))
        finally:
            os.close(empty)
    finally:
        os.close(fd)
    return out

def pwrite_limits(p):
    fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    out = {}
    try:
        os.write(fd, b'0123456789')
        os.fsync(fd)
        for name, off in [('at2p53m1', 2 ** 53 - 1), ('at2p53', 2 ** 53), ('at2p62', 2 ** 62), ('at2p63m2', 2 ** 63 - 2), ('at2p63m1', 2 ** 63 - 1)]:
            out[name] = attempt(lambda: os.pwrite(fd, b'X', off) and None)
        out['truncateTo2p53'] = attempt(lambda: os.ftruncate(fd, 2 ** 53))
        out['truncateTo2p62'] = attempt(lambda: os.ftruncate(fd, 2 ** 62))
        out['readAt2p53'] = attempt(lambda: os.pread(fd, 4, 2 ** 53).decode())
        out['readAt2p62'] = attempt(lambda: os.pread(fd, 4, 2 ** 62).decode())
        out['sizeAfter'] = os.fstat(fd).st_size
        out['contentAfter'] = os.pread(fd, 64, 0).decode('latin1')
    finally:
        os.close(fd)
    out['contentAfterClose'] = read(p)
    return out

# --- lock agents -------------------------------------------------------------------------

def agent_loop(rx, tx):
    signal.signal(signal.SIGUSR1, lambda *a: None)  # no SA_RESTART: a blocked fcntl returns EINTR
    fds = {}
    def lk(cmd, label, type_, start, length):
        fl = Flock(LOCK_TYPES[type_], 0, start, length, 0)
        r = libc.fcntl(fds[label], cmd, ctypes.byref(fl))
        if r != 0:
            return ename(ctypes.get_errno())
        if cmd == F_GETLK:
            if fl.l_type == LOCK_TYPES['unlock']:
                return {'type': 'unlock'}
            return {'type': TYPE_NAMES[fl.l_type], 'start': fl.l_start, 'len': fl.l_len, 'pid': fl.l_pid}
        return 'ok'
    for line in rx:
        cmd = json.loads(line)
        op, args = cmd[0], cmd[1:]
        if op == 'open':
            label, path = args
            res = attempt(lambda: fds.__setitem__(label, os.open(path, os.O_RDWR | os.O_CREAT, 0o644)))
        elif op == 'close':
            res = attempt(lambda: os.close(fds.pop(args[0])))
        elif op == 'setlk':
            res = lk(F_SETLK, *args)
        elif op == 'setlkw':
            tx.write(json.dumps('blocking') + '\n')
            tx.flush()
            res = lk(F_SETLKW, *args)
        elif op == 'getlk':
            res = lk(F_GETLK, *args)
        elif op == 'flock':
            label, how = args
            res = attempt(lambda: check(libc.flock(fds[label], FLOCK_OPS[how])))
        elif op == 'exit':
            break
        else:
            res = 'unknown command %s' % op
        tx.write(json.dumps(res) + '\n')
        tx.flush()

class Agent:
    def __init__(self, name):
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w1)
            os.close(r2)
            try:
                agent_loop(os.fdopen(r1, 'r'), os.fdopen(w2, 'w'))
            finally:
                os._exit(0)
        os.close(r1)
        os.close(w2)
        self.name, self.pid = name, pid
        self.tx = os.fdopen(w1, 'w')
        self.rx = os.fdopen(r2, 'r')

    def send(self, *cmd):
        self.tx.write(json.dumps(cmd) + '\n')
        self.tx.flush()

    def recv(self):
        ready, _, _ = select.select([self.rx], [], [], AGENT_TIMEOUT_S)
        if not ready:
            return 'TIMEOUT'
        line = self.rx.readline()
        return json.loads(line) if line else 'AGENT EXITED'

    def __call__(self, *cmd):
        self.send(*cmd)
        return self.recv()

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass

def with_agents(names, scenario):
    agents = {n: Agent(n) for n in names}
    roles = {a.pid: n for n, a in agents.items()}
    try:
        out = scenario(agents)
    finally:
        for a in agents.values():
            a.kill()
    # pids are per run: name the role instead
    for v in out.values():
        if isinstance(v, dict) and 'pid' in v:
            v['pid'] = roles.get(v['pid'], 'pid of no agent')
    return out

def blocked_in_fcntl(pid):
    """B is asleep inside fcntl(2): read from /proc, polled for at most AGENT_TIMEOUT_S."""
    end = time.time() + AGENT_TIMEOUT_S
    while time.time() < end:
        try:
            with open('/proc/%d/syscall' % pid) as f:
                nr = f.read().split()[0]
            with open('/proc/%d/stat' % pid) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
            if nr == str(SYS_FCNTL) and state == 'S':
                return True
        except (OSError, IndexError):
            pass
        time.sleep(0.005)
    return False

def until_not_eagain(step, seconds):
    # step() again while it answers EAGAIN, for at most that many seconds; its last answer.
    end = time.time() + seconds
    r = step()
    while r == 'EAGAIN' and time.time() < end:
        time.sleep(0.005)
        r = step()
    return r

def wait_for_file(p):
    end = time.time() + 30
    while time.time() < end:
        if os.path.exists(p):
            return True
        time.sleep(0.01)
    return False

def locks_posix(pa, pb):
    def run(ag):
        A, B, C = ag['A'], ag['B'], ag['C']
        o = {}
        o['openA'] = [A('open', 'f1', pa), A('open', 'f2', pa)]
        o['openB'] = B('open', 'f', pb)
        o['aWrite0to99'] = A('setlk', 'f1', 'write', 0, 100)
        o['bConflict'] = B('setlk', 'f', 'write', 50, 10)
        o['bReadConflict'] = B('setlk', 'f', 'read', 99, 1)
        o['bBeyond'] = B('setlk', 'f', 'read', 200, 10)
        o['bGetlk'] = B('getlk', 'f', 'write', 0, 0)
        o['aGetlkOfB'] = A('getlk', 'f1', 'write', 150, 100)
        o['aOwnRangeNoConflict'] = A('getlk', 'f2', 'write', 0, 100)
        o['aUnlockMiddle'] = A('setlk', 'f1', 'unlock', 40, 20)
        o['bInFreedMiddle'] = B('setlk', 'f', 'write', 45, 10)
        o['bStillRefusedAt0'] = B('setlk', 'f', 'write', 0, 1)
        o['bReadRangeShared'] = [A('setlk', 'f1', 'read', 300, 10), B('setlk', 'f', 'read', 300, 10)]
        # close() of any fd of the file drops the process's POSIX locks on it
        o['aCloseOtherFd'] = A('close', 'f2')
        o['bAfterAClosedAnFd'] = B('setlk', 'f', 'write', 0, 40)
        o['cOpen'] = C('open', 'f', pb)
        o['cGetlkSeesB'] = C('getlk', 'f', 'read', 0, 0)
        o['bClose'] = B('close', 'f')
        o['cAfterBClosed'] = C('setlk', 'f', 'write', 0, 0)
        return o
    return with_agents(['A', 'B', 'C'], run)

def locks_flock(pa, pb):
    def run(ag):
        A, B = ag['A'], ag['B']
        o = {}
        o['open'] = [A('open', 'f', pa), B('open', 'f', pb)]
        o['aExclusive'] = A('flock', 'f', 'ex')
        o['bExclusive'] = B('flock', 'f', 'ex')
        o['bShared'] = B('flock', 'f', 'sh')
        # flock and fcntl locks do not see each other on Linux
        o['bPosixUnderFlock'] = B('setlk', 'f', 'write', 0, 0)
        o['bPosixUnlock'] = B('setlk', 'f', 'unlock', 0, 0)
        o['aDowngrade'] = A('flock', 'f', 'sh')
        o['bSharedAfterDowngrade'] = B('flock', 'f', 'sh')
        o['aUpgradeRefused'] = A('flock', 'f', 'ex')
        o['bUnlock'] = B('flock', 'f', 'un')
        o['aUpgrade'] = A('flock', 'f', 'ex')
        o['aClose'] = A('close', 'f')
        # FUSE drops a flock lock with the RELEASE it sends after close() returned: on another
        # mount, B's request may get to the brick first. Granted once the RELEASE lands (bounded).
        o['bAfterClose'] = until_not_eagain(lambda: B('flock', 'f', 'ex'), 5)
        # a second open file of the same process is another flock holder
        o['bSecondOpen'] = B('open', 'g', pb)
        o['bSecondFdRefused'] = B('flock', 'g', 'ex')
        return o
    return with_agents(['A', 'B'], run)

def lock_interrupt(pa, pb, ready_file=None, go_file=None):
    def run(ag):
        A, B, C = ag['A'], ag['B'], ag['C']
        o = {}
        o['open'] = [A('open', 'f', pa), B('open', 'f', pb), C('open', 'f', pb)]
        o['aWrite'] = A('setlk', 'f', 'write', 0, 0)
        B.send('setlkw', 'f', 'write', 0, 0)
        o['bAnnounced'] = B.recv()
        o['bBlocked'] = blocked_in_fcntl(B.pid)
        if ready_file:
            open(ready_file, 'w').close()
            o['go'] = wait_for_file(go_file)
        os.kill(B.pid, signal.SIGUSR1)
        o['bResult'] = B.recv()
        o['cSeesA'] = C('getlk', 'f', 'write', 0, 0)
        o['aUnlock'] = A('setlk', 'f', 'unlock', 0, 0)
        # had the interrupted request stayed queued, B would now hold the lock
        o['cGetlkAfter'] = C('getlk', 'f', 'write', 0, 0)
        o['cTakes'] = C('setlk', 'f', 'write', 0, 0)
        o['bRefusedNow'] = B('setlk', 'f', 'write', 0, 0)
        return o
    return with_agents(['A', 'B', 'C'], run)

def append_lines(p, tag, count, ready, go):
    """COUNT lines through one O_APPEND fd, once GO exists (so that two appenders overlap)."""
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    short = []
    try:
        open(ready, 'w').close()
        if not wait_for_file(go):
            return {'error': 'never told to go'}
        for i in range(int(count)):
            line = ('%s %05d\n' % (tag, i)).encode()
            n = os.write(fd, line)
            if n != len(line):
                short.append(i)
    finally:
        os.close(fd)
    return {'written': int(count), 'short': short}

SCENARIOS = {
    'append-lines': append_lines,
    'rename-flags': rename_flags,
    'fallocate': fallocate_step,
    'seek': seek_step,
    'pwrite-limits': pwrite_limits,
    'locks-posix': locks_posix,
    'locks-flock': locks_flock,
    'lock-interrupt': lock_interrupt,
}

if __name__ == '__main__':
    print(json.dumps(SCENARIOS[sys.argv[1]](*sys.argv[2:])))
`;

/** Arguments for python3 to run one scenario. */
export const pyToolArgs = (scenario: string, ...args: string[]): string[] => ['-c', PYTOOLS, scenario, ...args];

/** Runs a scenario in its own process (bounded: SIGKILL after timeoutMs); resolves with its JSON. */
export function runPyTool<T = unknown>(scenario: string, args: string[], timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(python3(), pyToolArgs(scenario, ...args), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(out) as T);
      else reject(new Error(`python scenario ${scenario} ${signal ? `killed (${signal}) after ${timeoutMs} ms` : `exited ${code}`}: ${err.trim().slice(-2000)}`));
    });
  });
}
