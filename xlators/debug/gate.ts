import { XlEvent } from '../../src/core/events';
import { FopName, isFopName } from '../../src/core/fops';
import { OptionValues, opt } from '../../src/core/options';
import { defineTranslator } from '../../src/core/registry';
import { Xlator, XlatorInit } from '../../src/core/xlator';

/** Where a held fop stops: before it goes to the child, or after the child answered. */
export type GatePoint = 'before' | 'after';

/** One armed hold: it catches the next matching call (or event) and keeps it until released. */
export class Hold {
  private arrivedResolve!: () => void;
  private releaseResolve!: () => void;
  private state: 'armed' | 'held' | 'released' = 'armed';
  /** Settles when a call (or event) has reached the gate and is being held. */
  readonly reached = new Promise<void>((r) => (this.arrivedResolve = r));
  readonly released = new Promise<void>((r) => (this.releaseResolve = r));
  /** The held call's arguments (after its frame), once reached. */
  args: unknown[] = [];
  /** A call (or event) has been assigned to this hold. */
  taken = false;

  constructor(
    readonly what: FopName | XlEvent,
    readonly point: GatePoint,
    readonly match: (args: unknown[]) => boolean = () => true,
  ) {}

  get isHeld(): boolean {
    return this.state === 'held';
  }

  /** Lets the held call (or event) go on; releasing an armed hold disarms it. */
  release(): void {
    this.state = 'released';
    this.releaseResolve();
  }

  /** Called by the gate: holds here until released. */
  async catch(args: unknown[]): Promise<void> {
    this.args = args;
    this.state = 'held';
    this.arrivedResolve();
    await this.released;
  }

  get armed(): boolean {
    return this.state === 'armed';
  }
}

const HOLD_RE = /^(?:(\w+):(before|after)|(CHILD_UP|CHILD_DOWN))$/;

const options = {
  hold: opt.string({
    description:
      'holds armed when the graph is built, comma-separated: FOP:before, FOP:after, CHILD_UP, CHILD_DOWN (for graphs a test cannot reach before they start)',
    default: '',
  }),
};

type Options = OptionValues<typeof options>;

/**
 * debug/gate: the tool for reproducing interleavings deterministically. A test arms a hold
 * on a fop (stopped before it winds, or after the child's reply) or on an event going up
 * (CHILD_UP, CHILD_DOWN), waits until something is held (`hold.reached`), does whatever the
 * interleaving needs meanwhile, then releases it. Each hold catches one call; calls nobody
 * holds pass straight through. `calls` counts every fop that reached the gate.
 */
export class Gate extends Xlator<Options> {
  readonly holds: Hold[] = [];
  readonly calls = new Map<string, number>();

  constructor(init: XlatorInit<Options>) {
    super(init);
    for (const spec of init.options.hold.split(',').map((s) => s.trim()).filter(Boolean)) {
      const m = HOLD_RE.exec(spec);
      if (!m || (m[1] && !isFopName(m[1]))) throw new Error(`debug/gate: bad hold '${spec}' (FOP:before, FOP:after, CHILD_UP or CHILD_DOWN)`);
      if (m[3]) this.holdEvent(m[3] as XlEvent);
      else this.hold(m[1] as FopName, m[2] as GatePoint);
    }
  }

  /** Arms a hold on the next call of `op` (whose arguments after the frame satisfy `match`). */
  hold(op: FopName, point: GatePoint, match?: (args: unknown[]) => boolean): Hold {
    const h = new Hold(op, point, match);
    this.holds.push(h);
    return h;
  }

  /** Arms a hold on the next `event` coming up from below. */
  holdEvent(event: XlEvent): Hold {
    const h = new Hold(event, 'before');
    this.holds.push(h);
    return h;
  }

  /** The armed hold that takes this call, if any (each hold takes one; it stays listed). */
  take(what: FopName | XlEvent, point: GatePoint, args: unknown[]): Hold | undefined {
    const h = this.holds.find((x) => x.armed && !x.taken && x.what === what && x.point === point && x.match(args));
    if (h) h.taken = true;
    return h;
  }

  override notify(event: XlEvent, from?: Xlator): void {
    const h = this.take(event, 'before', []);
    if (!h) return super.notify(event, from);
    void h.catch([]).then(() => super.notify(event, from));
  }

  override dump(): Record<string, unknown> {
    return {
      calls: Object.fromEntries(this.calls),
      holds: this.holds.map((h) => ({ what: h.what, point: h.point, held: h.isHeld, taken: h.taken })),
    };
  }
}

Xlator.interceptAll(Gate, async (xl, op, args, next) => {
  xl.calls.set(op, (xl.calls.get(op) ?? 0) + 1);
  const rest = args.slice(1);
  await xl.take(op, 'before', rest)?.catch(rest);
  const after = xl.take(op, 'after', rest);
  if (!after) return next();
  let outcome: { ok: true; value: unknown } | { ok: false; error: unknown };
  try {
    outcome = { ok: true, value: await next() };
  } catch (error) {
    outcome = { ok: false, error };
  }
  await after.catch(rest);
  if (outcome.ok) return outcome.value;
  throw outcome.error;
});

export default defineTranslator({
  type: 'debug/gate',
  description: 'holds chosen fops or events until a test releases them (reproduces interleavings)',
  options,
  subvolumes: { min: 1, max: 1 },
  create: (init) => new Gate(init),
});
