// The GlusterFS-generated volfiles kept in test/fixtures, for the parser and builder tests.
import * as fs from 'fs';
import * as path from 'path';

/** test/fixtures/volfiles-glusterfs in the source tree (tests run from dist/test). */
export const FIXTURES = path.join(path.resolve(__dirname, '../../..'), 'test/fixtures/volfiles-glusterfs');

/** Every *.vol file under `dir`, at any depth, sorted. */
export function volfilesUnder(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? volfilesUnder(path.join(dir, e.name)) : e.name.endsWith('.vol') ? [path.join(dir, e.name)] : []))
    .sort();
}
