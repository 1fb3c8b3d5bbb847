import { FopError, Gfid, isGfid } from '../../../src/core/index';
import { At, XATTR_CREATE, sys } from './sys';

export const GFID_XATTR = 'trusted.gfid';
const GFID_ATTR = Buffer.from(GFID_XATTR, 'latin1');

// Not uuid's parse/stringify: they reject GFIDs that are not RFC 4122 uuids, like the root's.
export function gfidBytes(gfid: Gfid): Buffer {
  if (!isGfid(gfid)) throw new FopError('EINVAL', `bad GFID ${JSON.stringify(gfid)}`);
  return Buffer.from(gfid.replace(/-/g, ''), 'hex');
}

export function gfidString(b: Buffer): Gfid {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The GFID stored on an object, or undefined if it has none (or not 16 bytes of one). */
export function readGfid(at: At): Gfid | undefined {
  const b = sys.getxattrIfExists(at, GFID_ATTR);
  return b?.length === 16 ? gfidString(b) : undefined;
}

export function writeGfid(at: At, gfid: Gfid, flags = XATTR_CREATE): void {
  sys.setxattrAt(at, GFID_ATTR, gfidBytes(gfid), flags);
}
