// A rename out of a directory whose copy on one child is behind (it missed a change there and
// is not healed yet): the name it moves may stand for another object on that child, so the
// directory it moves to can come out different there too, though the rename worked on every
// copy. That directory's changelog must say so, or no heal ever looks at it (found by
// test/integration/replicate.test.ts with a brick back from an outage, seed 785705).
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { cleanupGraphs, newBridge, writeFile } from '../helpers/graphs';
import { changelogOf, clear, indexed, startReplica, stopReplicas } from '../helpers/replica';

afterEach(async () => {
  await stopReplicas();
  await cleanupGraphs();
});

const gfidOf = (file: string) => execFileSync('getfattr', ['-h', '--absolute-names', '-n', 'trusted.gfid', '-e', 'hex', '--only-values', file]).toString('hex');

/** Every name under a brick (no .xlstack) with the GFID it stands for. */
function names(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const n of fs.readdirSync(path.join(dir, rel)).sort()) {
      if (rel === '' && n === '.xlstack') continue;
      const r = path.join(rel, n);
      out[r] = gfidOf(path.join(dir, r));
      if (fs.lstatSync(path.join(dir, r)).isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

test('a rename from a directory a child is behind in, to one it is not: the target directory is recorded as behind there too, and heal makes the copies alike', async () => {
  // No background heal: the window between the child's return and the heal of /b stays open.
  const r = await startReplica({ n: 2, options: '  option self-heal-daemon off\n  option background-self-heal-count 0\n' });
  const b = newBridge(r.graph);
  await b.mkdir('/a', 0o755);
  await b.mkdir('/b', 0o755);
  await writeFile(b, '/b/one', 'object one');
  await writeFile(b, '/b/two', 'object two, longer');
  await b.link('/b/two', '/b/two-link');
  await r.afr.txns.settleAll();
  r.switches[1].down();
  // client-1 misses this: there /b/two-link still names object two.
  await b.rename('/b/one', '/b/two-link');
  r.switches[1].restore();
  await r.afr.txns.settleAll();
  expect(changelogOf(r.dirs[0], 'b')['pending.client-1'][2]).toBeGreaterThan(0);
  expect(clear(changelogOf(r.dirs[0], 'a'))).toBe(true);
  // Works on both copies: object one goes to /a/moved on client-0, object two on client-1.
  await b.rename('/b/two-link', '/a/moved');
  await r.afr.txns.settleAll();
  expect(gfidOf(path.join(r.dirs[1], 'a/moved'))).not.toBe(gfidOf(path.join(r.dirs[0], 'a/moved')));
  // ...so /a's copy on client-1 is behind, and its changelog says so.
  expect(changelogOf(r.dirs[0], 'a')['pending.client-1'][2]).toBeGreaterThan(0);
  const pass = await r.afr.heal.pass();
  expect(pass.remaining).toEqual([]);
  expect(names(r.dirs[1])).toEqual(names(r.dirs[0]));
  expect(fs.readFileSync(path.join(r.dirs[1], 'a/moved'), 'utf8')).toBe('object one');
  for (const d of r.dirs) {
    for (const rel of ['', 'a', 'b', 'a/moved', 'b/two']) expect([rel, clear(changelogOf(d, rel))]).toEqual([rel, true]);
    expect(indexed(d)).toEqual([]);
  }
});
