// Runs the filesystem workload of workload-child.ts in a child process and compares results.
//
// Integration tests run the same steps on an xlstack FUSE mount and on a plain directory and
// expect compareResults(...) to be []. The steps run in a child process because a synchronous
// fs call on a FUSE mount from the process serving it deadlocks, and so that a hung step can
// be killed: every run is bounded by timeoutMs.

import { spawn } from 'child_process';
import * as path from 'path';
import {
  DEFAULT_STEPS,
  NONROOT_STEPS,
  PREPARE_NONROOT_STEP,
  STEPS,
  type ChildArgs,
  type Json,
  type StepValue,
} from './workload-child';

export { DEFAULT_STEPS, NONROOT_STEPS, PREPARE_NONROOT_STEP, type Json, type StepValue };

export interface StepResult {
  step: string;
  /** What the step observed; { error: 'ECODE' } when the step as a whole failed. */
  result: StepValue;
}

export interface WorkloadOptions {
  /** Run the steps as this uid (the parent must be root); groups are cleared. */
  uid?: number;
  gid?: number;
  /** Kill the child and reject after this long; default 60 s. */
  timeoutMs?: number;
  /** Step names to run, in order; default DEFAULT_STEPS. */
  steps?: readonly string[];
}

/** Rejection of runWorkload: carries what a test needs to explain a failure. */
export class WorkloadError extends Error {
  constructor(
    message: string,
    readonly pid: number | undefined,
    readonly stderr: string,
    readonly completed: StepResult[],
  ) {
    super(message);
    this.name = 'WorkloadError';
  }
}

const CHILD_PATH = path.join(__dirname, 'workload-child.js');
const DEFAULT_TIMEOUT_MS = 60_000;
/** After SIGKILL, how long to wait for the pipes to close (a child stuck on a dead FUSE mount may never exit). */
const KILL_GRACE_MS = 2_000;
const MAX_STDERR = 64 * 1024;

type ChildLine =
  | { type: 'ready' }
  | { type: 'start'; step: string }
  | { type: 'result'; step: string; result: StepValue }
  | { type: 'done' };

export function runWorkload(root: string, opts: WorkloadOptions = {}): Promise<StepResult[]> {
  const steps = [...(opts.steps ?? DEFAULT_STEPS)];
  const unknown = steps.filter((s) => !(s in STEPS));
  if (unknown.length > 0) return Promise.reject(new Error(`runWorkload: unknown steps: ${unknown.join(', ')}`));
  const args: ChildArgs = { root: path.resolve(root), uid: opts.uid, gid: opts.gid, steps };
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  return new Promise<StepResult[]>((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD_PATH, JSON.stringify(args)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let settled = false;
    let killTimer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < MAX_STDERR) stderr += chunk;
    });

    const finish = (err: Error | null, results?: StepResult[]): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      if (err) {
        // a child that could not be reaped must not keep the test process alive
        child.stdout.destroy();
        child.stderr.destroy();
        child.unref();
        reject(err);
      } else {
        resolve(results ?? []);
      }
    };
    const fail = (what: string): void => {
      const { completed, current } = parseLines(stdout);
      const done = completed.map((r) => r.step).join(', ') || 'none';
      const at = current === undefined ? '' : ` while running step "${current}"`;
      finish(
        new WorkloadError(
          `workload child (pid ${child.pid}) ${what}${at}; completed steps: ${done}; stderr: ${stderr.trim() || '(empty)'}`,
          child.pid,
          stderr,
          completed,
        ),
      );
    };

    const timer = setTimeout(() => {
      child.kill('SIGKILL'); // this child's PID only
      // report once it has gone (stderr complete), but never wait unboundedly for that
      child.once('close', () => fail(`timed out after ${timeoutMs} ms and was killed`));
      killTimer = setTimeout(
        () => fail(`timed out after ${timeoutMs} ms and did not exit within ${KILL_GRACE_MS} ms of SIGKILL`),
        KILL_GRACE_MS,
      );
    }, timeoutMs);

    child.on('error', (err) => fail(`could not be run: ${err.message}`));
    child.on('close', (exitCode, signal) => {
      if (settled || killTimer !== undefined) return; // the timeout path reports
      const { completed, done } = parseLines(stdout);
      if (exitCode === 0 && done) finish(null, completed);
      else fail(`exited with ${signal ?? `code ${exitCode}`}${done ? '' : ' before finishing'}`);
    });
  });
}

function parseLines(stdout: string): { completed: StepResult[]; current?: string; done: boolean } {
  const completed: StepResult[] = [];
  let current: string | undefined;
  let done = false;
  for (const text of stdout.split('\n')) {
    if (text.trim() === '') continue;
    let line: ChildLine;
    try {
      line = JSON.parse(text) as ChildLine;
    } catch {
      continue; // a line cut by the kill
    }
    if (line.type === 'start') current = line.step;
    else if (line.type === 'result') {
      completed.push({ step: line.step, result: line.result });
      current = undefined;
    } else if (line.type === 'done') done = true;
  }
  return { completed, current, done };
}

/**
 * Runs PREPARE_NONROOT_STEP as root, then NONROOT_STEPS as uid/gid; returns both sets of
 * results (prepare first). root and its parents must be searchable by uid.
 */
export async function runNonRootWorkload(
  root: string,
  opts: { uid: number; gid: number; timeoutMs?: number },
): Promise<StepResult[]> {
  const prepared = await runWorkload(root, { steps: [PREPARE_NONROOT_STEP], timeoutMs: opts.timeoutMs });
  const results = await runWorkload(root, { uid: opts.uid, gid: opts.gid, steps: NONROOT_STEPS, timeoutMs: opts.timeoutMs });
  return [...prepared, ...results];
}

/** The result of one step, for assertions in tests; throws if the step is not there. */
export function resultOf(results: StepResult[], step: string): StepValue {
  const found = results.find((r) => r.step === step);
  if (!found) throw new Error(`no result for step "${step}" (have: ${results.map((r) => r.step).join(', ')})`);
  return found.result;
}

// ---------------------------------------------------------------------------------------
// Comparison

const MAX_SHOWN = 300;
const MAX_ARRAY_DIFFS = 10;

function show(value: Json | undefined): string {
  if (value === undefined) return '(absent)';
  const text = JSON.stringify(value);
  return text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN)}…` : text;
}

const isObject = (v: Json | undefined): v is { [key: string]: Json } =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Human-readable differences between two runs, e.g.
 *   'hardlinks.sameIno: fuse=false plain=true'
 * Empty when equal, so a test can expect(compareResults(a, b)).toEqual([]).
 */
export function compareResults(a: StepResult[], b: StepResult[], labels: [string, string] = ['a', 'b']): string[] {
  const [la, lb] = labels;
  const diffs: string[] = [];
  const namesA = a.map((r) => r.step);
  const namesB = b.map((r) => r.step);
  if (JSON.stringify(namesA) !== JSON.stringify(namesB)) {
    diffs.push(`step lists differ: ${la}=${show(namesA)} ${lb}=${show(namesB)}`);
  }
  const byNameB = new Map(b.map((r) => [r.step, r.result]));
  for (const { step, result } of a) {
    if (byNameB.has(step)) diffValues(step, result, byNameB.get(step), diffs, labels);
  }
  return diffs;
}

function diffValues(at: string, x: Json | undefined, y: Json | undefined, out: string[], labels: [string, string]): void {
  const [la, lb] = labels;
  if (isObject(x) && isObject(y)) {
    const keys = [...new Set([...Object.keys(x), ...Object.keys(y)])].sort();
    for (const key of keys) diffValues(`${at}.${key}`, x[key], y[key], out, labels);
  } else if (Array.isArray(x) && Array.isArray(y)) {
    diffArrays(at, x, y, out, labels);
  } else if (JSON.stringify(x) !== JSON.stringify(y)) {
    out.push(`${at}: ${la}=${show(x)} ${lb}=${show(y)}`);
  }
}

function diffArrays(at: string, x: Json[], y: Json[], out: string[], labels: [string, string]): void {
  const [la, lb] = labels;
  if (x.length === y.length) {
    let shown = 0;
    for (let i = 0; i < x.length && shown < MAX_ARRAY_DIFFS; i++) {
      const before = out.length;
      diffValues(`${at}[${i}]`, x[i], y[i], out, labels);
      if (out.length > before) shown++;
    }
    return;
  }
  // different lengths (e.g. a listing): say which elements are only on one side
  const keyed = (arr: Json[]): Set<string> => new Set(arr.map((v) => JSON.stringify(v)));
  const inX = keyed(x);
  const inY = keyed(y);
  const onlyX = [...inX].filter((k) => !inY.has(k)).slice(0, MAX_ARRAY_DIFFS);
  const onlyY = [...inY].filter((k) => !inX.has(k)).slice(0, MAX_ARRAY_DIFFS);
  out.push(`${at}: length ${la}=${x.length} ${lb}=${y.length}; only in ${la}: [${onlyX.join(', ')}]; only in ${lb}: [${onlyY.join(', ')}]`);
}
