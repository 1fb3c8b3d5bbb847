// In-process bricks and clients for protocol tests: a brick graph (its volfile as given) and
// client graphs (protocol/client, optionally with injected reconnection waits) in this
// process, every one stopped by stopNetGraphs; a recording TCP proxy to see what travels.
import * as net from 'net';
import { filter, firstValueFrom, throwError, timeout } from 'rxjs';
import { buildGraph } from '../../src/core/builder';
import type { Graph, TopStatus } from '../../src/core/graph';
import { Logger } from '../../src/core/log';
import { Registry, TranslatorDef, defineTranslator } from '../../src/core/registry';
import { parseVolfile } from '../../src/core/volfile';
import clientDef, { Client, ConnectionDeps } from '../../xlators/protocol/client';
import { clientLogin } from './brick';
import { within } from './graphs';

export interface NetGraph {
  readonly graph: Graph;
  readonly logs: string[];
  /** Every status the graph's top reported, from 'unknown' on. */
  readonly statuses: TopStatus[];
  /** What start() returned. */
  readonly started: TopStatus;
  log(): string;
}

const clients: Graph[] = [];
const bricks: Graph[] = [];
const closers: (() => void)[] = [];
let nextId = 100;

/** A registry whose protocol/client gets `deps` (its backoff, its waits). */
export function clientRegistry(deps: ConnectionDeps): Registry {
  const r = new Registry();
  r.register(defineTranslator({ ...clientDef, create: (init) => new Client(init, deps) }) as unknown as TranslatorDef);
  return r;
}

async function start(text: string, list: Graph[], registry = new Registry()): Promise<NetGraph> {
  const logs: string[] = [];
  const graph = buildGraph(parseVolfile(text, 'net-test.vol'), { id: nextId++, registry, log: Logger.create('debug', (l) => logs.push(l)) });
  list.push(graph);
  const statuses: TopStatus[] = [];
  graph.status$.subscribe((s) => statuses.push(s));
  const started = await within(graph.start(5000), 10_000);
  return { graph, logs, statuses, started, log: () => logs.join('\n') };
}

/** Starts a brick graph (it must come up). */
export async function startBrickGraph(text: string, registry?: Registry): Promise<NetGraph> {
  const b = await start(text, bricks, registry);
  if (b.started !== 'up') throw new Error(`the brick did not come up:\n${b.log()}`);
  return b;
}

/** Builds a brick graph whose start must fail; its error message. */
export async function brickStartError(text: string): Promise<{ message: string; logs: string }> {
  const logs: string[] = [];
  const graph = buildGraph(parseVolfile(text, 'net-test.vol'), { id: nextId++, registry: new Registry(), log: Logger.create('debug', (l) => logs.push(l)) });
  try {
    await within(graph.start(5000), 10_000);
  } catch (e) {
    return { message: (e as Error).message, logs: logs.join('\n') };
  }
  bricks.push(graph);
  throw new Error('the brick started');
}

export interface ClientGraphOptions {
  readonly volume?: string;
  /** Options replacing the test login ('' for none). */
  readonly login?: string;
  readonly extra?: string;
  readonly ping?: number;
  readonly frame?: number;
  readonly deps?: ConnectionDeps;
  /** Volumes above `remote`. */
  readonly above?: string;
}

export const clientText = (port: number, o: ClientGraphOptions = {}) => `volume remote
    type protocol/client
    option remote-port ${port}
    option remote-subvolume ${o.volume ?? 'brick-posix'}
${o.login ?? clientLogin()}${o.extra ?? ''}    option ping-timeout ${o.ping ?? 2}
    option frame-timeout ${o.frame ?? 10}
end-volume
${o.above ?? ''}`;

/** Starts a client graph (up or down: check `started`). */
export function startClientGraph(port: number, o: ClientGraphOptions = {}): Promise<NetGraph> {
  return start(clientText(port, o), clients, o.deps ? clientRegistry(o.deps) : undefined);
}

/** Resolves when the graph's top reports `want` (at once if it already does). */
export function status(g: Graph, want: TopStatus, ms = 5000): Promise<TopStatus> {
  return firstValueFrom(
    g.status$.pipe(
      filter((s) => s === want),
      timeout({ first: ms, with: () => throwError(() => new Error(`graph ${g.id} did not report '${want}' within ${ms} ms (it says '${g.status$.value}')`)) }),
    ),
  );
}

/** A TCP proxy to `port` that keeps every byte either way. */
export async function recordingProxy(port: number): Promise<{ port: number; bytes: () => Buffer }> {
  const chunks: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((a) => {
    const b = net.connect({ host: '127.0.0.1', port });
    for (const s of [a, b]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => (a.destroy(), b.destroy()));
    }
    a.on('data', (d: Buffer) => (chunks.push(d), b.write(d)));
    b.on('data', (d: Buffer) => (chunks.push(d), a.write(d)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, bytes: () => Buffer.concat(chunks) };
}

/** For afterEach: a function to run at cleanup (fake servers, sockets). */
export function atCleanup(fn: () => void): void {
  closers.push(fn);
}

/** For afterEach: clients first (they say goodbye), then bricks, then everything else. */
/** Stops every graph started here (or only `some` of the clients). */
export async function stopNetGraphs(some?: Graph[]): Promise<void> {
  if (some) {
    for (const g of some) {
      clients.splice(clients.indexOf(g), 1);
      await within(g.stop(5000), 10_000).catch(() => undefined);
    }
    return;
  }
  for (const g of clients.splice(0)) await within(g.stop(5000), 10_000).catch(() => undefined);
  for (const g of bricks.splice(0)) await within(g.stop(10_000), 15_000).catch(() => undefined);
  for (const c of closers.splice(0)) c();
}
