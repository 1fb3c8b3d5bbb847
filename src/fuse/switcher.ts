import { buildGraph, checkVolfile } from '../core/builder';
import type { Graph } from '../core/graph';
import type { Logger } from '../core/log';
import { Mutex } from '../core/mutex';
import type { Registry } from '../core/registry';
import { compareVolfiles } from '../core/topology';
import { Volfile, readVolfile } from '../core/volfile';
import { Bridge } from './bridge';
import { BridgeCore, BridgeOptions } from './core';
import type { MigrationBounds } from './migrator';

export interface SwitcherOptions {
  readonly volfile: string;
  readonly registry: Registry;
  readonly log: Logger;
  readonly passthroughUnknown?: boolean;
  /** How long a new graph may take to report whether its children are up. */
  readonly startTimeoutMs: number;
  /** How long an old graph's translators may take to finish their background work. */
  readonly stopTimeoutMs: number;
  /** Passed to the bridge: when idle handles still on old graphs are moved (ms; 0: never). */
  readonly sweepAfterMs?: number;
  /** How long migrations wait for an old graph and for a handle's lock. */
  readonly bounds?: MigrationBounds;
  /** Makes the bridge core over graph 1 (tests pass older-design variants). */
  readonly core?: (first: Graph, log: Logger, opts: BridgeOptions) => BridgeCore;
}

export interface ReloadResult {
  /** unchanged | reconfigured (options applied in place) | switched (a new graph serves) | superseded (a newer reload took over) */
  readonly action: 'unchanged' | 'reconfigured' | 'switched' | 'superseded';
  /** The graph that serves now (for superseded: the graph that was abandoned). */
  readonly graph: number;
  readonly detail?: string;
}

/**
 * Owns the graphs of one mount: builds graph N+1 from the volfile when asked to reload,
 * switches the bridge to it in one step, and cleans up every older graph once nothing
 * uses it. A volfile that does not parse or check, or a graph that does not start,
 * changes nothing. The switch never waits for an old graph; only its cleanup does.
 */
export class GraphSwitcher {
  private lastId = 0;
  protected readonly live = new Map<number, Graph>();
  private readonly lock = new Mutex();
  private queued?: Promise<ReloadResult>;
  /** The graph a reload is waiting for, if any: a newer reload abandons it. */
  private starting?: Graph;
  private _bridge?: Bridge;

  constructor(protected readonly opts: SwitcherOptions) {}

  get bridge(): Bridge {
    if (!this._bridge) throw new Error('no graph is serving yet');
    return this._bridge;
  }

  /** Every graph still alive, oldest first. */
  graphs(): Graph[] {
    return [...this.live.values()];
  }

  /** Builds and starts graph 1 and the bridge over it; its children must come up. */
  async start(): Promise<Bridge> {
    const g = this.build(readVolfile(this.opts.volfile));
    const status = await this.startGraph(g);
    if (status !== 'up') {
      await this.cleanup(g);
      throw new Error(`graph ${g.id} of ${this.opts.volfile} did not come up (${status === 'down' ? 'its children are down' : `no answer within ${this.opts.startTimeoutMs / 1000} s`})`);
    }
    const make = this.opts.core ?? ((first, log, o) => new BridgeCore(first, log, o));
    this._bridge = new Bridge(make(g, this.opts.log, { sweepAfterMs: this.opts.sweepAfterMs, bounds: this.opts.bounds }));
    return this._bridge;
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
    });
    return this.queued;
  }

  protected async reloadNow(): Promise<ReloadResult> {
    const volfile = readVolfile(this.opts.volfile);
    const checked = checkVolfile(volfile, { ...this.opts });
    const active = this.bridge.active;
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
      throw new Error(`graph ${g.id} did not come up within ${this.opts.startTimeoutMs / 1000} s; still serving graph ${this.bridge.active.id}`);
    }
    if (status === 'down') this.opts.log.warn(`graph ${g.id}: its children are down; switching anyway (fops fail until they come up)`);
    await this.activate(g, reason);
    return { action: 'switched', graph: g.id, detail: reason };
  }

  /** The switch itself: one step, nothing waits. */
  protected async activate(g: Graph, reason: string): Promise<void> {
    const old = this.bridge.active;
    this.bridge.activate(g);
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
    this._bridge?.core.graphGone(g);
    this.opts.log.info(`graph ${g.id}: cleaned up`);
  }

  /** Takes every graph down (at unmount). */
  async stopAll(): Promise<void> {
    await Promise.all(this.graphs().map((g) => this.cleanup(g)));
  }
}
