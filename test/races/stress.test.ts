// A seeded randomized stress test: a real FUSE mount, K child processes doing random fops
// on shared files (and on private files whose content they model exactly) while the daemon
// switches graphs again and again. A failure message starts with the seed and the command
// that reruns it; the seed is printed at the start too. Bounded in time for CI.
//
// Reproducible given the seed: the children's operations and arguments, the topologies, the
// pauses between switches and the kind of each reload all come from seeded PRNGs. What
// cannot be reproduced is the timing: how the children's operations interleave with each
// other and with the switches (and so which errno a shared operation gets).
import { ChildProcess, execFile, spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { PRIVATE_NAMES, SHARED_DIRS, StressArgs, StressReport, privateDir, sharedRoot } from '../helpers/stress-child';
import { Rng } from '../helpers/rng';
import { POSIX_VOLFILE, TestMount, settledStatedump, startMount, statedump, waitFor, within, xlstack } from '../helpers/mount';
import { cleanupScratch, track } from '../helpers/scratch';

const CHILD = path.join(__dirname, '../helpers/stress-child.js');
const WRITE_BEHIND = path.join(__dirname, '../../xlators/performance/write-behind.js');

const K = 4;
const LOAD_MS = 8_000;
/** An fop pending this long is a hang. */
const HANG_MS = 8_000;
/** A child reports and kills itself after this; the test kills it a little later. */
const CHILD_DEADLINE_MS = LOAD_MS + 15_000;
const CHILD_KILL_MS = CHILD_DEADLINE_MS + 5_000;
const SWITCH_TIMEOUT_MS = 10_000;
const SETTLE_TIMEOUT_MS = 10_000;
const MIN_OPS_PER_CHILD = 200;
const MIN_SWITCHES = 10;
/** The mount's attr_timeout and entry_timeout (1 s), and a little more. */
const ATTR_TIMEOUT_MS = 1_100;

const SEED = seedFromEnv();
const ONLY = process.env.XLSTACK_STRESS_TOPOLOGIES;
const RERUN = `${ONLY ? `XLSTACK_STRESS_TOPOLOGIES=${ONLY} ` : ''}XLSTACK_STRESS_SEED=${SEED} npx jest races/stress`;

function seedFromEnv(): number {
  const s = process.env.XLSTACK_STRESS_SEED;
  if (s === undefined || s === '') return crypto.randomInt(0, 2 ** 32);
  if (!/^\d+$/.test(s) || Number(s) >= 2 ** 32) throw new Error(`XLSTACK_STRESS_SEED must be an integer in [0, 2^32): ${s}`);
  return Number(s);
}

// ---------------------------------------------------------------------------------------
// Topologies

interface Topology {
  readonly name: string;
  /** Its top is debug/trace: `log-history` can be toggled in place. */
  readonly traceTop: boolean;
  text(history: boolean): string;
}

const trace = (sub: string, history: boolean) =>
  `volume top\n    type debug/trace\n${history ? '    option log-history on\n' : ''}    subvolumes ${sub}\nend-volume\n`;
const volume = (name: string, type: string, sub: string, options: string[] = []) =>
  `volume ${name}\n    type ${type}\n${options.map((o) => `    option ${o}\n`).join('')}    subvolumes ${sub}\nend-volume\n`;

/**
 * The three of test/integration/switch.test.ts, one that delays a few fops, and write-behind
 * once it exists. XLSTACK_STRESS_TOPOLOGIES=name,name... keeps only those (to narrow a failure down).
 */
function topologies(): Topology[] {
  const all: Topology[] = [
    { name: 'trace', traceTop: true, text: (h) => `${POSIX_VOLFILE}\n${trace('test-posix', h)}` },
    { name: 'delay-gen', traceTop: false, text: () => `${POSIX_VOLFILE}\n${volume('top', 'debug/delay-gen', 'test-posix')}` },
    { name: 'delay-gen+trace', traceTop: true, text: (h) => `${POSIX_VOLFILE}\n${volume('mid', 'debug/delay-gen', 'test-posix')}${trace('mid', h)}` },
    {
      name: 'jitter+trace',
      traceTop: true,
      text: (h) =>
        `${POSIX_VOLFILE}\n${volume('jitter', 'debug/delay-gen', 'test-posix', ['enable read,write,flush,rename,lookup,open', 'delay-percentage 5%', 'delay-duration 2000'])}${trace('jitter', h)}`,
    },
  ];
  if (fs.existsSync(WRITE_BEHIND)) {
    all.push({
      name: 'write-behind+trace',
      traceTop: true,
      text: (h) => `${POSIX_VOLFILE}\n${volume('wb', 'performance/write-behind', 'test-posix', ['flush-after 0.05'])}${trace('wb', h)}`,
    });
  }
  const only = ONLY?.split(',');
  const chosen = only ? all.filter((t) => only.includes(t.name)) : all;
  if (chosen.length < 2) throw new Error(`XLSTACK_STRESS_TOPOLOGIES must name at least two of ${all.map((t) => t.name)}`);
  return chosen;
}

// ---------------------------------------------------------------------------------------
// The children

interface Child {
  readonly index: number;
  readonly proc: ChildProcess;
  readonly exited: Promise<void>;
  stdout: string;
  stderr: string;
}

function startChild(root: string, index: number): Child {
  const args: StressArgs = { root, index, seed: (SEED + index) >>> 0, durationMs: LOAD_MS, hangMs: HANG_MS, deadlineMs: CHILD_DEADLINE_MS };
  const proc = track(spawn(process.execPath, [CHILD, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const child: Child = { index, proc, exited: new Promise((r) => proc.once('exit', () => r())), stdout: '', stderr: '' };
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (child.stdout += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (child.stderr += d));
  return child;
}

const running = (c: Child) => c.proc.exitCode === null && c.proc.signalCode === null;

/** The child printed its report (it may still be stuck in the kernel after a hang: see below). */
const reported = (c: Child) => c.stdout.includes('\n');
const settledChild = (c: Child) => !running(c) || reported(c);

/**
 * Waits (bounded) for a child's report, kills it by PID if it overruns, and parses the report.
 * A child killed while a FUSE request of its is unanswered cannot die before the mount goes
 * (the kernel waits for the answer uninterruptibly): it is left to the unmount.
 */
async function collect(c: Child, problems: string[]): Promise<StressReport | undefined> {
  await waitFor(() => settledChild(c), CHILD_KILL_MS, `child ${c.index}`).catch(() => undefined);
  if (!reported(c) && running(c)) {
    problems.push(`child ${c.index} (pid ${c.proc.pid}) did not report within ${CHILD_KILL_MS} ms: killed`);
    c.proc.kill('SIGKILL');
  }
  await within(c.exited, 2_000);
  if (running(c)) problems.push(`child ${c.index} (pid ${c.proc.pid}) cannot exit: stuck in a FUSE request (left to the unmount)`);
  const line = c.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as StressReport;
  } catch {
    problems.push(`child ${c.index} exited (code ${c.proc.exitCode}, signal ${c.proc.signalCode}) without a report; stderr:\n${c.stderr}`);
    return undefined;
  }
}

function reportProblems(r: StressReport, problems: string[]): void {
  const who = `child ${r.index} (seed ${r.seed})`;
  for (const u of r.unacceptable) problems.push(`${who}: unacceptable ${u.errno} from ${u.op} ${u.path} at ${u.at} (+${u.t} ms)${u.detail ? `: ${u.detail}` : ''}`);
  if (r.unacceptableCount > r.unacceptable.length) problems.push(`${who}: ... ${r.unacceptableCount - r.unacceptable.length} more unacceptable errors`);
  for (const m of r.mismatches) problems.push(`${who}: mismatch in ${m.op} ${m.path} at ${m.at} (+${m.t} ms): ${m.detail}`);
  if (r.mismatchCount > r.mismatches.length) problems.push(`${who}: ... ${r.mismatchCount - r.mismatches.length} more mismatches`);
  if (!r.finished) problems.push(`${who}: cut short by its watchdog`);
  if (r.ops <= MIN_OPS_PER_CHILD) problems.push(`${who}: only ${r.ops} ops`);
}

// ---------------------------------------------------------------------------------------
// Switching graphs

interface SwitchState {
  topo: number;
  history: boolean;
  graph: number;
  switches: number;
  reconfigs: number;
  badReloads: number;
}

const count = (m: TestMount, re: RegExp) => (m.log().match(re) ?? []).length;
const SWITCHED = /switched to graph/g;
const FAILED = /reload of .* failed/g;

function writeVolfile(m: TestMount, text: string): void {
  fs.writeFileSync(m.volfile, text.replace(/@BACKING@/g, m.backing));
}

/** Writes another topology and sends SIGHUP; waits (bounded) for the switch. */
async function switchTopology(m: TestMount, topos: Topology[], s: SwitchState, rng: Rng): Promise<void> {
  const next = (s.topo + 1 + rng.int(topos.length - 1)) % topos.length;
  const history = rng.chance(0.3);
  const [switched, failed] = [count(m, SWITCHED), count(m, FAILED)];
  writeVolfile(m, topos[next].text(history));
  process.kill(m.pid, 'SIGHUP');
  const what = `switch ${s.switches + 1} (graph ${s.graph} -> ${s.graph + 1}, ${topos[s.topo].name} -> ${topos[next].name})`;
  await waitFor(() => count(m, SWITCHED) > switched || count(m, FAILED) > failed, SWITCH_TIMEOUT_MS, what);
  if (count(m, FAILED) > failed) throw new Error(`${what} failed`);
  if (!m.log().includes(`switched to graph ${s.graph + 1} `)) throw new Error(`${what}: the log does not say "switched to graph ${s.graph + 1}"`);
  Object.assign(s, { topo: next, history, graph: s.graph + 1, switches: s.switches + 1 });
}

/** Toggles log-history in the debug/trace top by `xlstack reload`: reconfigured in place. */
async function optionsReload(m: TestMount, topos: Topology[], s: SwitchState): Promise<void> {
  writeVolfile(m, topos[s.topo].text(!s.history));
  const r = await xlstack(['reload', m.mountpoint], { timeoutMs: SWITCH_TIMEOUT_MS });
  const want = `reconfigured: graph ${s.graph} (options of top)\n`;
  if (r.code !== 0 || r.stdout !== want) throw new Error(`options-only reload: got (${r.code}) ${JSON.stringify(r.stdout + r.stderr)}, want ${JSON.stringify(want)}`);
  s.history = !s.history;
  s.reconfigs++;
}

/** A volfile that does not check, by SIGHUP: an error in the log and nothing changes. */
async function badReload(m: TestMount, topos: Topology[], s: SwitchState): Promise<void> {
  const good = topos[s.topo].text(s.history);
  const failed = count(m, FAILED);
  writeVolfile(m, `${good}\nvolume broken\n    type debug/trace\n    subvolumes nowhere\nend-volume\n`);
  process.kill(m.pid, 'SIGHUP');
  await waitFor(() => count(m, FAILED) > failed, SWITCH_TIMEOUT_MS, 'the bad volfile to be refused');
  const log = m.log();
  if (!log.includes(`unknown subvolume 'nowhere'`) || !log.includes(`still serving graph ${s.graph}`)) throw new Error(`the bad volfile's error does not say what it should:\n${log.slice(-2000)}`);
  const d = await statedump(m);
  if (d.activeGraph !== s.graph) throw new Error(`after the bad volfile: active graph ${d.activeGraph}, want ${s.graph}`);
  writeVolfile(m, good);
  s.badReloads++;
}

/** Switches (and now and then reconfigures) with seeded pauses until `done()`. */
async function driveSwitches(m: TestMount, topos: Topology[], s: SwitchState, rng: Rng, done: () => boolean): Promise<void> {
  const badAfter = 2 + rng.int(6);
  while (!done()) {
    await new Promise((r) => setTimeout(r, 50 + rng.int(300)));
    if (done()) break;
    const kind = rng.next();
    if (s.badReloads === 0 && s.switches >= badAfter) await badReload(m, topos, s);
    else if (kind < 0.15 && topos[s.topo].traceTop) await optionsReload(m, topos, s);
    else await switchTopology(m, topos, s, rng);
  }
}

// ---------------------------------------------------------------------------------------
// The end state

/** A recursive listing (path, type, permissions, size of files, symlink target) by `find`, in a child process. */
function listing(root: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const args = [root, '-mindepth', '1', '(', '-path', path.join(root, '.xlstack'), '-prune', ')', '-o', '-printf', '%P\t%y\t%m\t%s\t%l\n'];
    execFile('find', args, { timeout: 15_000, maxBuffer: 64 << 20 }, (err, stdout) => {
      if (err) return reject(new Error(`find ${root}: ${err.message}`));
      const lines = stdout.split('\n').filter((l) => l !== '');
      resolve(lines.map((l) => l.split('\t')).map(([p, y, mode, size, target]) => [p, y, mode, y === 'f' ? size : '', target].join('\t')).sort());
    });
  });
}

function diffListings(mount: string[], backing: string[]): string[] {
  const [a, b] = [new Set(mount), new Set(backing)];
  return [...mount.filter((l) => !b.has(l)).map((l) => `only on the mount: ${l}`), ...backing.filter((l) => !a.has(l)).map((l) => `only in the backing directory: ${l}`)];
}

/** What the children say their private files hold must be what reached the backing directory. */
function checkPrivateOnDisk(backing: string, reports: StressReport[], problems: string[]): void {
  for (const r of reports) {
    for (const name of PRIVATE_NAMES) {
      const file = path.join(privateDir(backing, r.index), name);
      const want = r.privateFinal[name];
      const got = fs.existsSync(file) ? fs.readFileSync(file) : undefined;
      const gotSum = got && { size: got.length, sha1: crypto.createHash('sha1').update(got).digest('hex') };
      if (JSON.stringify(gotSum) !== JSON.stringify(want)) problems.push(`child ${r.index}: backing ${name} is ${JSON.stringify(gotSum)}, the model says ${JSON.stringify(want)}`);
    }
  }
}

/** How often each errno was accepted, over all children: the concurrency the run exercised. */
function acceptedErrnos(reports: StressReport[]): string {
  const by: Record<string, number> = {};
  for (const r of reports) for (const [k, n] of Object.entries(r.errnos)) by[k.split(':')[1]] = (by[k.split(':')[1]] ?? 0) + n;
  return Object.entries(by).sort((a, b) => b[1] - a[1]).map(([e, n]) => `${e} ${n}`).join(', ');
}

/** The daemon's log lines from a second before the first problem a child saw (which switch came just before?). */
function logAround(log: string, reports: StressReport[]): string[] {
  const times = reports.flatMap((r) => [...r.unacceptable, ...r.mismatches]).map((p) => Date.parse(p.at));
  if (times.length === 0) return [];
  const first = Math.min(...times);
  return log.split('\n').filter((l) => {
    const t = Date.parse(l.slice(0, 24));
    return t >= first - 1000 && t <= first + 100;
  });
}

/** ERROR lines of the daemon's log, but for the first `expected` refused reloads (the deliberate bad volfile). */
function unexpectedErrors(log: string, expected: number): string[] {
  const errors = log.split('\n').filter((l) => /^\S+ ERROR /.test(l));
  const deliberate = errors.filter((l) => /ERROR reload of .* failed; still serving graph/.test(l)).slice(0, expected);
  return errors.filter((l) => !deliberate.includes(l));
}

// ---------------------------------------------------------------------------------------
// The test

afterAll(cleanupScratch);

interface Outcome {
  readonly problems: string[];
  readonly summary: string;
  readonly log: string;
  /** Daemon log lines just before the first problem a child saw. */
  readonly around: string[];
}

async function stress(): Promise<Outcome> {
  const t0 = Date.now();
  const problems: string[] = [];
  const rng = new Rng(SEED ^ 0x5bd1e995);
  const topos = topologies();
  const first = rng.int(topos.length);
  const m = await startMount({ volfile: topos[first].text(false) });
  for (const d of SHARED_DIRS) fs.mkdirSync(path.join(sharedRoot(m.mountpoint), d), { recursive: true });
  for (let i = 0; i < K; i++) fs.mkdirSync(privateDir(m.mountpoint, i), { recursive: true });

  let [unmounting, crash] = [false, ''];
  void m.exited.then((code) => (crash = unmounting ? '' : `the daemon exited (code ${code}) before the unmount`));
  const kids = Array.from({ length: K }, (_, i) => startChild(m.mountpoint, i));
  const s: SwitchState = { topo: first, history: false, graph: 1, switches: 0, reconfigs: 0, badReloads: 0 };
  try {
    const end = Date.now() + CHILD_DEADLINE_MS;
    await driveSwitches(m, topos, s, rng, () => kids.every(settledChild) || Date.now() > end);
  } catch (e) {
    problems.push(`switching stopped: ${(e as Error).message}`);
  }
  const reports = (await Promise.all(kids.map((c) => collect(c, problems)))).filter((r): r is StressReport => r !== undefined);
  for (const r of reports) reportProblems(r, problems);
  if (s.switches < MIN_SWITCHES) problems.push(`only ${s.switches} switches (want >= ${MIN_SWITCHES})`);
  if (s.badReloads !== 1) problems.push(`the bad volfile was not tried`);

  if (crash) problems.push(crash);
  const d = await settledStatedump(m, SETTLE_TIMEOUT_MS).catch((e: Error) => void problems.push(e.message));
  if (d && (d.graphs.length !== 1 || d.activeGraph !== s.graph)) problems.push(`after the load: active graph ${d.activeGraph} (want ${s.graph}), live graphs [${d.graphs.map((g) => g.id)}] (want [${s.graph}]), ${d.baseFds.length} open handles`);
  await new Promise((r) => setTimeout(r, ATTR_TIMEOUT_MS)); // let the kernel's cached attributes expire
  const onMount = await listing(m.mountpoint).catch((e: Error) => void problems.push(e.message));

  unmounting = true;
  const r = await xlstack(['unmount', m.mountpoint], { timeoutMs: 20_000 });
  if (r.code !== 0 || (await within(m.exited, 20_000)) === undefined) problems.push(`xlstack unmount: (${r.code}) ${r.stderr}`);
  else if (onMount) {
    problems.push(...diffListings(onMount, await listing(m.backing)).slice(0, 30));
    checkPrivateOnDisk(m.backing, reports, problems);
  }
  const log = m.log();
  await m.unmount();
  problems.push(...unexpectedErrors(log, s.badReloads).map((l) => `daemon log: ${l}`));

  const ops = reports.reduce((n, x) => n + x.ops, 0);
  const secs = reports.reduce((n, x) => Math.max(n, x.elapsedMs), 0) / 1000;
  const summary =
    `seed ${SEED}: ${K} children, ${ops} ops (${Math.round(ops / secs)} ops/s; per child ${reports.map((x) => x.ops).join(', ')}), ` +
    `${s.switches} switches, ${s.reconfigs} options-only reloads, ${s.badReloads} bad volfile, topologies [${topos.map((t) => t.name)}], ` +
    `${onMount?.length} names at the end, accepted errnos: ${acceptedErrnos(reports)}; ${((Date.now() - t0) / 1000).toFixed(1)} s`;
  return { problems, summary, log, around: logAround(log, reports) };
}

test('seeded random fops from 4 processes on shared and private files while graphs switch: no bad errno, no lost data, old graphs cleaned up', async () => {
  process.stdout.write(`xlstack stress: seed ${SEED} (rerun: ${RERUN})\n`);
  let outcome: Outcome;
  try {
    outcome = await stress();
  } catch (e) {
    throw new Error(`seed ${SEED}: rerun with ${RERUN}\n${(e as Error).stack ?? e}`);
  }
  process.stdout.write(`xlstack stress: ${outcome.summary}\n`);
  if (outcome.problems.length === 0) return;
  const logFile = path.join(os.tmpdir(), `xlstack-stress-${SEED}.log`);
  fs.writeFileSync(logFile, outcome.log);
  const notable = outcome.log.split('\n').filter((l) => / (ERROR|WARN) /.test(l));
  throw new Error(
    `seed ${SEED}: rerun with ${RERUN}\n${outcome.summary}\n\n${outcome.problems.join('\n')}\n\n` +
      `daemon log (all of it in ${logFile}); ERROR/WARN lines:\n${notable.slice(0, 40).join('\n')}\n\n` +
      `daemon log from 1 s before the first problem a child saw:\n${outcome.around.slice(-40).join('\n')}`,
  );
}, 120_000);
