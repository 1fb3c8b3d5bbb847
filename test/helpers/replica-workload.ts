// What the replicate integration tests share: workload child processes (test/helpers/
// replicate-child.ts) driven through a mount, and a brick's tree as clients see it.
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { JsonChild, startJsonChild } from './json-child';
import { xlstack } from './mount';
import type { ChildArgs, ChildResult } from './replicate-child';

export type WorkloadChild = JsonChild<ChildResult>;

export function startWorkload(script: string, args: Omit<ChildArgs, 'stopFile'>, scratch: string): WorkloadChild {
  return startJsonChild<ChildResult>(script, args, path.join(scratch, `stop-${path.basename(args.dir)}`), `workload ${args.dir}`, 90_000);
}

export interface BrickEntry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  sha?: string;
  link?: string;
  xattrs: string;
  ino?: string;
  mtime?: number;
}

/** A brick's tree as clients see it (no .xlstack, no internal xattrs), hard links by a shared key. */
export function brickTree(dir: string): Record<string, BrickEntry> {
  const out: Record<string, BrickEntry> = {};
  const inodes = new Map<number, string>();
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      if (rel === '' && name === '.xlstack') continue;
      const r = path.join(rel, name);
      const p = path.join(dir, r);
      const st = fs.lstatSync(p);
      const xattrs = execFileSync('getfattr', ['-h', '--absolute-names', '-d', '-m', '-', '-e', 'hex', p], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes('=') && !l.startsWith('trusted.xlstack.'))
        .sort()
        .join(';');
      if (st.isFile() && st.nlink > 1 && !inodes.has(st.ino)) inodes.set(st.ino, r);
      out[r] = {
        type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : st.isFile() ? 'file' : 'other',
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        size: st.isDirectory() ? 0 : st.size,
        sha: st.isFile() ? crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex') : undefined,
        link: st.isSymbolicLink() ? fs.readlinkSync(p) : undefined,
        xattrs,
        ino: st.isFile() && st.nlink > 1 ? inodes.get(st.ino) : undefined,
        mtime: st.isFile() ? st.mtime.getTime() / 1000 : undefined,
      };
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

/** Heals with the command until nothing is left (bounded), and checks heal info says so. */
export async function healAll(volfile: string): Promise<void> {
  let r = await xlstack(['heal', volfile, '--timeout', '60'], { timeoutMs: 90_000 });
  for (let i = 0; i < 5 && r.code !== 0; i++) r = await xlstack(['heal', volfile, '--timeout', '60'], { timeoutMs: 90_000 });
  expect([r.code, r.stdout, r.stderr]).toEqual([0, expect.stringContaining('healed'), '']);
  const info = await xlstack(['heal', volfile, 'info'], { timeoutMs: 60_000 });
  expect([info.code, info.stdout]).toEqual([0, expect.stringContaining('0 object(s) need heal')]);
}
