// A workload child process driven from a test: it gets its arguments as one JSON argument
// (with the stop file it watches for), reports on stdout in JSON lines ({type: 'ready' |
// 'progress' | 'paused' | 'resumed' | 'error' | 'result'}), and ends with its result once the
// stop file appears. Every wait on it is bounded.
import { spawn } from 'child_process';
import * as fs from 'fs';
import { waitFor, within } from './mount';
import { track } from './scratch';

export interface JsonChild<R> {
  /** Waits (bounded) for its 'ready'. */
  ready(): Promise<void>;
  /** Its last 'progress' count. */
  progress(): number;
  /** Between a 'paused' and a 'resumed'. */
  paused(): boolean;
  /** Every 'error' it reported. */
  errors(): string[];
  /** Creates the stop file and waits (bounded) for its result; a child still running then is killed. */
  finish(timeoutMs?: number): Promise<R>;
}

/** Starts `node script JSON({...args, stopFile})`; `what` names it in errors. */
export function startJsonChild<R>(script: string, args: object, stopFile: string, what: string, finishMs = 40_000): JsonChild<R> {
  const child = track(spawn(process.execPath, [script, JSON.stringify({ ...args, stopFile })], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let ready = false;
  let progress = 0;
  let paused = false;
  let result: R | undefined;
  const errors: string[] = [];
  let partial = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      const msg = JSON.parse(l);
      if (msg.type === 'ready') ready = true;
      else if (msg.type === 'progress') progress = msg.n;
      else if (msg.type === 'paused' || msg.type === 'resumed') paused = msg.type === 'paused';
      else if (msg.type === 'error') errors.push(msg.error);
      else if (msg.type === 'result') result = msg;
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  // 'close': after the last of its stdout (the result line may be long).
  const closed = new Promise((r) => child.once('close', r));
  const how = () => `${child.exitCode ?? child.signalCode}; errors:\n${errors.join('\n')}\nstderr:\n${err}`;
  return {
    async ready() {
      await waitFor(() => ready || gone(), 30_000, `${what} to be ready`);
      if (!ready) throw new Error(`${what} exited before it was ready (${how()})`);
    },
    progress: () => progress,
    paused: () => paused,
    errors: () => errors,
    async finish(timeoutMs = finishMs) {
      fs.writeFileSync(stopFile, '');
      await within(closed, timeoutMs);
      if (!gone()) {
        child.kill('SIGKILL');
        throw new Error(`${what} did not finish within ${timeoutMs} ms (killed it); progress ${progress} (${how()})`);
      }
      if (result === undefined) throw new Error(`${what} ended without a result (${how()})`);
      return result;
    },
  };
}
