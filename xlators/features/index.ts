import * as fs from 'fs';
import * as path from 'path';
import { FopError, INTERNAL_XATTR_PREFIX, Xlator, defineTranslator, gfidOfLoc, isGfid, opt } from '../../src/core/index';
import type { Frame, Gfid, Loc, OptionValues, XattrMap, XattrOp } from '../../src/core/index';

const options = {
  directory: opt.path({ description: 'where the index is kept (one empty file per GFID listed); made if missing', reconfigurable: false }),
  'watch-prefix': opt.string({
    description: 'the internal xattrs whose values make an object listed while any of them is not all zeros (replicate\'s changelog)',
    default: `${INTERNAL_XATTR_PREFIX}afr.`,
    reconfigurable: false,
  }),
};

type Options = OptionValues<typeof options>;

/** The virtual internal xattr that lists the index: xattrop 'get' with the last GFID of the previous page (empty: from the start). */
export const INDEX_KEY = `${INTERNAL_XATTR_PREFIX}index.pending`;
/** GFIDs per page. */
const PAGE = 4096;

const allZero = (b: Buffer): boolean => b.every((x) => x === 0);

/** Whether an xattrop may leave this value not zero: a set of anything but zeros, an add of something positive. */
function mayLeavePending(op: XattrOp, v: Buffer): boolean {
  if (op === 'set') return !allZero(v);
  for (let i = 0; i + 4 <= v.length; i += 4) if (v.readInt32BE(i) > 0) return true;
  return false;
}

/**
 * features/index (GlusterFS's index translator, on the brick): keeps the list of objects
 * whose changelog says something is pending (an xattrop result under watch-prefix that is
 * not all zeros), so that heal finds them without crawling the volume. The changelog's owner
 * always names its whole changelog in an xattrop, so every answer says whether the object
 * is still pending. The list is durable (a file per GFID in `directory`) and is read with an
 * xattrop 'get' of INDEX_KEY on any object: a page of GFIDs after the one given, sorted,
 * newline-separated, each checked to still exist (those gone are dropped from the index).
 */
export class Index extends Xlator<Options> {
  private readonly listed = new Set<Gfid>();
  private dir?: string;

  override async init(): Promise<void> {
    const dir = this.options.directory;
    if (!dir) throw new Error(`option 'directory' is required`);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of fs.readdirSync(dir)) if (isGfid(name)) this.listed.add(name);
    this.dir = dir;
  }

  private file(gfid: Gfid): string {
    return path.join(this.dir!, gfid);
  }

  private mark(gfid: Gfid): void {
    if (this.listed.has(gfid)) return;
    fs.writeFileSync(this.file(gfid), '');
    this.listed.add(gfid);
  }

  private unmark(gfid: Gfid): void {
    if (!this.listed.delete(gfid)) return;
    try {
      fs.unlinkSync(this.file(gfid));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  override async xattrop(frame: Frame, loc: Loc, op: XattrOp, xattrs: XattrMap): Promise<Record<string, Buffer>> {
    if (op === 'get' && INDEX_KEY in xattrs) return { [INDEX_KEY]: await this.page(frame, xattrs[INDEX_KEY].toString('latin1')) };
    const prefix = this.options['watch-prefix'];
    const gfid = gfidOfLoc(loc);
    // Listed before a change that may leave something pending: a crash in between leaves it listed, never the reverse.
    if (gfid && op !== 'get' && Object.entries(xattrs).some(([k, v]) => k.startsWith(prefix) && mayLeavePending(op, v))) this.mark(gfid);
    const result = await this.wind('xattrop', frame, loc, op, xattrs);
    const watched = Object.entries(result).filter(([k]) => k.startsWith(prefix));
    if (watched.length > 0 && gfid) {
      if (watched.some(([, v]) => !allZero(v))) this.mark(gfid);
      else this.unmark(gfid);
    }
    return result;
  }

  /** The GFIDs listed after `after`, at most PAGE, each still there. */
  private async page(frame: Frame, after: string): Promise<Buffer> {
    const out: Gfid[] = [];
    for (const gfid of [...this.listed].filter((g) => g > after).sort()) {
      if (out.length >= PAGE) break;
      if (await this.exists(frame, gfid)) out.push(gfid);
      else this.unmark(gfid);
    }
    return Buffer.from(out.join('\n'), 'latin1');
  }

  private async exists(frame: Frame, gfid: Gfid): Promise<boolean> {
    try {
      await this.wind('stat', frame, { gfid, path: `<gfid:${gfid}>` });
      return true;
    } catch (e) {
      const code = FopError.from(e).code;
      if (code === 'ENOENT' || code === 'ESTALE') return false;
      throw e;
    }
  }

  override dump(): Record<string, unknown> {
    return { directory: this.dir, listed: this.listed.size, sample: [...this.listed].slice(0, 16) };
  }
}

export default defineTranslator({
  type: 'features/index',
  description: 'lists the objects whose replicate changelog is not clear, so heal finds them without crawling (put it on each brick)',
  options,
  subvolumes: { min: 1, max: 1 },
  create: (init) => new Index(init),
});
