// The namespace workload of test/helpers/namespace-child.ts, driven from a test: start a
// child on a mount, collect its progress and result, and compare storage with its model.
import * as fs from 'fs';
import * as path from 'path';
import type { Args, Model, Result } from './namespace-child';
import { JsonChild, startJsonChild } from './json-child';

const CHILD = path.join(__dirname, 'namespace-child.js');

export interface Child extends JsonChild<Result> {
  readonly name: string;
}

export function startChild(args: Omit<Args, 'stopFile'>, dir: string): Child {
  return { name: args.name, ...startJsonChild<Result>(CHILD, args, path.join(dir, `stop-${args.name}`), args.name) };
}

/** The tree under `root/name` as storage has it, in the model's terms (file ids by inode). */
function storageTree(root: string, name: string): { dirs: Record<string, number>; names: Record<string, { ino: number; mode: number; nlink: number; content: string }> } {
  const dirs: Record<string, number> = {};
  const names: Record<string, { ino: number; mode: number; nlink: number; content: string }> = {};
  const walk = (rel: string) => {
    const st = fs.lstatSync(path.join(root, rel));
    if (st.isDirectory()) {
      dirs[rel] = st.mode & 0o7777;
      for (const e of fs.readdirSync(path.join(root, rel))) walk(`${rel}/${e}`);
    } else {
      names[rel] = { ino: st.ino, mode: st.mode & 0o7777, nlink: st.nlink, content: fs.readFileSync(path.join(root, rel), 'utf8') };
    }
  };
  walk(name);
  return { dirs, names };
}

/** Compares storage with a model: the same directories (and modes), names, contents, modes and links. */
export function compare(root: string, name: string, model: Model): string[] {
  const got = storageTree(root, name);
  const diffs: string[] = [];
  const want = (x: Record<string, unknown>) => Object.keys(x).sort();
  if (JSON.stringify(want(got.dirs)) !== JSON.stringify(want(model.dirs))) diffs.push(`directories: storage ${JSON.stringify(want(got.dirs))}, model ${JSON.stringify(want(model.dirs))}`);
  for (const [d, mode] of Object.entries(model.dirs)) if (got.dirs[d] !== undefined && got.dirs[d] !== mode) diffs.push(`${d}: mode ${got.dirs[d].toString(8)}, model ${mode.toString(8)}`);
  if (JSON.stringify(want(got.names)) !== JSON.stringify(want(model.names))) diffs.push(`names: storage ${JSON.stringify(want(got.names))}, model ${JSON.stringify(want(model.names))}`);
  const inoOf = new Map<number, number>();
  for (const [p, id] of Object.entries(model.names)) {
    const s = got.names[p];
    if (!s) continue;
    const f = model.files[id];
    const links = Object.values(model.names).filter((x) => x === id).length;
    if (s.content !== f.content) diffs.push(`${p}: content of ${s.content.length} bytes, model ${f.content.length} (ends ${JSON.stringify(s.content.slice(-30))} vs ${JSON.stringify(f.content.slice(-30))})`);
    if (s.mode !== f.mode) diffs.push(`${p}: mode ${s.mode.toString(8)}, model ${f.mode.toString(8)}`);
    // Storage has one more: the GFID handle under .xlstack/handles.
    if (s.nlink !== links + 1) diffs.push(`${p}: ${s.nlink - 1} links (and a handle), model ${links}`);
    if (inoOf.has(id) && inoOf.get(id) !== s.ino) diffs.push(`${p}: not the same file as the model's other names of file ${id}`);
    inoOf.set(id, s.ino);
  }
  return diffs;
}

