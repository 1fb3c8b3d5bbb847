import { buildGraph, checkVolfile } from './builder';
import type { Graph } from './graph';
import type { Logger } from './log';
import { Mutex } from './mutex';
import type { Registry } from './registry';
import { compareVolfiles } from './topology';
import { Volfile, readVolfile } from './volfile';

export interface LifecycleOptions {
  readonly volfile: string;
  readonly registry: Registry;
  readonly log: Logger;
  readonly passthroughUnknown?: boolean;
  /** How long a new graph may take to report whether its children are up. */
  readonly startTimeoutMs: number;
  /** How long an old graph's translators may take to finish their background work. */
  readonly stopTimeoutMs: number;
}

export interface ReloadResult {
  /** unchanged | reconfigured (options applied in place) | switched (a new graph serves) | superseded (a newer reload took over) */
  readonly action: 'unchanged' | 'reconfigured' | 'switched' | 'superseded';
  /** The graph that serves now (for superseded: the graph that was abandoned). */
  readonly graph: number;
  readonly detail?: string;
}

/** Whoever serves the active graph: a mount's bridge, a brick's server. */
export interface GraphHost {
  readonly active: Graph;
  /** Makes `g` the graph new requests go to, in one step. */
  activate(g: Graph): void;
  /** An old graph was cleaned up. */
  graphGone?(g: Graph): void;
}

/** How long a reload waits for the one before it to finish. */
const RELOAD_WAIT_MS = 120_000;

/**
 * The one owner of a daemon's graphs (a mount's, a brick's): builds graph 1, and on each
 * reload compares the volfile with the active graph's and either reconfigures it in place
 * or builds, starts and activates graph N+1; an old graph is cleaned up once nothing uses
 * it. A volfile that does not parse or check, or a graph that does not start, changes
 * nothing. The switch never waits for an old graph; only its cleanup does.
 */
export class GraphLifecycle {
  private lastId = 0;
  protected readonly live = new Map<number, Graph>();
  private readonly lock = new Mutex('the reload in progress');
  private queued?: Promise<ReloadResult>;
  /** The graph a reload is waiting for, if any: a newer reload abandons it. */
  private starting?: Graph;
  private hostOf?: GraphHost;

  constructor(protected readonly opts: LifecycleOptions) {}

  protected get host(): GraphHost {
    if (!this.hostOf) throw new Error('no graph is serving yet');
    return this.hostOf;
  }

  /** Every graph still alive, oldest first. */
  graphs(): Graph[] {
    return [...this.live.values()];
  }

  /** Builds and starts graph 1; its children must come up. Then `serve` makes the host that serves it. */
  async startWith(serve: (first: Graph) => GraphHost): Promise<Graph> {
    const g = this.build(readVolfile(this.opts.volfile));
    const status = await this.startGraph(g);
    if (status !== 'up') {
      await this.cleanup(g);
      throw new Error(`graph ${g.id} of ${this.opts.volfile} did not come up (${status === 'down' ? 'its children are down' : `no answer within ${this.opts.startTimeoutMs / 1000} s`})`);
    }
    this.hostOf = serve(g);
    return g;
  }
  /**
   * Re-reads the volfile: applies changed options in place, or builds, starts and switches
   * to a new graph. Reloads run one at a time; calls made while one waits to run share it,
   * and a reload abandons a graph an earlier one is still waiting for (the newest volfile wins).
   */
  reload(): Promise<ReloadResult> {
    this.starting?.log.info(`graph ${this.starting.id}: abandoned for a newer reload`);
    void this.starting?.stop(this.opts.stopTimeoutMs);
    this.queued ??= this.lock.run(() => {
      this.queued = undefined;
      return this.reloadNow();
    }, RELOAD_WAIT_MS);
    return this.queued;
  }

  protected async reloadNow(): Promise<ReloadResult> {
    const volfile = readVolfile(this.opts.volfile);
    const checked = checkVolfile(volfile, { ...this.opts });
    const active = this.host.active;
    const change = compareVolfiles(active.volfile, volfile, (t) => this.opts.registry.find(t)?.options);
    if (change.kind === 'same') return { action: 'unchanged', graph: active.id };
    if (change.kind === 'options') {
      const values = new Map(checked.filter((c) => change.volumes.includes(c.decl.name)).map((c) => [c.decl.name, c.options]));
      await active.reconfigure(volfile, values);
      this.opts.log.info(`graph ${active.id}: reconfigured ${change.volumes.join(', ')} in place`);
      return { action: 'reconfigured', graph: active.id, detail: `options of ${change.volumes.join(', ')}` };
    }
    return this.switchTo(volfile, change.reason);
  }

  protected async switchTo(volfile: Volfile, reason: string): Promise<ReloadResult> {
    const g = this.build(volfile);
    this.starting = g;
    let status;
    try {
      status = await this.startGraph(g);
    } finally {
      this.starting = undefined;
    }
    if (g.state === 'dead' || g.state === 'stopping') {
      this.live.delete(g.id);
      return { action: 'superseded', graph: g.id };
    }
    if (status === 'unknown') {
      await this.cleanup(g);
      throw new Error(`graph ${g.id} did not come up within ${this.opts.startTimeoutMs / 1000} s; still serving graph ${this.host.active.id}`);
    }
    if (status === 'down') this.opts.log.warn(`graph ${g.id}: its children are down; switching anyway (fops fail until they come up)`);
    await this.activate(g, reason);
    return { action: 'switched', graph: g.id, detail: reason };
  }

  /** The switch itself: one step, nothing waits. */
  protected async activate(g: Graph, reason: string): Promise<void> {
    const old = this.host.active;
    this.host.activate(g);
    this.opts.log.info(`switched to graph ${g.id} (from graph ${old.id}: ${reason})`);
    this.retire(old);
  }

  protected build(volfile: Volfile): Graph {
    const g = buildGraph(volfile, { ...this.opts, id: ++this.lastId });
    this.live.set(g.id, g);
    return g;
  }

  protected async startGraph(g: Graph) {
    try {
      return await g.start(this.opts.startTimeoutMs);
    } catch (e) {
      this.live.delete(g.id);
      throw e;
    }
  }

  /** An old graph serves only what still holds it; it goes once it is idle. */
  protected retire(g: Graph): void {
    g.state = 'retired';
    if (g.isIdle) {
      void this.cleanup(g);
      return;
    }
    const sub = g.idle$.subscribe(() => {
      sub.unsubscribe();
      void this.cleanup(g);
    });
  }

  protected async cleanup(g: Graph): Promise<void> {
    await g.stop(this.opts.stopTimeoutMs);
    this.live.delete(g.id);
    this.hostOf?.graphGone?.(g);
    this.opts.log.info(`graph ${g.id}: cleaned up`);
  }

  /** Takes every graph down (at unmount, at a brick's end). */
  async stopAll(): Promise<void> {
    await Promise.all(this.graphs().map((g) => this.cleanup(g)));
  }
}
