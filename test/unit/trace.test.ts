// debug/trace: quiet, it passes every fop's answer and error through unchanged; with
// log-history on, it records each traced fop with its result or error code.
import { v4 as uuidv4 } from 'uuid';
import { FopError } from '../../src/core/errors';
import type { Xlator } from '../../src/core/xlator';
import { cleanupGraphs, errCode, startGraph, tempDir } from '../helpers/graphs';

const volfile = (dir: string, traceOptions: string) =>
  `volume p\n type storage/posix\n option directory ${dir}\nend-volume\nvolume t\n type debug/trace\n${traceOptions}subvolumes p\nend-volume\n`;

afterEach(cleanupGraphs);

const history = (t: Xlator) => (t.dump() as { history: string[] }).history;

describe('debug/trace', () => {
  test('quiet: answers and errors pass through unchanged, nothing is recorded', async () => {
    const dir = tempDir();
    const g = await startGraph(dir, 1, volfile(dir, ''));
    const root = g.itable.root;
    const made = await g.top.mkdir(g.frame('mkdir'), { parent: root, name: 'd', inode: g.itable.get(uuidv4()) }, 0o755);
    expect((await g.top.lookup(g.frame('lookup'), { parent: root, name: 'd' })).gfid).toBe(made.gfid);
    const miss = g.top.lookup(g.frame('lookup'), { parent: root, name: 'missing' });
    await expect(miss).rejects.toBeInstanceOf(FopError);
    expect(await errCode(g.top.lookup(g.frame('lookup'), { parent: root, name: 'missing' }))).toBe('ENOENT');
    expect(history(g.top)).toEqual([]);
  });

  test('log-history on: each fop is recorded with its result or its error code', async () => {
    const dir = tempDir();
    const g = await startGraph(dir, 1, volfile(dir, ' option log-history on\n'));
    const root = g.itable.root;
    await g.top.mkdir(g.frame('mkdir'), { parent: root, name: 'd', inode: g.itable.get(uuidv4()) }, 0o755);
    expect(await errCode(g.top.lookup(g.frame('lookup'), { parent: root, name: 'missing' }))).toBe('ENOENT');
    const lines = history(g.top);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/ mkdir\(.*\) => .* in \d+ us$/);
    expect(lines[1]).toMatch(/ lookup\(.*\) => ENOENT in \d+ us$/);
  });
});
