import { Fd } from '../../src/core/fd';
import { Frame } from '../../src/core/frame';
import { Loc, locName } from '../../src/core/fops';
import { Inode } from '../../src/core/inode';

/** A short, one-line rendering of fop arguments and results for logs and statedumps. */
export function describe(value: unknown): string {
  if (value instanceof Frame) return `#${value.unique}`;
  if (value instanceof Fd) return `fd=${value.id}(${value.inode.gfid})`;
  if (Buffer.isBuffer(value)) return `<${value.length} bytes>`;
  if (Array.isArray(value)) return `[${value.length} items]`;
  if (value === undefined) return 'ok';
  if (typeof value !== 'object' || value === null) return JSON.stringify(value);
  const o = value as Record<string, unknown>;
  if (typeof o.path === 'string' || o.inode instanceof Inode || o.parent instanceof Inode) return locName(o as Loc);
  if (typeof o.gfid === 'string' && typeof o.mode === 'number') {
    return `{gfid=${o.gfid} mode=${(o.mode as number).toString(8)} size=${o.size}}`; // an Iatt
  }
  const s = JSON.stringify(value);
  return s.length > 120 ? s.slice(0, 117) + '...' : s;
}
