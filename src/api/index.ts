// The client API: `import { Volume } from 'xlstack/api'` (dist/src/api).
export { File, Volume } from './volume';
export type { Credentials, Entry, LockType, PathLike, VolumeOptions } from './volume';
export { RENAME_EXCHANGE, RENAME_NOREPLACE } from '../core/types';
export type { Iatt, Statfs } from '../core/types';
