// Readdir cookies of a merged listing: which child, and where in that child's own listing.
// A cookie resumes where it stopped across calls, across graphs with the same children in
// the same order, and across a graph that appended children (indices do not move).

/** The most children a distribute volume may have (the child index's room in a cookie). */
export const MAX_CHILDREN = 1024;

/** Where a listing stands: child `child`, after the entry whose cookie there is `cookie` (0: its start). */
export interface Position {
  readonly child: number;
  readonly cookie: number;
}

/**
 * cookie * MAX_CHILDREN + child. A child's cookie of an entry is never 0 (0 means "from the
 * start"), so no entry's merged cookie is 0, the start of the whole listing.
 */
export function encodeCookie(p: Position): number {
  const v = p.cookie * MAX_CHILDREN + p.child;
  if (!Number.isSafeInteger(v)) throw new RangeError(`child ${p.child}'s cookie ${p.cookie} does not fit a merged cookie`);
  return v;
}

export function decodeCookie(offset: number): Position {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`bad readdir cookie ${offset}`);
  return { child: offset % MAX_CHILDREN, cookie: Math.floor(offset / MAX_CHILDREN) };
}
