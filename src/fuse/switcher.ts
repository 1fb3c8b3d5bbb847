import type { Graph } from '../core/graph';
import { GraphLifecycle, LifecycleOptions } from '../core/lifecycle';
import type { Logger } from '../core/log';
import { Bridge } from './bridge';
import { BridgeCore, BridgeOptions } from './core';
import type { MigrationBounds } from './migrator';

export type { ReloadResult } from '../core/lifecycle';

export interface SwitcherOptions extends LifecycleOptions {
  /** Passed to the bridge: when idle handles still on old graphs are moved (ms; 0: never). */
  readonly sweepAfterMs?: number;
  /** How long migrations wait for an old graph and for a handle's lock. */
  readonly bounds?: MigrationBounds;
  /** Makes the bridge core over graph 1 (tests pass older-design variants). */
  readonly core?: (first: Graph, log: Logger, opts: BridgeOptions) => BridgeCore;
}

/**
 * The graphs of one mount: the engine's graph lifecycle, with the bridge as the host that
 * serves the active graph (a switch is the bridge's one-step activate).
 */
export class GraphSwitcher extends GraphLifecycle {
  private _bridge?: Bridge;

  constructor(protected override readonly opts: SwitcherOptions) {
    super(opts);
  }

  get bridge(): Bridge {
    if (!this._bridge) throw new Error('no graph is serving yet');
    return this._bridge;
  }

  /** Builds and starts graph 1 and the bridge over it; its children must come up. */
  async start(): Promise<Bridge> {
    await this.startWith((g) => {
      const make = this.opts.core ?? ((first, log, o) => new BridgeCore(first, log, o));
      this._bridge = new Bridge(make(g, this.opts.log, { sweepAfterMs: this.opts.sweepAfterMs, bounds: this.opts.bounds }));
      return this._bridge.core;
    });
    return this.bridge;
  }
}
