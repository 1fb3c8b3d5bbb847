import { FopError } from '../../src/core/errors';
import { OptionValues, opt } from '../../src/core/options';
import { defineTranslator } from '../../src/core/registry';
import { Xlator } from '../../src/core/xlator';

const options = {
  failure: opt.percent({ description: 'share of enabled fops that fail', default: '100%' }),
  'error-no': opt.errno({ description: 'the errno enabled fops fail with', default: 'EIO' }),
  'random-failure': opt.bool({
    description: 'instead of a share, fail every Nth enabled fop, N drawn anew (3..44) after each failure',
    default: 'off',
  }),
  enable: opt.fops({ description: 'fops that may fail (comma-separated); all when unset', aliases: ['error-fops'] }),
  'drop-replies': opt.bool({
    description: 'instead of failing, chosen fops never answer: their frame is lost (what a lost reply holds up)',
    default: 'off',
  }),
};

type Options = OptionValues<typeof options>;

/** debug/error-gen: makes chosen fops fail with a chosen errno, before they reach the child. */
export class ErrorGen extends Xlator<Options> {
  private count = 0;
  private every = 3;

  shouldFail(op: Parameters<NonNullable<Options['enable']>['has']>[0]): boolean {
    const o = this.options;
    if (o.enable && !o.enable.has(op)) return false;
    if (!o['random-failure']) return Math.random() * 100 < o.failure;
    if (++this.count % this.every !== 0) return false;
    this.count = 0;
    this.every = 3 + Math.floor(Math.random() * 42);
    return true;
  }
}

Xlator.interceptAll(ErrorGen, async (xl, op, _args, next) => {
  if (!xl.shouldFail(op)) return next();
  if (xl.options['drop-replies']) return new Promise<never>(() => {});
  throw new FopError(xl.options['error-no'], `injected by ${xl.name}`);
});

export default defineTranslator({
  type: 'debug/error-gen',
  description: 'fails chosen fops with a chosen errno (fault injection for tests)',
  options,
  subvolumes: { min: 1, max: 1 },
  create: (init) => new ErrorGen(init),
});
