import { setTimeout as sleep } from 'timers/promises';
import { OptionValues, opt } from '../../src/core/options';
import { defineTranslator } from '../../src/core/registry';
import { Xlator } from '../../src/core/xlator';

const options = {
  'delay-percentage': opt.percent({ description: 'share of enabled fops that are delayed', default: '10%' }),
  'delay-duration': opt.int({ description: 'delay in microseconds', default: '100000', min: 0, max: 3_600_000_000 }),
  enable: opt.fops({ description: 'fops to delay (comma-separated); none when unset' }),
};

type Options = OptionValues<typeof options>;

/** debug/delay-gen: holds chosen fops for a while before passing them on. */
export class DelayGen extends Xlator<Options> {}

Xlator.interceptAll(DelayGen, async (xl, op, _args, next) => {
  const o = xl.options;
  if (o.enable?.has(op) && Math.random() * 100 < o['delay-percentage']) await sleep(o['delay-duration'] / 1000);
  return next();
});

export default defineTranslator({
  type: 'debug/delay-gen',
  description: 'delays chosen fops (widens race windows in tests)',
  options,
  subvolumes: { min: 1, max: 1 },
  create: (init) => new DelayGen(init),
});
