// Child process: holds files and directories open on a mount and does I/O through them
// until a stop file appears, checking every read against what it wrote. With `holders`, it
// also holds what the kernel names by nodeid alone: its cwd inside the mount (used through
// relative names), files it stats but never opens, and a directory listing read a few
// entries at a time. Prints "ready" once everything is open, then (with `progress`) "round N"
// after each round, then one JSON line with the outcome.
import * as fs from 'fs';
import * as path from 'path';

interface Args {
  readonly root: string;
  readonly files: number;
  readonly dirs: number;
  readonly stopFile: string;
  readonly maxMs: number;
  readonly holders?: boolean;
  /** Print "round N" after each round (a test waits for rounds between its steps). */
  readonly progress?: boolean;
}

export interface LoadResult {
  readonly ops: number;
  readonly rounds: number;
  readonly errors: string[];
  readonly mismatches: string[];
  /** Listings of the big directory read to the end, each entry once (with `holders`). */
  readonly listings: number;
}

const SIZE = 64 * 1024;
const BLOCK = 4096;
/** Entries of the directory listed slowly: the kernel reads it in many 4 KiB requests. */
const BIG_DIR = 600;
/** Entries read from the slow listing per round. */
const PER_ROUND = 2;
const STATTED = 10;

type Attempt = (what: string, fn: () => void) => void;

/** What the kernel holds by nodeid only: a cwd, looked-up files, a listing under way. */
class Holders {
  private readonly bigNames: Set<string>;
  private listing?: { dir: fs.Dir; seen: string[] };
  listings = 0;

  /** `attempt` records a failed call, `mismatch` a wrong answer. */
  constructor(
    private readonly root: string,
    private readonly attempt: Attempt,
    private readonly mismatch: (what: string) => void,
  ) {
    const cwd = path.join(root, 'cwd');
    fs.mkdirSync(cwd);
    fs.writeFileSync(path.join(cwd, 'here'), 'in the cwd');
    for (let i = 0; i < STATTED; i++) fs.writeFileSync(path.join(root, `s${i}`), Buffer.alloc(i * 100, 's'));
    const big = path.join(root, 'big');
    fs.mkdirSync(big);
    this.bigNames = new Set(Array.from({ length: BIG_DIR }, (_, i) => `entry-${String(i).padStart(4, '0')}-${'p'.repeat(80)}`));
    for (const n of this.bigNames) fs.writeFileSync(path.join(big, n), '');
    process.chdir(cwd);
  }

  private check(what: string, fn: () => boolean): void {
    this.attempt(what, () => void (fn() || this.mismatch(what)));
  }

  round(rounds: number): void {
    // through the cwd, by relative names
    this.check('read ./here', () => fs.readFileSync('here', 'utf8') === 'in the cwd');
    const rel = `rel-${rounds % 3}`;
    this.check(`write+read ./${rel}`, () => {
      fs.writeFileSync(rel, `round ${rounds}`);
      return fs.readFileSync(rel, 'utf8') === `round ${rounds}`;
    });
    this.check('stat .', () => fs.statSync('.').isDirectory());
    this.check('list .', () => fs.readdirSync('.').includes('here'));
    // looked up, never opened
    for (let i = 0; i < STATTED; i++) {
      this.check(`stat s${i}`, () => {
        const st = fs.statSync(path.join(this.root, `s${i}`));
        return st.isFile() && st.size === i * 100;
      });
    }
    this.attempt('slow listing', () => this.listSome());
  }

  /** A few more entries of the listing under way; a listing read to the end must have had each entry once. */
  private listSome(): void {
    const l = this.listing ?? (this.listing = { dir: fs.opendirSync(path.join(this.root, 'big'), { bufferSize: 1 }), seen: [] });
    for (let k = 0; k < PER_ROUND; k++) {
      const e = l.dir.readSync();
      if (e) {
        l.seen.push(e.name);
        continue;
      }
      this.listing = undefined;
      l.dir.closeSync();
      const seen = new Set(l.seen);
      if (seen.size !== l.seen.length || seen.size !== this.bigNames.size || ![...seen].every((n) => this.bigNames.has(n))) {
        this.mismatch(`listing ${this.listings + 1}: ${l.seen.length} entries read, ${seen.size} distinct, of ${this.bigNames.size}`);
      }
      this.listings++;
      return;
    }
  }

  /** Reads the listing under way to its end (and checks it), then leaves the cwd. */
  close(): void {
    if (this.listing) {
      const done = this.listings;
      while (this.listings === done) this.listSome();
    }
    process.chdir('/');
  }
}

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
  const errors: string[] = [];
  const mismatches: string[] = [];
  let ops = 0;
  let rounds = 0;
  const attempt = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (e) {
      errors.push(`${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    ops++;
  };
  const holders = args.holders ? new Holders(dir, attempt, (what) => mismatches.push(`${what} round ${rounds}`)) : undefined;
  process.stdout.write('ready\n');

  const end = Date.now() + args.maxMs;
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
    holders?.round(rounds);
    if (args.progress) process.stdout.write(`round ${rounds}\n`);
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
  if (holders) attempt('close holders', () => holders.close());
  return { ops, rounds, errors, mismatches, listings: holders?.listings ?? 0 };
}

if (require.main === module) {
  process.stdout.write(JSON.stringify(main(JSON.parse(process.argv[2]) as Args)) + '\n');
}
