// Child process: holds files and directories open on a mount and does I/O through them
// until a stop file appears, checking every read against what it wrote. Prints "ready"
// once everything is open, then one JSON line with the outcome.
import * as fs from 'fs';
import * as path from 'path';

interface Args {
  readonly root: string;
  readonly files: number;
  readonly dirs: number;
  readonly stopFile: string;
  readonly maxMs: number;
}

export interface LoadResult {
  readonly ops: number;
  readonly rounds: number;
  readonly errors: string[];
  readonly mismatches: string[];
}

const SIZE = 64 * 1024;
const BLOCK = 4096;

function main(args: Args): LoadResult {
  const dir = path.join(args.root, 'load');
  fs.mkdirSync(dir, { recursive: true });
  const files = Array.from({ length: args.files }, (_, i) => {
    const p = path.join(dir, `f${i}`);
    const model = Buffer.alloc(SIZE, i % 251);
    fs.writeFileSync(p, model);
    return { name: `f${i}`, fd: fs.openSync(p, 'r+'), model };
  });
  const dirs = Array.from({ length: args.dirs }, (_, i) => {
    const p = path.join(dir, `d${i}`);
    fs.mkdirSync(p);
    fs.writeFileSync(path.join(p, 'inside'), `dir ${i}`);
    return { name: `d${i}`, fd: fs.openSync(p, 'r') };
  });
  // One file lives on only through its fd.
  fs.unlinkSync(path.join(dir, files[0].name));
  process.stdout.write('ready\n');

  const errors: string[] = [];
  const mismatches: string[] = [];
  let ops = 0;
  let rounds = 0;
  const end = Date.now() + args.maxMs;
  const attempt = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (e) {
      errors.push(`${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    ops++;
  };
  while (!fs.existsSync(args.stopFile) && Date.now() < end) {
    rounds++;
    for (const [i, f] of files.entries()) {
      const offset = ((rounds * 7 + i * 3) % (SIZE / BLOCK)) * BLOCK;
      const block = Buffer.alloc(BLOCK, (rounds + i) % 256);
      attempt(`write ${f.name}`, () => {
        fs.writeSync(f.fd, block, 0, BLOCK, offset);
        block.copy(f.model, offset);
      });
      attempt(`read ${f.name}`, () => {
        const got = Buffer.alloc(BLOCK);
        const n = fs.readSync(f.fd, got, 0, BLOCK, offset);
        if (n !== BLOCK || !got.equals(f.model.subarray(offset, offset + BLOCK))) mismatches.push(`${f.name}@${offset} round ${rounds}`);
      });
    }
    for (const d of dirs) attempt(`fsync ${d.name}`, () => fs.fsyncSync(d.fd));
  }
  for (const f of files) {
    const got = Buffer.alloc(SIZE);
    attempt(`final read ${f.name}`, () => {
      fs.readSync(f.fd, got, 0, SIZE, 0);
      if (!got.equals(f.model)) mismatches.push(`${f.name}: final content`);
    });
    attempt(`close ${f.name}`, () => fs.closeSync(f.fd));
  }
  for (const d of dirs) attempt(`close ${d.name}`, () => fs.closeSync(d.fd));
  return { ops, rounds, errors, mismatches };
}

if (require.main === module) {
  process.stdout.write(JSON.stringify(main(JSON.parse(process.argv[2]) as Args)) + '\n');
}
