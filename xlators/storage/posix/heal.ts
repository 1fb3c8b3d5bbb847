// GFIDs of entries found by name: assigned to objects made outside xlstack, made unique for
// copies that kept another object's, and their handles made or mended, as GlusterFS's
// posix does on lookup.
import { v4 as uuidv4 } from 'uuid';
import { Gfid, Logger, Name, ROOT_GFID, isDir } from '../../../src/core/index';
import { GFID_XATTR, readGfid, writeGfid } from './gfid';
import type { HandleStore } from './handles';
import { At, Stat, XATTR_REPLACE, sys } from './sys';

/** An entry found by name: where it is, what it is, and where (parent, name) the volume sees it. */
export interface Found {
  readonly at: At;
  readonly st: Stat;
  readonly parent: Gfid;
  readonly name: Name;
}

const label = (f: Found) => `<gfid:${f.parent}>/${f.name}`;

/**
 * The GFID of an entry found by name, assigning one and healing its handle if needed.
 * Returns the entry's attributes as they are afterwards (a new handle is a new link).
 */
export function identify(store: HandleStore, log: Logger, f: Found): { gfid: Gfid; st: Stat } {
  const gfid = readGfid(f.at) ?? assignGfid(log, f);
  if (isDir(f.st.mode)) return { gfid: checkDirHandle(store, log, f, gfid), st: f.st };
  const checked = checkFileHandle(store, log, f, gfid);
  return { gfid: checked.gfid, st: checked.linked ? sys.stat(f.at) : f.st };
}

/** Gives an object without a (valid) GFID a fresh one; another lookup may have won the race. */
function assignGfid(log: Logger, f: Found): Gfid {
  try {
    writeGfid(f.at, uuidv4());
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const gfid = readGfid(f.at);
  if (gfid !== undefined) return gfid;
  // An xattr that is not a GFID (wrong length): replace it.
  const fresh = uuidv4();
  log.warn(`${label(f)} has a malformed ${GFID_XATTR}; giving it ${fresh}`);
  writeGfid(f.at, fresh, XATTR_REPLACE);
  return fresh;
}

/** Another object already owns this GFID: this one is a copy that kept the xattr. */
function renumber(log: Logger, f: Found, gfid: Gfid): Gfid {
  const fresh = uuidv4();
  log.warn(`${label(f)} carries GFID ${gfid} of another object; giving it ${fresh}`);
  writeGfid(f.at, fresh, XATTR_REPLACE);
  return fresh;
}

function checkFileHandle(store: HandleStore, log: Logger, f: Found, gfid: Gfid): { gfid: Gfid; linked: boolean } {
  if (store.verifiedIno(gfid) === f.st.ino) return { gfid, linked: false };
  const hst = sys.statIfExists(store.handleAt(gfid));
  if (hst && hst.ino === f.st.ino && hst.dev === f.st.dev) {
    store.markVerified(gfid, f.st.ino);
    return { gfid, linked: false };
  }
  if (hst) gfid = renumber(log, f, gfid);
  sys.linkat(f.at, store.handleAt(gfid));
  store.markVerified(gfid, f.st.ino);
  return { gfid, linked: true };
}

function checkDirHandle(store: HandleStore, log: Logger, f: Found, gfid: Gfid): Gfid {
  // Only the backing root is the root (a directory may carry its GFID from elsewhere).
  if (gfid === ROOT_GFID) gfid = renumber(log, f, gfid);
  if (store.isAt(gfid, f.parent, f.name)) return gfid;
  // The handle leads elsewhere, or nowhere: is there another directory with this GFID?
  const other = liveDir(store, gfid);
  // Otherwise this directory takes the GFID (if an fd is kept for it, it is of this very
  // directory, moved: liveDir found none that is still another's).
  if (other === 'not-a-directory' || (other && (other.ino !== f.st.ino || other.dev !== f.st.dev))) gfid = renumber(log, f, gfid);
  store.setDirHandle(gfid, f.parent, f.name);
  return gfid;
}

/** The directory a GFID's handle leads to, if there is one; 'not-a-directory' if the GFID is a non-directory's. */
function liveDir(store: HandleStore, gfid: Gfid): Stat | 'not-a-directory' | undefined {
  try {
    return store.dirs.stat(gfid);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') return 'not-a-directory';
    if (code === 'ESTALE' || code === 'ENOENT' || code === 'ELOOP') return undefined;
    throw e;
  }
}
