// The heal commands, as virtual extended attributes replicate answers itself (root only), so
// `xlstack heal` (or anyone with the volfile) drives them through the graph's ordinary fops:
//
//   getxattr ROOT  xlstack.replicate.heal-info   JSON: what still needs heal
//   getxattr ROOT  xlstack.replicate.heal        runs a heal pass over the indexes; JSON summary
//   getxattr ROOT  xlstack.replicate.heal-full   runs a heal of everything from the root; JSON summary
//   setxattr PATH  xlstack.replicate.split-brain-source = CHILD   resolves PATH's split brain
import { FopError } from '../../../src/core/index';
import type { Frame, Inode } from '../../../src/core/index';
import type { Replica } from './context';
import { Healer, checkResolvable } from './heal/healer';

export const HEAL_INFO = 'xlstack.replicate.heal-info';
export const HEAL_INDEX = 'xlstack.replicate.heal';
export const HEAL_FULL = 'xlstack.replicate.heal-full';
export const SPLIT_BRAIN_SOURCE = 'xlstack.replicate.split-brain-source';

export const isVirtual = (name: string): boolean => name.startsWith('xlstack.replicate.');

function rootOnly(frame: Frame, name: string): void {
  if (frame.caller.uid !== 0) throw new FopError('EPERM', `${name} is for root`);
}

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

export async function getVirtual(r: Replica, healer: Healer, frame: Frame, name: string): Promise<Buffer> {
  rootOnly(frame, name);
  const children = r.subvols.names.map((n, i) => ({ name: n, up: r.subvols.isUp(i) }));
  switch (name) {
    case HEAL_INFO:
      return json({ volume: r.name, children, entries: await healer.info() });
    case HEAL_INDEX:
      return json({ volume: r.name, children, ...(await healer.pass()) });
    case HEAL_FULL:
      return json({ volume: r.name, children, ...(await healer.full()) });
    default:
      throw new FopError('ENODATA', `${name}: no such replicate attribute`);
  }
}

export async function setVirtual(r: Replica, healer: Healer, frame: Frame, inode: Inode | undefined, name: string, value: Buffer): Promise<void> {
  rootOnly(frame, name);
  if (name !== SPLIT_BRAIN_SOURCE) throw new FopError('EINVAL', `${name}: no such replicate attribute`);
  if (!inode) throw new FopError('EINVAL', `${name} needs an object`);
  const childName = value.toString('latin1');
  const source = r.subvols.byName(childName);
  if (source < 0) throw new FopError('EINVAL', `${childName} is not a child of ${r.name} (its children: ${r.subvols.names.join(', ')})`);
  if (!r.subvols.isUp(source)) throw new FopError('ENOTCONN', `${childName} is down`);
  const h = await healer.resolve(inode.gfid, source);
  checkResolvable(h);
  if (h.outcome === 'clean' && !Object.values(h.kinds).some((k) => k === 'healed')) {
    throw new FopError('EINVAL', `${r.host.itable.path(inode) ?? inode.gfid} is not in split brain`);
  }
}
