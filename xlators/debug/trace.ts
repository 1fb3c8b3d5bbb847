import { FopName } from '../../src/core/fops';
import { OptionValues, opt } from '../../src/core/options';
import { defineTranslator } from '../../src/core/registry';
import { Xlator } from '../../src/core/xlator';
import { describe } from './describe';

const options = {
  'include-ops': opt.fops({ description: 'trace only these fops (comma-separated); all when unset', aliases: ['include'] }),
  'exclude-ops': opt.fops({ description: 'never trace these fops', aliases: ['exclude'] }),
  'log-file': opt.bool({ description: 'log every traced fop and its result', default: 'no' }),
  'log-history': opt.bool({ description: 'keep the last history-size traced fops for statedumps', default: 'no' }),
  'history-size': opt.int({ description: 'how many fops log-history keeps', default: '1024', min: 1, max: 1_000_000 }),
};

type Options = OptionValues<typeof options>;

/**
 * debug/trace: logs each fop on the way down and its result (or error) on the way up.
 * Off unless log-file or log-history is on (GlusterFS's defaults), so it can sit in a
 * volfile and be switched on with an options-only reload.
 */
export class Trace extends Xlator<Options> {
  readonly history: string[] = [];

  traces(op: FopName): boolean {
    const o = this.options;
    if (!o['log-file'] && !o['log-history']) return false;
    if (o['include-ops'] && !o['include-ops'].has(op)) return false;
    return !o['exclude-ops']?.has(op);
  }

  record(line: string): void {
    if (this.options['log-file']) this.log.info(line);
    if (!this.options['log-history']) return;
    this.history.push(`${new Date().toISOString()} ${line}`);
    if (this.history.length > this.options['history-size']) this.history.splice(0, this.history.length - this.options['history-size']);
  }

  override dump(): Record<string, unknown> {
    return { history: this.history };
  }
}

// Not an async function itself: quiet (the default), the fop passes through without a
// promise of its own on every request.
Xlator.interceptAll(Trace, (xl, op, args, next) => (xl.traces(op) ? traced(xl, op, args, next) : next()));

async function traced(xl: Trace, op: FopName, args: unknown[], next: () => Promise<unknown>): Promise<unknown> {
  const call = `${op}(${args.map(describe).join(', ')})`;
  const started = process.hrtime.bigint();
  const us = () => Number((process.hrtime.bigint() - started) / 1000n);
  try {
    const result = await next();
    xl.record(`${call} => ${describe(result)} in ${us()} us`);
    return result;
  } catch (e) {
    xl.record(`${call} => ${(e as { code?: string }).code ?? 'error'} in ${us()} us`);
    throw e;
  }
}

export default defineTranslator({
  type: 'debug/trace',
  description: 'logs every fop and its result',
  options,
  subvolumes: { min: 1, max: 1 },
  create: (init) => new Trace(init),
});
