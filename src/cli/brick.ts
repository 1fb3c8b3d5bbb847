import type { Graph } from '../core/graph';
import type { GraphHost, GraphLifecycle, ReloadResult } from '../core/lifecycle';
import type { ControlRequest } from './control';
import { Daemon, DaemonBase } from './daemon';

/**
 * What serves a brick's active graph: its protocol/server. A new graph's server takes the
 * listening socket over as it starts; once it is active, the old graph goes down, letting
 * its clients go (after the requests in flight): they reconnect, to the new graph, and
 * reopen their files by GFID, as after any reconnection.
 */
export class BrickHost implements GraphHost {
  constructor(
    public active: Graph,
    private readonly stopTimeoutMs: number,
  ) {
    active.state = 'active';
  }

  activate(g: Graph): void {
    const old = this.active;
    this.active = g;
    g.state = 'active';
    void old.stop(this.stopTimeoutMs);
  }
}

export interface BrickDaemonOptions extends DaemonBase {
  readonly volfile: string;
  readonly lifecycle: GraphLifecycle;
  readonly stopTimeoutMs: number;
}

/**
 * The process serving one brick, with the same graph lifecycle as a mount: SIGHUP (or
 * `xlstack reload VOLFILE`) applies new options in place or switches to a new graph,
 * SIGUSR1 (or `xlstack statedump VOLFILE`) dumps its state, SIGTERM/SIGINT take it down.
 */
export class BrickDaemon extends Daemon {
  private stopping = false;

  constructor(private readonly opts: BrickDaemonOptions) {
    super(opts);
  }

  async reload(): Promise<ReloadResult> {
    try {
      const r = await this.opts.lifecycle.reload();
      this.log.info(`reload: ${r.action}, graph ${r.graph}${r.detail ? ` (${r.detail})` : ''}`);
      return r;
    } catch (e) {
      this.log.error(`reload of ${this.opts.volfile} failed; the brick serves on as it was:\n${(e as Error).message}`);
      throw e;
    }
  }

  protected command(_req: ControlRequest): Promise<unknown> | undefined {
    return undefined;
  }

  protected stop(sig: string): void {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info(`${sig}: taking the brick down`);
    void this.opts.lifecycle.stopAll().finally(() => this.finish());
  }

  statedump(): Record<string, unknown> {
    const graphs = this.opts.lifecycle.graphs();
    return { ...this.commonDump(), volfile: this.opts.volfile, activeGraph: graphs.find((g) => g.state === 'active')?.id, graphs: graphs.map((g) => g.dump()) };
  }
}
