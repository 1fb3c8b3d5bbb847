import * as fs from 'fs';
import * as net from 'net';

/** A request to a running daemon, and its answer, as one line of JSON each. */
export interface ControlRequest {
  readonly cmd: string;
}

export type ControlReply = { ok: true; result?: unknown } | { ok: false; error: string };

export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

/** Serves the control socket of a mount: `xlstack unmount/statedump/reload` talk to it. */
export async function serveControl(sockPath: string, handler: ControlHandler): Promise<net.Server> {
  fs.rmSync(sockPath, { force: true });
  const server = net.createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (chunk) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > 65536) sock.destroy();
        return;
      }
      const line = buf.slice(0, nl);
      buf = '';
      void answer(line, handler).then((reply) => sock.end(JSON.stringify(reply) + '\n'));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sockPath, () => resolve());
  });
  fs.chmodSync(sockPath, 0o600);
  return server;
}

async function answer(line: string, handler: ControlHandler): Promise<ControlReply> {
  try {
    const req = JSON.parse(line) as ControlRequest;
    if (typeof req?.cmd !== 'string') return { ok: false, error: 'no command' };
    return { ok: true, result: await handler(req) };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

export class NoDaemonError extends Error {}

/** Sends one request to the daemon behind `sockPath` and waits, at most `timeoutMs`, for its answer. */
export function callControl(sockPath: string, req: ControlRequest, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(sockPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from the daemon within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d) => (buf += d));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? new NoDaemonError(`no xlstack daemon answers on ${sockPath}`) : e);
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        const reply = JSON.parse(buf) as ControlReply;
        if (reply.ok) resolve(reply.result);
        else reject(new Error(reply.error));
      } catch {
        reject(new Error('the daemon closed the control connection without an answer'));
      }
    });
  });
}
