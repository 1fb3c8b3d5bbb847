import * as fs from 'fs';
import * as path from 'path';

/** The system calls Node's fs lacks (sys.c). All synchronous; none follows a final symlink. */
export interface Sys {
  getxattr(path: string, name: string): Buffer;
  setxattr(path: string, name: string, value: Buffer, flags: number): void;
  listxattr(path: string): string[];
  removexattr(path: string, name: string): void;
  mknod(path: string, mode: number, rdev: number): void;
  /** A nsec of UTIME_OMIT (-1) leaves that time as it is; UTIME_NOW (-2) sets it to now. */
  utimens(path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  renameNoReplace(from: string, to: string): void;
}

export const UTIME_OMIT = -1;
export const UTIME_NOW = -2;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

/** node-gyp builds the addon into build/Release at the package root. */
function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (dir === path.dirname(dir)) throw new Error(`no package.json above ${from}`);
  }
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const sys: Sys = require(path.join(packageRoot(__dirname), 'build', 'Release', 'posix_sys.node'));
