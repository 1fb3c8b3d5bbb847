// Child process for the distribute tests: keeps `files` files open on a mount and writes,
// reads back and fsyncs through those same fds (seeded random 4 KiB blocks) until a stop
// file appears, checking every read against its model of the files. Prints "ready" once the
// files are written, "ops N" now and then, and at the end one JSON line: the outcome and the
// sha256 of what each file must hold.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { Rng } from '../helpers/rng';

export interface WriterArgs {
  readonly dir: string;
  readonly files: number;
  readonly size: number;
  readonly stopFile: string;
  readonly maxMs: number;
  readonly seed: number;
}

export interface WriterResult {
  readonly ops: number;
  readonly errors: string[];
  readonly mismatches: string[];
  /** File name -> sha256 (hex) of its model. */
  readonly sums: Record<string, string>;
}

const BLOCK = 4096;
const PROGRESS_EVERY = 100;

function main(a: WriterArgs): WriterResult {
  const rng = new Rng(a.seed);
  const names = Array.from({ length: a.files }, (_, i) => `w${i}`);
  const models = names.map(() => Buffer.alloc(a.size));
  const errors: string[] = [];
  const mismatches: string[] = [];
  const fds = names.map((n) => fs.openSync(path.join(a.dir, n), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644));
  models.forEach((m, k) => {
    for (let i = 0; i < m.length; i++) m[i] = rng.int(256);
    fs.writeSync(fds[k], m, 0, m.length, 0);
  });
  process.stdout.write('ready\n');
  const end = Date.now() + a.maxMs;
  let ops = 0;
  while (!fs.existsSync(a.stopFile) && Date.now() < end && errors.length === 0) {
    const k = rng.int(a.files);
    const at = rng.int(a.size / BLOCK) * BLOCK;
    try {
      if (ops % 8 === 7) {
        const got = Buffer.alloc(BLOCK);
        const n = fs.readSync(fds[k], got, 0, BLOCK, at);
        if (n !== BLOCK || !got.equals(models[k].subarray(at, at + BLOCK))) mismatches.push(`${names[k]}@${at}: read ${n} bytes that differ from what was written`);
      } else {
        const block = Buffer.alloc(BLOCK);
        for (let i = 0; i < BLOCK; i++) block[i] = rng.int(256);
        const n = fs.writeSync(fds[k], block, 0, BLOCK, at);
        if (n !== BLOCK) errors.push(`${names[k]}@${at}: short write ${n}`);
        block.copy(models[k], at);
        if (ops % 64 === 63) fs.fsyncSync(fds[k]);
      }
    } catch (e) {
      errors.push(`${names[k]}@${at}: ${(e as Error).message}`);
    }
    if (++ops % PROGRESS_EVERY === 0) process.stdout.write(`ops ${ops}\n`);
  }
  for (const fd of fds) {
    try {
      fs.closeSync(fd);
    } catch (e) {
      errors.push(`close: ${(e as Error).message}`);
    }
  }
  const sums = Object.fromEntries(names.map((n, k) => [n, createHash('sha256').update(models[k]).digest('hex')]));
  return { ops, errors, mismatches, sums };
}

process.stdout.write(JSON.stringify(main(JSON.parse(process.argv[2]) as WriterArgs)) + '\n');
