// The child process of test/helpers/workload.ts: performs named filesystem steps under a
// root directory and prints their results, one JSON line each, on stdout.
//
// It is a separate process because a synchronous fs call on a FUSE mount from the process
// that serves the mount deadlocks; running every step here keeps the test process free to
// serve (and to kill us when a step hangs).
//
// Results are made to be compared between two directories (an xlstack mount and a plain
// directory), so they hold only what must be equal on both: no absolute paths, no inode or
// device numbers (only "same inode?" relations), no ctime, no times a step did not set.
//
// Protocol: argv[2] is JSON { root, uid?, gid?, steps }. stdout carries lines
//   {"type":"ready"} | {"type":"start","step":S} | {"type":"result","step":S,"result":R} | {"type":"done"}
// Any fatal problem (bad arguments, cannot drop privileges, root not searchable) goes to
// stderr with exit code 2.

import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';
import * as crypto from 'crypto';
import { spawnSync } from 'child_process';
import { pyToolArgs } from './pytools';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type StepValue = { [key: string]: Json };
type Step = (root: string) => Promise<StepValue>;

export interface ChildArgs {
  root: string;
  uid?: number;
  gid?: number;
  steps: string[];
}

// ---------------------------------------------------------------------------------------
// Small helpers

function errCode(err: unknown): string {
  if (err !== null && typeof err === 'object' && 'code' in err && typeof err.code === 'string') {
    return err.code;
  }
  // Not an errno: a bug in the step or a missing tool; the message says which.
  return `EXCEPTION: ${err instanceof Error ? err.message : String(err)}`;
}

/** 'ok' or the errno name: for operations whose only interesting outcome is success/failure. */
async function code(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (err) {
    return errCode(err);
  }
}

/** The value, or { error: errno name }. */
async function attempt(fn: () => Promise<Json>): Promise<Json> {
  try {
    return await fn();
  } catch (err) {
    return { error: errCode(err) };
  }
}

/** Full st_mode (type + permission bits) in octal, e.g. '0100644', '0040755'. */
const modeStr = (mode: number): string => mode.toString(8).padStart(7, '0');

/** What must match for a non-directory: directory sizes legitimately differ, so use dirInfo for those. */
async function fileInfo(p: string, follow = true): Promise<Json> {
  return attempt(async () => {
    const st = follow ? await fsp.stat(p) : await fsp.lstat(p);
    return { mode: modeStr(st.mode), size: st.size, nlink: st.nlink, uid: st.uid, gid: st.gid };
  });
}

async function dirInfo(p: string): Promise<Json> {
  return attempt(async () => {
    const st = await fsp.stat(p);
    return { mode: modeStr(st.mode), nlink: st.nlink, uid: st.uid, gid: st.gid };
  });
}

async function readText(p: string): Promise<Json> {
  return attempt(async () => (await fsp.readFile(p)).toString('utf8'));
}

async function modeOf(p: string, follow = true): Promise<Json> {
  return attempt(async () => modeStr((follow ? await fsp.stat(p) : await fsp.lstat(p)).mode));
}

async function ownerOf(p: string, follow = true): Promise<Json> {
  return attempt(async () => {
    const st = follow ? await fsp.stat(p) : await fsp.lstat(p);
    return { uid: st.uid, gid: st.gid };
  });
}

/** Explicitly set times only: floored to ms because the FUSE layer carries ms. */
async function timesOf(p: string, follow = true): Promise<Json> {
  return attempt(async () => {
    const st = follow ? await fsp.stat(p) : await fsp.lstat(p);
    return { atimeMs: Math.floor(st.atimeMs), mtimeMs: Math.floor(st.mtimeMs) };
  });
}

async function sortedListing(dir: string): Promise<Json> {
  return attempt(async () => (await fsp.readdir(dir)).sort());
}

async function readAt(fh: fsp.FileHandle, position: number, length: number): Promise<Json> {
  return attempt(async () => {
    const { bytesRead, buffer } = await fh.read(Buffer.alloc(length), 0, length, position);
    return { bytesRead, text: buffer.subarray(0, bytesRead).toString('latin1') };
  });
}

/** A fresh per-step directory root/w/<step>, so steps are independent and runnable alone. */
async function freshDir(root: string, step: string): Promise<string> {
  const dir = path.join(root, 'w', step);
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true });
  return dir;
}

/** Deterministic, non-repeating-at-4K pattern so misplaced chunks are detected. */
function pattern(size: number): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = (i * 31 + (i >> 12)) % 251;
  return buf;
}

const sha256 = (buf: Buffer): string => crypto.createHash('sha256').update(buf).digest('hex');

// ---------------------------------------------------------------------------------------
// External tools (Node has no xattr, mkfifo or mknod API)

// Standard directories first: PATH may point at shims the non-root user cannot run
// (e.g. pyenv under /root).
const TOOL_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'];
const toolCache = new Map<string, string | null>();

function findTool(name: string): string | null {
  if (!toolCache.has(name)) {
    const dirs = [...TOOL_DIRS, ...(process.env.PATH ?? '').split(':').filter(Boolean)];
    let found: string | null = null;
    for (const dir of dirs) {
      try {
        fs.accessSync(path.join(dir, name), fs.constants.X_OK);
        found = path.join(dir, name);
        break;
      } catch {
        // not here, or not runnable by the current user
      }
    }
    toolCache.set(name, found);
  }
  return toolCache.get(name) ?? null;
}

function requireTool(name: string, debianPackage: string): string {
  const tool = findTool(name);
  if (tool === null) throw new Error(`${name} not found: install the Debian package "${debianPackage}"`);
  return tool;
}

// The tools report errors as strerror text; LC_ALL=C makes it parseable.
const STRERROR_TO_CODE: [string, string][] = [
  ['No such attribute', 'ENODATA'],
  ['No data available', 'ENODATA'],
  ['File exists', 'EEXIST'],
  ['No such file or directory', 'ENOENT'],
  ['Operation not permitted', 'EPERM'],
  ['Permission denied', 'EACCES'],
  ['Operation not supported', 'EOPNOTSUPP'],
  ['Not a directory', 'ENOTDIR'],
  ['Numerical result out of range', 'ERANGE'],
  ['Argument list too long', 'E2BIG'],
  ['No space left on device', 'ENOSPC'],
  ['Disk quota exceeded', 'EDQUOT'],
  ['Read-only file system', 'EROFS'],
  ['Transport endpoint is not connected', 'ENOTCONN'],
  ['Input/output error', 'EIO'],
  ['Invalid argument', 'EINVAL'],
];

type ToolResult = { ok: true; stdout: Buffer } | { ok: false; code: string };

/** Runs a tool with a bounded wait; failures become errno names (never raw stderr: it holds paths). */
function runTool(tool: string, args: string[]): ToolResult {
  const res = spawnSync(tool, args, {
    timeout: 10_000,
    killSignal: 'SIGKILL',
    // TZ: `touch -d` reads local times
    env: { ...process.env, LC_ALL: 'C', LANG: 'C', TZ: 'UTC' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (res.error) return { ok: false, code: errCode(res.error) };
  if (res.status === 0) return { ok: true, stdout: res.stdout };
  const stderr = res.stderr.toString('utf8');
  // python helper (below) prints the bare errno name
  const bare = /^(E[A-Z0-9]+)\s*$/.exec(stderr);
  if (bare) return { ok: false, code: bare[1] };
  const hit = STRERROR_TO_CODE.find(([text]) => stderr.includes(text));
  return { ok: false, code: hit ? hit[1] : `ETOOL(${path.basename(tool)} exit ${res.status ?? res.signal})` };
}

const toolCode = (r: ToolResult): string => (r.ok ? 'ok' : r.code);

const xattr = {
  tools(): { get: string; set: string } {
    return { get: requireTool('getfattr', 'attr'), set: requireTool('setfattr', 'attr') };
  },
  /** Sets a binary value ('0s' = base64 encoding understood by setfattr). */
  set(file: string, name: string, value: Buffer, noDeref = false): string {
    // setfattr cannot take an empty base64 value; '""' is its spelling of the empty string.
    const encoded = value.length === 0 ? '""' : `0s${value.toString('base64')}`;
    const flags = noDeref ? ['-h'] : [];
    return toolCode(runTool(xattr.tools().set, [...flags, '-n', name, '-v', encoded, file]));
  },
  /** base64 of the value, or { error }. */
  get(file: string, name: string, noDeref = false): Json {
    const flags = noDeref ? ['-h'] : [];
    const r = runTool(xattr.tools().get, [...flags, '--absolute-names', '--only-values', '-n', name, file]);
    return r.ok ? r.stdout.toString('base64') : { error: r.code };
  },
  /** Sorted user.* names: security.* / system.* differ between filesystems. */
  list(file: string): Json {
    const r = runTool(xattr.tools().get, ['--absolute-names', '-m', '-', file]);
    if (!r.ok) return { error: r.code };
    return r.stdout
      .toString('utf8')
      .split('\n')
      .filter((line) => line.startsWith('user.'))
      .sort();
  },
  remove(file: string, name: string): string {
    return toolCode(runTool(xattr.tools().set, ['-x', name, file]));
  },
  /**
   * setxattr(2) with XATTR_CREATE / XATTR_REPLACE: setfattr has no such flags, so use
   * python3's os.setxattr, which prints the exact errno name on failure.
   */
  setFlagged(file: string, name: string, value: Buffer, flag: 'XATTR_CREATE' | 'XATTR_REPLACE'): string {
    const python = requireTool('python3', 'python3');
    const script =
      'import os, sys, errno\n' +
      'try:\n' +
      '    os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), getattr(os, sys.argv[4]))\n' +
      'except OSError as e:\n' +
      '    sys.stderr.write(errno.errorcode.get(e.errno, "E%d" % e.errno))\n' +
      '    sys.exit(1)\n';
    return toolCode(runTool(python, ['-c', script, file, name, value.toString('hex'), flag]));
  },
};

function mkfifo(p: string, mode = '0644'): string {
  return toolCode(runTool(requireTool('mkfifo', 'coreutils'), ['-m', mode, p]));
}

function mknodChar(p: string, major: number, minor: number, mode = '0644'): string {
  return toolCode(runTool(requireTool('mknod', 'coreutils'), ['-m', mode, p, 'c', String(major), String(minor)]));
}

/** The longest a python scenario may take (the lock scenarios wait up to 10 s for an agent). */
const PY_TIMEOUT_MS = 45_000;

/** Runs a scenario of pytools.ts (system calls Node lacks); its JSON, or { error } if it failed. */
function pyScenario(scenario: string, ...args: string[]): StepValue {
  const res = spawnSync(requireTool('python3', 'python3'), pyToolArgs(scenario, ...args), {
    timeout: PY_TIMEOUT_MS,
    killSignal: 'SIGKILL',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (res.error) return { error: errCode(res.error) };
  if (res.status !== 0) return { error: `EXCEPTION: python scenario ${scenario} exited ${res.status ?? res.signal}: ${res.stderr.toString('utf8').trim().split('\n').pop()}` };
  return JSON.parse(res.stdout.toString('utf8')) as StepValue;
}

// glibc's gnu_dev_major/minor on a Linux dev_t
const devMajor = (rdev: number): number => Math.floor(rdev / 256) & 0xfff;
const devMinor = (rdev: number): number => (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00);

// ---------------------------------------------------------------------------------------
// Root-user steps

async function nestedMkdir(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'nested-mkdir');
  const p = (rel: string): string => path.join(d, rel);
  const mkdirRecursive = await code(() => fsp.mkdir(p('a/b/c/d'), { recursive: true }));
  const levels: { [rel: string]: Json } = {};
  for (const rel of ['a', 'a/b', 'a/b/c', 'a/b/c/d']) levels[rel] = await dirInfo(p(rel));
  const mkdirMode700 = await code(() => fsp.mkdir(p('m700'), { mode: 0o700 }));
  const mode700 = await modeOf(p('m700'));
  const mkdirExisting = await code(() => fsp.mkdir(p('a')));
  const mkdirRecursiveExisting = await code(() => fsp.mkdir(p('a/b/c/d'), { recursive: true }));
  await fsp.writeFile(p('a/file'), 'x');
  const mkdirUnderFile = await code(() => fsp.mkdir(p('a/file/x')));
  const rmdirNonEmpty = await code(() => fsp.rmdir(p('a')));
  const rmdirMissing = await code(() => fsp.rmdir(p('missing')));
  const rmdirFile = await code(() => fsp.rmdir(p('a/file')));
  const rmdirLeaf = await code(() => fsp.rmdir(p('a/b/c/d')));
  const statRemovedLeaf = await code(() => fsp.stat(p('a/b/c/d')));
  // a directory's link count drops when a subdirectory goes
  const parentAfterRmdir = await dirInfo(p('a/b/c'));
  const rmTree = await code(() => fsp.rm(p('a'), { recursive: true }));
  const listingAfter = await sortedListing(d);
  return {
    mkdirRecursive, levels, mkdirMode700, mode700, mkdirExisting, mkdirRecursiveExisting,
    mkdirUnderFile, rmdirNonEmpty, rmdirMissing, rmdirFile, rmdirLeaf, statRemovedLeaf,
    parentAfterRmdir, rmTree, listingAfter,
  };
}

async function createWriteRead(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'create-write-read');
  const f = path.join(d, 'hello.txt');
  await fsp.writeFile(f, 'hello world\n');
  const content = await readText(f);
  const info = await fileInfo(f);

  const fh = await fsp.open(f, 'r+');
  try {
    await fh.write('WORLD', 6);
  } finally {
    await fh.close();
  }
  const afterOverwrite = await readText(f);
  await fsp.writeFile(f, 'hi'); // 'w' truncates
  const afterShorterRewrite = await readText(f);
  const sizeAfterRewrite = await attempt(async () => (await fsp.stat(f)).size);

  // explicit creation modes, and the default mode through the umask (022)
  const m640 = path.join(d, 'm640');
  const createExclMode640 = await code(async () => (await fsp.open(m640, 'wx', 0o640)).close());
  const mode640 = await modeOf(m640);
  const empty = path.join(d, 'empty');
  await (await fsp.open(empty, 'w')).close();
  const emptyInfo = await fileInfo(empty);
  const emptyContent = await readText(empty);

  // 1 MiB + a bit: crosses FUSE's 128 KiB request size and 4 KiB pages at odd offsets
  const big = pattern(1024 * 1024 + 123);
  const bigFile = path.join(d, 'big');
  await fsp.writeFile(bigFile, big);
  const bigSize = await attempt(async () => (await fsp.stat(bigFile)).size);
  const bigReadMatches = await attempt(async () => sha256(await fsp.readFile(bigFile)) === sha256(big));
  const bigChunkedReadMatches = await attempt(async () => {
    const h = await fsp.open(bigFile, 'r');
    try {
      const chunks: Buffer[] = [];
      for (let pos = 0; ; ) {
        const { bytesRead, buffer } = await h.read(Buffer.alloc(65_521), 0, 65_521, pos);
        if (bytesRead === 0) break;
        chunks.push(buffer.subarray(0, bytesRead));
        pos += bytesRead;
      }
      return sha256(Buffer.concat(chunks)) === sha256(big);
    } finally {
      await h.close();
    }
  });
  return {
    content, info, afterOverwrite, afterShorterRewrite, sizeAfterRewrite, createExclMode640, mode640,
    emptyInfo, emptyContent, bigSize, bigReadMatches, bigChunkedReadMatches,
  };
}

async function pwriteSparse(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'pwrite-sparse');
  const f = path.join(d, 'sparse');
  const fh = await fsp.open(f, 'w+');
  try {
    await fh.write('AAAA', 0);
    await fh.write('BBBB', 4096);
    await fh.write('CCCC', 100_000);
    const size = await attempt(async () => (await fh.stat()).size);
    const at4096 = await readAt(fh, 4096, 4);
    const acrossHoleEdge = await readAt(fh, 4094, 6);
    const inHole = await readAt(fh, 10, 8);
    const atTail = await readAt(fh, 100_000, 10);
    const pastEof = await readAt(fh, 200_000, 10);
    const gapsZero = await attempt(async () => {
      const all = await fsp.readFile(f);
      const written = (i: number): boolean => i < 4 || (i >= 4096 && i < 4100) || i >= 100_000;
      return all.every((byte, i) => written(i) || byte === 0);
    });
    await fh.write('xy', 4097);
    const afterInnerOverwrite = await readAt(fh, 4096, 4);
    return { size, at4096, acrossHoleEdge, inHole, atTail, pastEof, gapsZero, afterInnerOverwrite };
  } finally {
    await fh.close();
  }
}

async function append(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'append');
  const f = path.join(d, 'log');
  let fh = await fsp.open(f, 'a');
  try {
    await fh.write('one\n');
    await fh.write('two\n');
  } finally {
    await fh.close();
  }
  const afterTwoWrites = await readText(f);
  // Linux appends even for a positional write on an O_APPEND fd
  fh = await fsp.open(f, 'a');
  try {
    await fh.write('X', 0);
  } finally {
    await fh.close();
  }
  const afterPositionalWrite = await readText(f);
  await fsp.appendFile(f, '\nthree\n');
  const afterAppendFile = await readText(f);
  // 'a+' reads from anywhere but writes at the end
  fh = await fsp.open(f, 'a+');
  let readInAplus: Json;
  try {
    await fh.write('Z');
    readInAplus = await readAt(fh, 0, 3);
  } finally {
    await fh.close();
  }
  const finalInfo = await fileInfo(f);
  return { afterTwoWrites, afterPositionalWrite, afterAppendFile, readInAplus, finalInfo };
}

async function truncate(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'truncate');
  const f = path.join(d, 't');
  await fsp.writeFile(f, 'abcdefghij');
  const sizeAndContent = async (): Promise<Json> =>
    attempt(async () => ({ size: (await fsp.stat(f)).size, content: (await fsp.readFile(f)).toString('latin1') }));
  const pathGrow = await code(() => fsp.truncate(f, 20));
  const afterPathGrow = await sizeAndContent();
  const pathShrink = await code(() => fsp.truncate(f, 4));
  const afterPathShrink = await sizeAndContent();
  const fh = await fsp.open(f, 'r+');
  let fdGrow: string, afterFdGrow: Json, fdShrink: string, afterFdShrink: Json;
  try {
    fdGrow = await code(() => fh.truncate(8));
    afterFdGrow = await sizeAndContent();
    fdShrink = await code(() => fh.truncate(2));
    afterFdShrink = await sizeAndContent();
  } finally {
    await fh.close();
  }
  const toZero = await code(() => fsp.truncate(f, 0));
  const afterZero = await sizeAndContent();
  const truncateMissing = await code(() => fsp.truncate(path.join(d, 'missing'), 0));
  const truncateDir = await code(() => fsp.truncate(d, 0));
  return {
    pathGrow, afterPathGrow, pathShrink, afterPathShrink, fdGrow, afterFdGrow, fdShrink, afterFdShrink,
    toZero, afterZero, truncateMissing, truncateDir,
  };
}

async function openErrors(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'open-errors');
  const f = path.join(d, 'exists');
  await fsp.writeFile(f, 'x');
  await fsp.mkdir(path.join(d, 'dir'));
  const openAndClose = (p: string, flags: string) => code(async () => (await fsp.open(p, flags)).close());
  const exclOnExisting = await openAndClose(f, 'wx');
  const openMissing = await openAndClose(path.join(d, 'missing'), 'r');
  const createInMissingDir = await openAndClose(path.join(d, 'nodir', 'f'), 'w');
  const dirForWrite = await openAndClose(path.join(d, 'dir'), 'w');
  const dirForReadWrite = await openAndClose(path.join(d, 'dir'), 'r+');
  const dirForRead = await openAndClose(path.join(d, 'dir'), 'r');
  const readFromDirFd = await code(async () => {
    const fh = await fsp.open(path.join(d, 'dir'), 'r');
    try {
      await fh.read(Buffer.alloc(1), 0, 1, 0);
    } finally {
      await fh.close();
    }
  });
  const fileWithTrailingSlash = await openAndClose(`${f}/`, 'r');
  const contentUnchanged = await readText(f);
  return {
    exclOnExisting, openMissing, createInMissingDir, dirForWrite, dirForReadWrite, dirForRead, readFromDirFd,
    fileWithTrailingSlash, contentUnchanged,
  };
}

async function rename(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'rename');
  const p = (rel: string): string => path.join(d, rel);
  await fsp.writeFile(p('f1'), 'first');
  const simple = await code(() => fsp.rename(p('f1'), p('f2')));
  const oldNameAfterSimple = await code(() => fsp.stat(p('f1')));
  const newContent = await readText(p('f2'));

  await fsp.writeFile(p('src'), 'source');
  await fsp.writeFile(p('dst'), 'destination, longer');
  const srcIno = (await fsp.stat(p('src'))).ino;
  const overExisting = await code(() => fsp.rename(p('src'), p('dst')));
  const targetContent = await readText(p('dst'));
  const targetIsSourceInode = await attempt(async () => (await fsp.stat(p('dst'))).ino === srcIno);
  const srcAfterOverwrite = await code(() => fsp.stat(p('src')));

  await fsp.mkdir(p('d1/sub'), { recursive: true });
  await fsp.writeFile(p('d1/x'), 'x in d1');
  await fsp.writeFile(p('d1/sub/y'), 'y in d1/sub');
  const dirWithContents = await code(() => fsp.rename(p('d1'), p('d2')));
  const movedDeepContent = await readText(p('d2/sub/y'));
  const movedListing = await sortedListing(p('d2'));
  const oldDirGone = await code(() => fsp.stat(p('d1')));

  await fsp.mkdir(p('emptydir'));
  await fsp.mkdir(p('d3'));
  const dirOverEmptyDir = await code(() => fsp.rename(p('d3'), p('emptydir')));
  const dirOverNonEmptyDir = await code(() => fsp.rename(p('emptydir'), p('d2')));
  const fileOverDir = await code(() => fsp.rename(p('f2'), p('d2')));
  const dirOverFile = await code(() => fsp.rename(p('d2'), p('f2')));
  const missing = await code(() => fsp.rename(p('missing'), p('other')));
  const ontoItself = await code(() => fsp.rename(p('f2'), p('f2')));
  const contentAfterSelfRename = await readText(p('f2'));
  const intoSubdir = await code(() => fsp.rename(p('f2'), p('d2/sub/f2')));
  const listingAfter = await sortedListing(d);
  const subListingAfter = await sortedListing(p('d2/sub'));
  return {
    simple, oldNameAfterSimple, newContent, overExisting, targetContent, targetIsSourceInode, srcAfterOverwrite,
    dirWithContents, movedDeepContent, movedListing, oldDirGone, dirOverEmptyDir, dirOverNonEmptyDir, fileOverDir,
    dirOverFile, missing, ontoItself, contentAfterSelfRename, intoSubdir, listingAfter, subListingAfter,
  };
}

/**
 * xlstack mounts through libfuse2's high-level API (all fuse-native offers), which gives each
 * name of a hard-linked file its own kernel inode: after a change through one name, another
 * name shows cached attributes (size, nlink) until the attribute timeout (1 s) passes. Reads
 * through another name therefore wait that long (a documented limit of the transport).
 */
const OTHER_NAME_WAIT_MS = 1100;
const waitForOtherNames = () => new Promise((r) => setTimeout(r, OTHER_NAME_WAIT_MS));

async function hardlinks(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'hardlinks');
  const orig = path.join(d, 'orig');
  const lnk = path.join(d, 'lnk');
  await fsp.writeFile(orig, 'original');
  const link = await code(() => fsp.link(orig, lnk));
  const nlinkOrig = await attempt(async () => (await fsp.stat(orig)).nlink);
  const nlinkLink = await attempt(async () => (await fsp.stat(lnk)).nlink);
  const sameIno = await attempt(async () => (await fsp.stat(orig)).ino === (await fsp.stat(lnk)).ino);
  await fsp.writeFile(lnk, 'written through the link');
  await waitForOtherNames();
  const readThroughOrig = await readText(orig);

  await fsp.mkdir(path.join(d, 'sub'));
  const linkIntoSubdir = await code(() => fsp.link(orig, path.join(d, 'sub', 'third')));
  const nlinkWithThree = await attempt(async () => (await fsp.stat(lnk)).nlink);
  const renameKeepsLinks = await code(() => fsp.rename(path.join(d, 'sub', 'third'), path.join(d, 'sub', 'renamed')));
  const nlinkAfterRename = await attempt(async () => (await fsp.stat(lnk)).nlink);
  await fsp.unlink(path.join(d, 'sub', 'renamed'));

  const unlinkOrig = await code(() => fsp.unlink(orig));
  await waitForOtherNames();
  const linkInfoAfterUnlink = await fileInfo(lnk);
  const contentAfterUnlink = await readText(lnk);
  await fsp.writeFile(path.join(d, 'other'), 'other');
  const linkToExistingName = await code(() => fsp.link(lnk, path.join(d, 'other')));
  const linkOfDirectory = await code(() => fsp.link(path.join(d, 'sub'), path.join(d, 'sublink')));
  const linkOfMissing = await code(() => fsp.link(path.join(d, 'missing'), path.join(d, 'x')));
  const listing = await sortedListing(d);
  return {
    link, nlinkOrig, nlinkLink, sameIno, readThroughOrig, linkIntoSubdir, nlinkWithThree, renameKeepsLinks,
    nlinkAfterRename, unlinkOrig, linkInfoAfterUnlink, contentAfterUnlink, linkToExistingName, linkOfDirectory,
    linkOfMissing, listing,
  };
}

async function symlinks(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'symlinks');
  const p = (rel: string): string => path.join(d, rel);
  await fsp.writeFile(p('target'), 'target content');
  await fsp.mkdir(p('dir'));
  await fsp.writeFile(p('dir/inner'), 'inner content');
  // relative targets only: an absolute target would differ between the two roots
  const create = await code(() => fsp.symlink('target', p('link')));
  const readlink = await attempt(() => fsp.readlink(p('link')));
  const lstatIsLink = await attempt(async () => (await fsp.lstat(p('link'))).isSymbolicLink());
  const lstatInfo = await fileInfo(p('link'), false); // size = length of the target string
  const statFollows = await fileInfo(p('link'));
  const readThrough = await readText(p('link'));
  const dirLink = await code(() => fsp.symlink('dir', p('dirlink')));
  const readViaDirLink = await readText(p('dirlink/inner'));
  const upLink = await code(() => fsp.symlink('../target', p('dir/up')));
  const readViaUpLink = await readText(p('dir/up'));
  const chain = await code(() => fsp.symlink('link', p('chain')));
  const readViaChain = await readText(p('chain'));
  const dangling = await code(() => fsp.symlink('nowhere', p('dangling')));
  const statDangling = await code(() => fsp.stat(p('dangling')));
  const lstatDangling = await attempt(async () => (await fsp.lstat(p('dangling'))).isSymbolicLink());
  const readlinkDangling = await attempt(() => fsp.readlink(p('dangling')));
  const readlinkOfFile = await code(() => fsp.readlink(p('target')));
  const readlinkMissing = await code(() => fsp.readlink(p('missing')));
  const symlinkOverExisting = await code(() => fsp.symlink('target', p('link')));
  const writeThrough = await code(() => fsp.writeFile(p('link'), 'written via link'));
  const targetAfterWrite = await readText(p('target'));
  const unlinkLink = await code(() => fsp.unlink(p('link')));
  const targetSurvives = await readText(p('target'));
  const listing = await sortedListing(d);
  return {
    create, readlink, lstatIsLink, lstatInfo, statFollows, readThrough, dirLink, readViaDirLink, upLink,
    readViaUpLink, chain, readViaChain, dangling, statDangling, lstatDangling, readlinkDangling, readlinkOfFile,
    readlinkMissing, symlinkOverExisting, writeThrough, targetAfterWrite, unlinkLink, targetSurvives, listing,
  };
}

/** 1000 distinct names of varied shapes: unicode (2-, 3- and 4-byte UTF-8), spaces, dots, long. */
function manyNames(count = 1000): string[] {
  const shapes: ((i: number) => string)[] = [
    (i) => `file-${String(i).padStart(4, '0')}`,
    (i) => `é-ü-ß ${i}`,
    (i) => `with space ${i}.txt`,
    (i) => `日本語-${i}`,
    (i) => `.hidden-${i}`,
    (i) => `UPPER_lower-${i}`,
    (i) => `emoji-😀-${i}`,
    (i) => `punct #%~+=,;'@ ${i}`,
    (i) => `${'long-'.repeat(40)}${i}`,
  ];
  return Array.from({ length: count }, (_, i) => shapes[i % shapes.length](i));
}

async function readdirLarge(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'readdir-large');
  const names = manyNames(1000);
  // small concurrent batches: faster on FUSE, and exercises concurrent creates
  const failures: string[] = [];
  for (let i = 0; i < names.length; i += 16) {
    await Promise.all(
      names.slice(i, i + 16).map(async (name) => {
        const c = await code(() => fsp.writeFile(path.join(d, name), name));
        if (c !== 'ok') failures.push(`${name}: ${c}`);
      }),
    );
  }
  const expected = [...names].sort();
  const listed = (await fsp.readdir(d)).sort();
  const listedSet = new Set(listed);
  const expectedSet = new Set(expected);
  // opendir reads in small batches: exercises readdir continuation offsets
  const opendirCount = await attempt(async () => {
    let n = 0;
    for await (const entry of await fsp.opendir(d, { bufferSize: 32 })) if (entry.name) n++;
    return n;
  });
  const sample = names[1]; // 'é-ü-ß 1'
  return {
    createFailures: failures.sort().slice(0, 5),
    count: listed.length,
    matchesExpected: JSON.stringify(listed) === JSON.stringify(expected),
    missing: expected.filter((n) => !listedSet.has(n)).slice(0, 5),
    extra: listed.filter((n) => !expectedSet.has(n)).slice(0, 5),
    opendirCount,
    unicodeNameContent: await readText(path.join(d, sample)),
  };
}

async function readdirTypes(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'readdir-types');
  await fsp.writeFile(path.join(d, 'a-file'), 'f');
  await fsp.mkdir(path.join(d, 'b-dir'));
  await fsp.symlink('a-file', path.join(d, 'c-link'));
  await fsp.symlink('nowhere', path.join(d, 'd-dangling'));
  const fifo = mkfifo(path.join(d, 'e-fifo'));
  const entries = await attempt(async () =>
    (await fsp.readdir(d, { withFileTypes: true }))
      .map((e) => `${e.name}:${direntType(e)}`)
      .sort(),
  );
  return { fifo, entries };
}

function direntType(e: fs.Dirent): string {
  if (e.isFile()) return 'file';
  if (e.isDirectory()) return 'dir';
  if (e.isSymbolicLink()) return 'symlink';
  if (e.isFIFO()) return 'fifo';
  if (e.isCharacterDevice()) return 'chardev';
  if (e.isBlockDevice()) return 'blockdev';
  if (e.isSocket()) return 'socket';
  return 'unknown';
}

async function chmod(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'chmod');
  const f = path.join(d, 'f');
  await fsp.writeFile(f, 'mode me');
  // plain permission bits only (setuid/setgid handling differs by design and is out of scope)
  const fileModes: Json[] = [];
  for (const mode of [0o600, 0o644, 0o755, 0o000, 0o777, 0o640]) {
    const c = await code(() => fsp.chmod(f, mode));
    fileModes.push(c === 'ok' ? await modeOf(f) : c);
  }
  await fsp.chmod(f, 0o000);
  const rootReadsMode000 = await readText(f); // root bypasses permission bits
  const fchmod = await code(async () => {
    const fh = await fsp.open(f, 'r');
    try {
      await fh.chmod(0o604);
    } finally {
      await fh.close();
    }
  });
  const modeAfterFchmod = await modeOf(f);
  const sub = path.join(d, 'sub');
  await fsp.mkdir(sub);
  const dirModes: Json[] = [];
  for (const mode of [0o700, 0o1777, 0o755]) {
    const c = await code(() => fsp.chmod(sub, mode));
    dirModes.push(c === 'ok' ? await modeOf(sub) : c);
  }
  await fsp.symlink('f', path.join(d, 'link'));
  const chmodThroughLink = await code(() => fsp.chmod(path.join(d, 'link'), 0o611));
  const targetModeViaLink = await modeOf(f);
  const linkOwnMode = await modeOf(path.join(d, 'link'), false);
  const chmodMissing = await code(() => fsp.chmod(path.join(d, 'missing'), 0o644));
  return {
    fileModes, rootReadsMode000, fchmod, modeAfterFchmod, dirModes, chmodThroughLink, targetModeViaLink,
    linkOwnMode, chmodMissing,
  };
}

async function chown(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'chown');
  const f = path.join(d, 'f');
  await fsp.writeFile(f, 'own me');
  const initial = await ownerOf(f);
  const toUser = await code(() => fsp.chown(f, 1234, 5678));
  const afterToUser = await ownerOf(f);
  const groupOnly = await code(() => fsp.chown(f, -1, 4321)); // -1: leave uid alone
  const afterGroupOnly = await ownerOf(f);
  const fchownBack = await code(async () => {
    const fh = await fsp.open(f, 'r');
    try {
      await fh.chown(0, 0);
    } finally {
      await fh.close();
    }
  });
  const afterFchownBack = await ownerOf(f);
  const modeKept = await modeOf(f);
  const sub = path.join(d, 'sub');
  await fsp.mkdir(sub);
  const dirToUser = await code(() => fsp.chown(sub, 1234, 5678));
  const dirAfter = await ownerOf(sub);
  const link = path.join(d, 'link');
  await fsp.symlink('f', link);
  const lchown = await code(() => fsp.lchown(link, 1111, 2222));
  const linkAfterLchown = await ownerOf(link, false);
  const targetAfterLchown = await ownerOf(f);
  const chownThroughLink = await code(() => fsp.chown(link, 3333, 4444));
  const targetAfterChownThroughLink = await ownerOf(f);
  const linkAfterChownThroughLink = await ownerOf(link, false);
  const chownMissing = await code(() => fsp.chown(path.join(d, 'missing'), 1, 1));
  return {
    initial, toUser, afterToUser, groupOnly, afterGroupOnly, fchownBack, afterFchownBack, modeKept, dirToUser,
    dirAfter, lchown, linkAfterLchown, targetAfterLchown, chownThroughLink, targetAfterChownThroughLink,
    linkAfterChownThroughLink, chownMissing,
  };
}

// Times in seconds that are exact in binary floating point, so Node's seconds -> timespec
// conversion gives exactly the intended ms on every path (1_600_000_000.123 would become
// ...122.9999 ms and floor differently depending on where it is rounded).
// atime and mtime are always set to the same value: the FUSE binding passes only one of them.
const T1 = 1_600_000_000.125;
const T2 = 1_700_000_000.5;
const T3 = 1_650_000_000.25;
const T_2100 = 4_102_444_800; // past 2038: needs a 64-bit time
const D1 = new Date(1_500_000_000_250);

async function utimes(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'utimes');
  const f = path.join(d, 'f');
  await fsp.writeFile(f, 'time me');
  const set = async (p: string, t: number | Date): Promise<Json> => {
    const c = await code(() => fsp.utimes(p, t, t));
    return c === 'ok' ? timesOf(p) : c;
  };
  const first = await set(f, T1);
  const second = await set(f, T2);
  const asDate = await set(f, D1);
  const epochZero = await set(f, 0);
  const year2100 = await set(f, T_2100);
  const futimes = await code(async () => {
    const fh = await fsp.open(f, 'r+');
    try {
      await fh.utimes(T3, T3);
    } finally {
      await fh.close();
    }
  });
  const afterFutimes = await timesOf(f);
  const sub = path.join(d, 'sub');
  await fsp.mkdir(sub);
  const dir = await set(sub, T1);
  const link = path.join(d, 'link');
  await fsp.symlink('f', link);
  const throughLink = await code(() => fsp.utimes(link, T2, T2));
  const targetAfterThroughLink = await timesOf(f);
  const lutimes = await code(() => fsp.lutimes(link, T3, T3));
  const linkAfterLutimes = await timesOf(link, false);
  const targetAfterLutimes = await timesOf(f);
  // a write must move mtime forward from an explicitly set past time (relation, not value)
  await fsp.utimes(f, T1, T1);
  await fsp.appendFile(f, ' again');
  const mtimeAdvancedByWrite = await attempt(async () => (await fsp.stat(f)).mtimeMs > T1 * 1000);
  const utimesMissing = await code(() => fsp.utimes(path.join(d, 'missing'), T1, T1));
  return {
    first, second, asDate, epochZero, year2100, futimes, afterFutimes, dir, throughLink, targetAfterThroughLink,
    lutimes, linkAfterLutimes, targetAfterLutimes, mtimeAdvancedByWrite, utimesMissing,
  };
}

async function xattrs(root: string): Promise<StepValue> {
  xattr.tools(); // fail the step clearly (EXCEPTION: ... install "attr") when the tools are missing
  const d = await freshDir(root, 'xattrs');
  const f = path.join(d, 'f');
  await fsp.writeFile(f, 'attrs');
  const binary = Buffer.concat([Buffer.from([0, 1, 0xfe, 0xff]), Buffer.from('hello')]);
  const set = xattr.set(f, 'user.test', binary);
  const get = xattr.get(f, 'user.test');
  const roundtrip = get === binary.toString('base64');
  const setOther = xattr.set(f, 'user.other', Buffer.from('plain text'));
  const setEmpty = xattr.set(f, 'user.empty', Buffer.alloc(0));
  const getEmpty = xattr.get(f, 'user.empty');
  // ext4 keeps all of a file's xattrs in one 4 KiB block, and a brick adds its own: stay well below
  const large = pattern(2000);
  const setLarge = xattr.set(f, 'user.large', large);
  const largeRoundtrip = xattr.get(f, 'user.large') === large.toString('base64');
  const list = xattr.list(f);
  const replace = xattr.set(f, 'user.test', Buffer.from('replaced'));
  const getReplaced = xattr.get(f, 'user.test');
  const createFlagOnExisting = xattr.setFlagged(f, 'user.test', Buffer.from('nope'), 'XATTR_CREATE');
  const replaceFlagOnMissing = xattr.setFlagged(f, 'user.absent', Buffer.from('nope'), 'XATTR_REPLACE');
  const createFlagOnNew = xattr.setFlagged(f, 'user.created', Buffer.from('new'), 'XATTR_CREATE');
  const getCreated = xattr.get(f, 'user.created');
  const valueKeptAfterFailedCreate = xattr.get(f, 'user.test');
  const getMissing = xattr.get(f, 'user.never-set');
  const remove = xattr.remove(f, 'user.test');
  const getRemoved = xattr.get(f, 'user.test');
  const removeAgain = xattr.remove(f, 'user.test');
  const listAfterRemove = xattr.list(f);
  const sub = path.join(d, 'sub');
  await fsp.mkdir(sub);
  const setOnDir = xattr.set(sub, 'user.dirattr', Buffer.from('on a dir'));
  const getOnDir = xattr.get(sub, 'user.dirattr');
  const onMissingFile = xattr.get(path.join(d, 'missing'), 'user.test');
  const link = path.join(d, 'link');
  await fsp.symlink('f', link);
  const setThroughLink = xattr.set(link, 'user.vialink', Buffer.from('via link'));
  const getOnTargetAfterLinkSet = xattr.get(f, 'user.vialink');
  const setOnLinkItself = xattr.set(link, 'user.onlink', Buffer.from('x'), true); // Linux: EPERM for user.* on symlinks
  const contentUntouched = await readText(f);
  return {
    set, get, roundtrip, setOther, setEmpty, getEmpty, setLarge, largeRoundtrip, list, replace, getReplaced,
    createFlagOnExisting, replaceFlagOnMissing, createFlagOnNew, getCreated, valueKeptAfterFailedCreate,
    getMissing, remove, getRemoved, removeAgain, listAfterRemove, setOnDir, getOnDir, onMissingFile,
    setThroughLink, getOnTargetAfterLinkSet, setOnLinkItself, contentUntouched,
  };
}

const FUSE_HIDDEN = '.fuse_hidden';

/**
 * The listing once no '.fuse_hidden*' name is left, polling up to 2 s because a FUSE release
 * (which removes it) may arrive after close() returns. Hidden names are left out of the
 * listing (they carry random numbers) and reported as a boolean instead.
 */
async function listingAfterRelease(dir: string): Promise<{ listing: Json; fuseHiddenRemains: boolean }> {
  const deadline = Date.now() + 2000;
  for (;;) {
    const names = (await fsp.readdir(dir)).sort();
    const hidden = names.some((n) => n.startsWith(FUSE_HIDDEN));
    if (!hidden || Date.now() >= deadline) {
      return { listing: names.filter((n) => !n.startsWith(FUSE_HIDDEN)), fuseHiddenRemains: hidden };
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A directory open while it is renamed (and its old name reused) keeps working through its fd. */
async function directoryHandles(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'directory-handles');
  const dir = path.join(d, 'dir');
  await fsp.mkdir(dir);
  await fsp.writeFile(path.join(dir, 'inside'), 'x');
  const fh = await fsp.open(dir, 'r');
  try {
    const rename = await code(() => fsp.rename(dir, path.join(d, 'moved')));
    await fsp.writeFile(dir, 'a file under the old name');
    const fsync = await code(() => fh.sync());
    const fstat = await attempt(async () => {
      const st = await fh.stat();
      return { isDirectory: st.isDirectory(), nlink: st.nlink };
    });
    const fchmod = await code(() => fh.chmod(0o750));
    const movedMode = await attempt(async () => modeStr((await fsp.stat(path.join(d, 'moved'))).mode));
    return { rename, fsync, fstat, fchmod, movedMode, listing: await sortedListing(d), inside: await sortedListing(path.join(d, 'moved')) };
  } finally {
    await fh.close();
  }
}

async function unlinkOpenFile(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'unlink-open-file');
  await fsp.writeFile(path.join(d, 'keep'), 'kept');
  const f = path.join(d, 'victim');
  const fh = await fsp.open(f, 'w+');
  let openPhase: StepValue;
  try {
    await fh.write('written before unlink', 0);
    const unlink = await code(() => fsp.unlink(f));
    const readAfterUnlink = await readAt(fh, 0, 100);
    // 0 on a local filesystem; a FUSE mount without hard_remove renames to .fuse_hidden and says 1
    const fstatNlink = await attempt(async () => (await fh.stat()).nlink);
    const statByName = await code(() => fsp.stat(f));
    const writeAfterUnlink = await code(() => fh.write(' and after', 21));
    const readAfterWrite = await readAt(fh, 0, 100);
    // changing attributes through the fd brings fresh ones from the filesystem: still unlinked
    const ftruncate = await code(() => fh.truncate(31));
    const fchmod = await code(() => fh.chmod(0o640));
    const afterAttrChanges = await attempt(async () => {
      const st = await fh.stat();
      return { nlink: st.nlink, size: st.size, mode: modeStr(st.mode) };
    });
    openPhase = { unlink, readAfterUnlink, fstatNlink, statByName, writeAfterUnlink, readAfterWrite, ftruncate, fchmod, afterAttrChanges };
  } finally {
    await fh.close();
  }
  const reopenByName = await code(async () => (await fsp.open(f, 'r')).close());
  const afterClose = await listingAfterRelease(d);

  // two descriptors: closing one must not drop the data the other still reads
  const g = path.join(d, 'twice');
  await fsp.writeFile(g, 'two fds');
  const fh1 = await fsp.open(g, 'r');
  const fh2 = await fsp.open(g, 'r');
  let readViaSecondFd: Json;
  try {
    await fsp.unlink(g);
    await fh1.close();
    readViaSecondFd = await readAt(fh2, 0, 100);
  } finally {
    await fh1.close().catch(() => undefined); // already closed unless something threw early
    await fh2.close();
  }
  // renaming over an open file is the other way a FUSE mount hides a file
  const old = path.join(d, 'replaced');
  await fsp.writeFile(old, 'old content');
  await fsp.writeFile(path.join(d, 'replacement'), 'new content');
  const fh3 = await fsp.open(old, 'r');
  let readOldAfterRenameOver: Json;
  try {
    await fsp.rename(path.join(d, 'replacement'), old);
    readOldAfterRenameOver = await readAt(fh3, 0, 100);
  } finally {
    await fh3.close();
  }
  const newByName = await readText(old);
  const afterAll = await listingAfterRelease(d);
  return {
    ...openPhase,
    reopenByName,
    listingAfterClose: afterClose.listing,
    fuseHiddenRemainsAfterClose: afterClose.fuseHiddenRemains,
    readViaSecondFd,
    readOldAfterRenameOver,
    newByName,
    listingAtEnd: afterAll.listing,
    fuseHiddenRemainsAtEnd: afterAll.fuseHiddenRemains,
  };
}

async function specialFiles(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'special-files');
  const fifoPath = path.join(d, 'fifo');
  const mkfifoResult = mkfifo(fifoPath);
  // never open the FIFO: that blocks until a peer shows up
  const fifo = await attempt(async () => {
    const st = await fsp.lstat(fifoPath);
    return { isFIFO: st.isFIFO(), mode: modeStr(st.mode), size: st.size, nlink: st.nlink };
  });
  const mkfifoExisting = mkfifo(fifoPath);
  const devPath = path.join(d, 'null-dev');
  const mknod = mknodChar(devPath, 1, 3);
  const chardev = await attempt(async () => {
    const st = await fsp.lstat(devPath);
    return {
      isCharacterDevice: st.isCharacterDevice(),
      mode: modeStr(st.mode),
      major: devMajor(st.rdev),
      minor: devMinor(st.rdev),
    };
  });
  const renameFifo = await code(() => fsp.rename(fifoPath, path.join(d, 'fifo2')));
  const renamedIsFifo = await attempt(async () => (await fsp.lstat(path.join(d, 'fifo2'))).isFIFO());
  const unlinkDev = await code(() => fsp.unlink(devPath));
  const listing = await sortedListing(d);
  return { mkfifo: mkfifoResult, fifo, mkfifoExisting, mknod, chardev, renameFifo, renamedIsFifo, unlinkDev, listing };
}

async function statfs(root: string): Promise<StepValue> {
  // the numbers differ between filesystems: only their sanity is comparable
  const d = await freshDir(root, 'statfs');
  return {
    result: await attempt(async () => {
      const s = await fsp.statfs(d);
      return { ok: true, bsizePositive: s.bsize > 0, blocksPositive: s.blocks > 0, bavailLeBlocks: s.bavail <= s.blocks };
    }),
  };
}

async function errorCases(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'error-cases');
  const p = (rel: string): string => path.join(d, rel);
  await fsp.writeFile(p('file'), 'x');
  await fsp.mkdir(p('dir/sub'), { recursive: true });
  const name255 = 'n'.repeat(255);
  const name256 = 'n'.repeat(256);
  return {
    statMissing: await code(() => fsp.stat(p('missing'))),
    lstatMissingInMissingDir: await code(() => fsp.lstat(p('missing/deeper'))),
    statThroughFile: await code(() => fsp.stat(p('file/x'))),
    createThroughFile: await code(() => fsp.writeFile(p('file/x'), 'y')),
    readdirOfFile: await code(() => fsp.readdir(p('file'))),
    create255: await code(() => fsp.writeFile(p(name255), 'max')),
    stat255: await attempt(async () => (await fsp.stat(p(name255))).size),
    create256: await code(() => fsp.writeFile(p(name256), 'too long')),
    stat256: await code(() => fsp.stat(p(name256))),
    mkdir256: await code(() => fsp.mkdir(p(name256))),
    renameTo256: await code(() => fsp.rename(p('file'), p(name256))),
    renameDirIntoOwnSubdir: await code(() => fsp.rename(p('dir'), p('dir/sub/inside'))),
    rmdirOfFile: await code(() => fsp.rmdir(p('file'))),
    unlinkOfDir: await code(() => fsp.unlink(p('dir'))),
    unlinkMissing: await code(() => fsp.unlink(p('missing'))),
    chmodMissing: await code(() => fsp.chmod(p('missing'), 0o644)),
    // a rename between directories of one mount must never be EXDEV
    renameAcrossDirs: await code(() => fsp.rename(p('file'), p('dir/sub/file'))),
    linkAcrossDirs: await code(() => fsp.link(p('dir/sub/file'), p('file-again'))),
    listing: await sortedListing(d),
  };
}

// ---------------------------------------------------------------------------------------
// What a user sees that FUSE transports have got wrong: exact times, byte names, deep trees,
// renameat2 flags, fallocate modes, SEEK_DATA/SEEK_HOLE, locks between processes.

/** Both times with nanoseconds, as decimal strings (beyond a double's precision). */
async function nsTimesOf(p: string, follow = true): Promise<Json> {
  return attempt(async () => {
    const st = follow ? await fsp.stat(p, { bigint: true }) : await fsp.lstat(p, { bigint: true });
    return { atimeNs: String(st.atimeNs), mtimeNs: String(st.mtimeNs) };
  });
}

/** `touch -d` and `cp -p` as a user runs them: one time at a time, nanoseconds, kept by copies. */
async function timesNs(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'times-ns');
  const f = path.join(d, 'f');
  await fsp.writeFile(f, 'times');
  const touch = (...args: string[]) => toolCode(runTool(requireTool('touch', 'coreutils'), args));
  const base = touch('-d', '1999-12-31 23:59:58.5', f);
  const afterBase = await nsTimesOf(f);
  const touchM = touch('-m', '-d', '2001-02-03 04:05:06.123456789', f);
  const afterTouchM = await nsTimesOf(f);
  const touchA = touch('-a', '-d', '2002-03-04 05:06:07.987654321', f);
  const afterTouchA = await nsTimesOf(f);
  const cpP = toolCode(runTool(requireTool('cp', 'coreutils'), ['-p', f, path.join(d, 'copy')]));
  const copy = await nsTimesOf(path.join(d, 'copy'));
  const copyContent = await readText(path.join(d, 'copy'));
  await fsp.symlink('f', path.join(d, 'link'));
  const touchLinkItself = touch('-h', '-d', '2003-04-05 06:07:08.000000001', path.join(d, 'link'));
  const linkTimes = await nsTimesOf(path.join(d, 'link'), false);
  // (not its atime: cp -p read the file since)
  const targetMtimeAfterLinkTouch = await attempt(async () => String((await fsp.stat(f, { bigint: true })).mtimeNs));
  return { base, afterBase, touchM, afterTouchM, touchA, afterTouchA, cpP, copy, copyContent, touchLinkItself, linkTimes, targetMtimeAfterLinkTouch };
}

const hex = (b: Buffer): string => b.toString('hex');

/** Names that are not UTF-8: exactly the same bytes must come back. */
async function byteNames(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'byte-names');
  const at = (...names: Buffer[]): Buffer => Buffer.concat([Buffer.from(`${d}/`), ...names.flatMap((n, i) => (i ? [Buffer.from('/'), n] : [n]))]);
  const bad = Buffer.from([0x66, 0xff, 0xfe]); // b'f\xff\xfe'
  const twin = Buffer.from([0x66, 0xfe, 0xff]); // another name, the same after UTF-8 replacement
  const moved = Buffer.from([0x67, 0x80, 0xc0, 0xaf]); // a stray continuation byte, an overlong '/'
  const dir = Buffer.from([0x64, 0xc3, 0x28]); // a cut 2-byte sequence
  const listing = async (p: Buffer | string): Promise<Json> => attempt(async () => (await fsp.readdir(p, { encoding: 'buffer' })).map(hex).sort());
  const create = await code(() => fsp.writeFile(at(bad), 'first'));
  const createTwin = await code(() => fsp.writeFile(at(twin), 'second'));
  const afterCreate = await listing(d);
  const readBad = await attempt(async () => (await fsp.readFile(at(bad))).toString());
  const readTwin = await attempt(async () => (await fsp.readFile(at(twin))).toString());
  const rename = await code(() => fsp.rename(at(bad), at(moved)));
  const afterRename = await listing(d);
  const oldName = await code(() => fsp.stat(at(bad)));
  const readMoved = await attempt(async () => (await fsp.readFile(at(moved))).toString());
  const mkdir = await code(() => fsp.mkdir(at(dir)));
  const createInside = await code(() => fsp.writeFile(at(dir, bad), 'inside'));
  const inside = await listing(at(dir));
  const symlink = await code(() => fsp.symlink(bad, at(dir, twin)));
  const readlink = await attempt(async () => hex(await fsp.readlink(at(dir, twin), { encoding: 'buffer' })));
  const readThroughLink = await attempt(async () => (await fsp.readFile(at(dir, twin))).toString());
  const unlinkMoved = await code(() => fsp.unlink(at(moved)));
  const unlinkTwin = await code(() => fsp.unlink(at(twin)));
  const rmTree = await code(() => fsp.rm(at(dir), { recursive: true }));
  const atEnd = await listing(d);
  return {
    create, createTwin, afterCreate, readBad, readTwin, rename, afterRename, oldName, readMoved, mkdir, createInside, inside,
    symlink, readlink, readThroughLink, unlinkMoved, unlinkTwin, rmTree, atEnd,
  };
}

const DEEP_LEVELS = 40;
/** 200 bytes each: 40 levels are 8,040 bytes of path, twice PATH_MAX. */
const deepName = (i: number): string => `${String(i).padStart(2, '0')}${'x'.repeat(198)}`;

/**
 * A tree deeper than PATH_MAX, reached as pjdfstest does: chdir one level at a time and
 * relative names. The process's cwd is restored whatever happens.
 */
async function deepTree(root: string): Promise<StepValue> {
  const d = await freshDir(root, 'deep-tree');
  const start = process.cwd();
  const content = pattern(100_000);
  try {
    process.chdir(d);
    let made = 0;
    for (let i = 0; i < DEEP_LEVELS; i++) {
      fs.mkdirSync(deepName(i));
      process.chdir(deepName(i));
      made++;
    }
    const write = await code(() => fsp.writeFile('leaf', content));
    const readMatches = await attempt(async () => sha256(await fsp.readFile('leaf')) === sha256(content));
    const leafInfo = await fileInfo('leaf');
    const mkdirAtBottom = await code(() => fsp.mkdir('sub'));
    const symlinkAtBottom = await code(() => fsp.symlink('leaf', 'link'));
    const readViaLink = await attempt(async () => (await fsp.readFile('link')).length);
    const renameAtBottom = await code(() => fsp.rename('leaf', 'sub/leaf'));
    const bottomListing = await sortedListing('.');
    const absolutePath = path.join(d, ...Array.from({ length: DEEP_LEVELS }, (_, i) => deepName(i)), 'sub', 'leaf');
    const statAbsolute = await code(() => fsp.stat(absolutePath));
    const relativeFromMiddle = await attempt(async () => {
      process.chdir(path.join(...Array.from({ length: 20 }, () => '..')));
      const rel = path.join(...Array.from({ length: 20 }, (_, i) => deepName(20 + i)), 'sub', 'leaf');
      try {
        return (await fsp.stat(rel)).size;
      } finally {
        process.chdir(path.join(...Array.from({ length: 20 }, (_, i) => deepName(20 + i))));
      }
    });
    // Remove it all on the way up.
    const removals: string[] = [];
    for (const [what, fn] of [
      ['unlink link', () => fsp.unlink('link')],
      ['unlink sub/leaf', () => fsp.unlink('sub/leaf')],
      ['rmdir sub', () => fsp.rmdir('sub')],
    ] as const) {
      const c = await code(fn);
      if (c !== 'ok') removals.push(`${what}: ${c}`);
    }
    for (let i = DEEP_LEVELS - 1; i >= 0; i--) {
      process.chdir('..');
      const c = await code(() => fsp.rmdir(deepName(i)));
      if (c !== 'ok') removals.push(`rmdir level ${i}: ${c}`);
    }
    return {
      made, write, readMatches, leafInfo, mkdirAtBottom, symlinkAtBottom, readViaLink, renameAtBottom, bottomListing,
      statAbsolute, relativeFromMiddle, removals, listingAtEnd: await sortedListing(d),
    };
  } finally {
    process.chdir(start);
  }
}

async function renameFlags(root: string): Promise<StepValue> {
  return pyScenario('rename-flags', await freshDir(root, 'rename-flags'));
}

async function fallocateStep(root: string): Promise<StepValue> {
  return pyScenario('fallocate', await freshDir(root, 'fallocate'));
}

async function seekHoles(root: string): Promise<StepValue> {
  return pyScenario('seek', await freshDir(root, 'seek-holes'));
}

/** Two processes and one file: fcntl byte-range locks (a third process checks what is left). */
async function locksPosix(root: string): Promise<StepValue> {
  const f = path.join(await freshDir(root, 'locks-posix'), 'f');
  return pyScenario('locks-posix', f, f);
}

async function locksFlock(root: string): Promise<StepValue> {
  const f = path.join(await freshDir(root, 'locks-flock'), 'f');
  return pyScenario('locks-flock', f, f);
}

/** A blocked F_SETLKW interrupted by a signal: EINTR, and the lock is not taken later. */
async function lockInterrupt(root: string): Promise<StepValue> {
  const f = path.join(await freshDir(root, 'lock-interrupt'), 'f');
  return pyScenario('lock-interrupt', f, f);
}

/** pwrite and ftruncate past 2^53 (beyond what the stack carries): refused, nothing changed. */
async function pwriteLimits(root: string): Promise<StepValue> {
  return pyScenario('pwrite-limits', path.join(await freshDir(root, 'pwrite-limits'), 'f'));
}

// ---------------------------------------------------------------------------------------
// Non-root steps: prepare-nonroot runs as root, the NONROOT_STEPS as another user on its result.
// Only nonroot-ownership looks at who owns what the user creates (fuse-native passes no caller
// credentials: there the owner is the daemon); the other steps do not depend on it.

const nonrootDir = (root: string): string => path.join(root, 'p');
/** The group of the setgid directory: one the non-root user is not in. */
export const SGID_GROUP = 4242;

async function prepareNonroot(root: string): Promise<StepValue> {
  const p = nonrootDir(root);
  await fsp.rm(p, { recursive: true, force: true });
  // explicit chmod after each create: independent of the umask
  const dirs: [string, number][] = [['', 0o755], ['private', 0o700], ['public', 0o755], ['tmp', 0o1777], ['own', 0o777], ['sgid', 0o2777]];
  const files: [string, number, string][] = [
    ['private/f', 0o644, 'secret\n'],
    ['public/ro', 0o644, 'read only\n'],
    ['public/rw', 0o666, 'rw\n'],
    ['tmp/rootfile', 0o666, 'root file\n'],
  ];
  const made: { [rel: string]: Json } = {};
  for (const [rel, mode] of dirs) {
    await fsp.mkdir(path.join(p, rel), { recursive: true });
    if (mode & 0o2000) await fsp.chown(path.join(p, rel), 0, SGID_GROUP);
    await fsp.chmod(path.join(p, rel), mode);
    made[rel || '.'] = await dirInfo(path.join(p, rel));
  }
  for (const [rel, mode, content] of files) {
    await fsp.writeFile(path.join(p, rel), content);
    await fsp.chmod(path.join(p, rel), mode);
    made[rel] = await fileInfo(path.join(p, rel));
  }
  return made;
}

async function nonrootPrivate(root: string): Promise<StepValue> {
  const p = nonrootDir(root);
  return {
    readFile: await code(() => fsp.readFile(path.join(p, 'private/f'))),
    listDir: await code(() => fsp.readdir(path.join(p, 'private'))),
    statInside: await code(() => fsp.stat(path.join(p, 'private/f'))),
    createInside: await code(() => fsp.writeFile(path.join(p, 'private/new'), 'x')),
    statDirItself: await modeOf(path.join(p, 'private')), // its parent is searchable
  };
}

async function nonrootPublic(root: string): Promise<StepValue> {
  const p = nonrootDir(root);
  const ro = path.join(p, 'public/ro');
  const rw = path.join(p, 'public/rw');
  return {
    readRo: await readText(ro),
    openRoForWrite: await code(async () => (await fsp.open(ro, 'r+')).close()),
    writeRo: await code(() => fsp.writeFile(ro, 'overwritten')),
    appendRo: await code(() => fsp.appendFile(ro, 'more')),
    truncateRo: await code(() => fsp.truncate(ro, 0)),
    roUnchanged: await readText(ro),
    writeRw: await code(() => fsp.writeFile(rw, 'written by another user\n')),
    readRw: await readText(rw),
    createInPublic: await code(() => fsp.writeFile(path.join(p, 'public/new'), 'x')),
    mkdirInPublic: await code(() => fsp.mkdir(path.join(p, 'public/newdir'))),
    unlinkInPublic: await code(() => fsp.unlink(rw)),
    renameInPublic: await code(() => fsp.rename(rw, path.join(p, 'public/moved'))),
    listing: await sortedListing(path.join(p, 'public')),
  };
}

async function nonrootAttrs(root: string): Promise<StepValue> {
  const p = nonrootDir(root);
  const ro = path.join(p, 'public/ro');
  const rw = path.join(p, 'public/rw');
  const hasXattrTools = findTool('getfattr') !== null && findTool('setfattr') !== null;
  return {
    chmodRo: await code(() => fsp.chmod(ro, 0o666)),
    chownRo: await code(() => fsp.chown(ro, process.getuid?.() ?? 65534, process.getgid?.() ?? 65534)),
    chownRw: await code(() => fsp.chown(rw, process.getuid?.() ?? 65534, -1)),
    // explicit times need ownership even on a file we may write
    utimesRo: await code(() => fsp.utimes(ro, T1, T1)),
    utimesRw: await code(() => fsp.utimes(rw, T1, T1)),
    setxattrRo: hasXattrTools ? xattr.set(ro, 'user.x', Buffer.from('x')) : 'EXCEPTION: attr tools missing',
    setxattrRw: hasXattrTools ? xattr.set(rw, 'user.x', Buffer.from('x')) : 'EXCEPTION: attr tools missing',
    getxattrRoUnset: hasXattrTools ? xattr.get(ro, 'user.x') : 'EXCEPTION: attr tools missing',
    roAfter: await fileInfo(ro),
  };
}

async function nonrootSticky(root: string): Promise<StepValue> {
  const p = nonrootDir(root);
  const rootfile = path.join(p, 'tmp/rootfile');
  const mine = path.join(p, 'tmp/mine');
  return {
    unlinkRootFile: await code(() => fsp.unlink(rootfile)),
    renameRootFile: await code(() => fsp.rename(rootfile, path.join(p, 'tmp/stolen'))),
    // 'r+' rather than 'w': O_CREAT on others' files in sticky dirs is refused by
    // fs.protected_regular, a sysctl rather than a filesystem property
    writeRootFile: await code(async () => {
      const fh = await fsp.open(rootfile, 'r+');
      try {
        await fh.write('overwritten by another user\n', 0);
      } finally {
        await fh.close();
      }
    }),
    rootFileContent: await readText(rootfile),
    createOwn: await code(() => fsp.writeFile(mine, 'mine\n', { flag: 'wx' })),
    readOwn: await readText(mine),
    listing: await sortedListing(path.join(p, 'tmp')),
  };
}

/**
 * What a non-root user creates is theirs: files, directories, symlinks and fifos, in a plain
 * directory and in a setgid one (whose group they inherit; a directory also the setgid bit;
 * a file asking for setgid in a group its creator is not in does not get it).
 */
async function nonrootOwnership(root: string): Promise<StepValue> {
  const p = nonrootDir(root);
  const out: StepValue = {};
  for (const sub of ['own', 'sgid']) {
    const at = (rel: string): string => path.join(p, sub, rel);
    const made = {
      file: await code(() => fsp.writeFile(at('f'), 'mine')),
      dir: await code(() => fsp.mkdir(at('d'), { mode: 0o755 })),
      nested: await code(() => fsp.mkdir(at('d/n'), { mode: 0o755 })),
      symlink: await code(() => fsp.symlink('f', at('l'))),
      fifo: mkfifo(at('p')),
      setgidFile: await code(async () => (await fsp.open(at('sg'), 'wx', 0o2755)).close()),
    };
    const owners: { [name: string]: Json } = {};
    for (const name of ['f', 'd', 'd/n', 'l', 'p', 'sg']) {
      owners[name] = await attempt(async () => {
        const st = await fsp.lstat(at(name));
        return { uid: st.uid, gid: st.gid, mode: modeStr(st.mode) };
      });
    }
    const chownToOtherGroup = await code(() => fsp.chown(at('f'), -1, SGID_GROUP + 1));
    const chmodOwnFile = await code(() => fsp.chmod(at('f'), 0o600));
    const modeAfterChmod = await modeOf(at('f'));
    out[sub] = { made, owners, chownToOtherGroup, chmodOwnFile, modeAfterChmod };
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Test-only step: hangs until killed, so a test can prove the runner's timeout.
async function sleepForever(): Promise<StepValue> {
  process.stderr.write('sleep-forever: sleeping until killed\n');
  return new Promise<StepValue>(() => {
    setInterval(() => undefined, 60_000); // keeps the event loop alive
  });
}

export const STEPS: { readonly [name: string]: Step } = {
  'nested-mkdir': nestedMkdir,
  'create-write-read': createWriteRead,
  'pwrite-sparse': pwriteSparse,
  append,
  truncate,
  'open-errors': openErrors,
  rename,
  hardlinks,
  symlinks,
  'readdir-large': readdirLarge,
  'readdir-types': readdirTypes,
  chmod,
  chown,
  utimes,
  xattrs,
  'unlink-open-file': unlinkOpenFile,
  'directory-handles': directoryHandles,
  'special-files': specialFiles,
  statfs,
  'error-cases': errorCases,
  'prepare-nonroot': prepareNonroot,
  'nonroot-private': nonrootPrivate,
  'nonroot-public': nonrootPublic,
  'nonroot-attrs': nonrootAttrs,
  'nonroot-sticky': nonrootSticky,
  'nonroot-ownership': nonrootOwnership,
  'times-ns': timesNs,
  'byte-names': byteNames,
  'deep-tree': deepTree,
  'rename-flags': renameFlags,
  fallocate: fallocateStep,
  'seek-holes': seekHoles,
  'locks-posix': locksPosix,
  'locks-flock': locksFlock,
  'lock-interrupt': lockInterrupt,
  'pwrite-limits': pwriteLimits,
  'sleep-forever': sleepForever,
};

/** The root-user workload, in order. */
export const DEFAULT_STEPS: readonly string[] = [
  'nested-mkdir', 'create-write-read', 'pwrite-sparse', 'append', 'truncate', 'open-errors', 'rename',
  'hardlinks', 'symlinks', 'readdir-large', 'readdir-types', 'chmod', 'chown', 'utimes', 'xattrs',
  'unlink-open-file', 'directory-handles', 'special-files', 'statfs', 'error-cases',
  'times-ns', 'byte-names', 'deep-tree', 'rename-flags', 'fallocate', 'seek-holes', 'locks-posix', 'locks-flock',
  'lock-interrupt',
];
/** Run as root before NONROOT_STEPS: builds root/p. */
export const PREPARE_NONROOT_STEP = 'prepare-nonroot';
/** Run as a non-root uid/gid after PREPARE_NONROOT_STEP. */
export const NONROOT_STEPS: readonly string[] = ['nonroot-private', 'nonroot-public', 'nonroot-attrs', 'nonroot-sticky', 'nonroot-ownership'];

// ---------------------------------------------------------------------------------------
// Child main

function emit(line: Json): void {
  // synchronous for pipes on Linux, so nothing is lost on process.exit
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function parseArgs(raw: string | undefined): ChildArgs {
  if (raw === undefined) throw new Error('usage: workload-child.js \'{"root":...,"steps":[...]}\'');
  const args = JSON.parse(raw) as ChildArgs;
  if (typeof args.root !== 'string' || !path.isAbsolute(args.root)) throw new Error('root must be an absolute path');
  if (!Array.isArray(args.steps)) throw new Error('steps must be an array');
  const unknown = args.steps.filter((s) => !(s in STEPS));
  if (unknown.length > 0) throw new Error(`unknown steps: ${unknown.join(', ')}`);
  return args;
}

/** Drops to uid/gid before any step; order matters: groups and gid need root to change. */
function dropPrivileges(uid: number | undefined, gid: number | undefined): void {
  if (uid === undefined && gid === undefined) return;
  if (!process.setgroups || !process.setgid || !process.setuid) throw new Error('cannot change credentials here');
  process.setgroups([]);
  if (gid !== undefined) process.setgid(gid);
  if (uid !== undefined) process.setuid(uid);
  if ((uid !== undefined && process.getuid?.() !== uid) || (gid !== undefined && process.getgid?.() !== gid)) {
    throw new Error(`credentials not changed: uid=${process.getuid?.()} gid=${process.getgid?.()}`);
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv[2]);
  process.umask(0o022); // modes in results must not depend on the parent's umask
  dropPrivileges(args.uid, args.gid);
  try {
    await fsp.access(args.root, fs.constants.X_OK);
  } catch (err) {
    throw new Error(
      `cannot search the workload root as uid ${process.getuid?.()}: ${errCode(err)} ` +
        '(its parents must be searchable too: chmod 0755 a mkdtemp dir; a FUSE mount needs allow_other)',
    );
  }
  emit({ type: 'ready' });
  for (const step of args.steps) {
    emit({ type: 'start', step });
    let result: StepValue;
    try {
      result = await STEPS[step](args.root);
    } catch (err) {
      result = { error: errCode(err) };
    }
    emit({ type: 'result', step, result });
  }
  emit({ type: 'done' });
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`workload-child: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(2);
    },
  );
}
