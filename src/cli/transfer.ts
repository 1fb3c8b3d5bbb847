import { constants } from 'fs';
import * as fs from 'fs';
import { Volume } from '../api';
import { parseArgs } from './args';

const CHUNK = 1024 * 1024;

/**
 * `xlstack put VOLFILE LOCAL PATH` and `xlstack get VOLFILE PATH LOCAL`: copy one file into
 * or out of a volume without mounting it, through the client API (as gfapi tools do).
 */
export async function put(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { positionals: ['volfile', 'local', 'path'] });
  const [volfile, local, dest] = args.positionals;
  const from = fs.openSync(local, 'r');
  const vol = await Volume.open(volfile);
  try {
    const f = await vol.open(dest, constants.O_CREAT | constants.O_WRONLY | constants.O_TRUNC, fs.fstatSync(from).mode & 0o7777);
    try {
      const buf = Buffer.alloc(CHUNK);
      for (let pos = 0; ; ) {
        const n = fs.readSync(from, buf, 0, CHUNK, pos);
        if (n === 0) break;
        pos += await f.pwrite(buf.subarray(0, n), pos);
      }
      await f.fsync();
    } finally {
      await f.close();
    }
  } finally {
    fs.closeSync(from);
    await vol.close();
  }
  return 0;
}

export async function get(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { positionals: ['volfile', 'path', 'local'] });
  const [volfile, src, local] = args.positionals;
  const vol = await Volume.open(volfile);
  try {
    const f = await vol.open(src);
    const to = fs.openSync(local, 'w', (await f.stat()).mode & 0o7777);
    try {
      for (let pos = 0; ; ) {
        const data = await f.pread(CHUNK, pos);
        if (data.length === 0) break;
        fs.writeSync(to, data, 0, data.length, pos);
        pos += data.length;
      }
    } finally {
      fs.closeSync(to);
      await f.close();
    }
  } finally {
    await vol.close();
  }
  return 0;
}
