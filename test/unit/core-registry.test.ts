import * as fs from 'fs';
import * as path from 'path';
import { opt } from '../../src/core/options';
import { Registry, XLATOR_DIR, defineTranslator } from '../../src/core/registry';
import { Xlator } from '../../src/core/xlator';
import { cleanupGraphs, tempDir } from '../helpers/graphs';

afterEach(cleanupGraphs);

describe('Registry.find', () => {
  const registry = new Registry();

  it.each(['storage/posix', 'debug/trace', 'debug/error-gen', 'debug/delay-gen'])('loads %s from the xlators folder', (type) => {
    const def = registry.find(type);
    expect(def).toBeDefined();
    expect(def!.type).toBe(type);
    expect(typeof def!.create).toBe('function');
    expect(typeof def!.description).toBe('string');
    expect(def!.subvolumes.min).toBeGreaterThanOrEqual(0);
    // Loaded once: the same definition every time.
    expect(registry.find(type)).toBe(def);
  });

  it('knows the subvolume counts and options of the shipped translators', () => {
    expect(registry.find('storage/posix')!.subvolumes).toEqual({ min: 0, max: 0 });
    expect(registry.find('debug/trace')!.subvolumes).toEqual({ min: 1, max: 1 });
    expect(Object.keys(registry.find('storage/posix')!.options)).toContain('directory');
    expect(Object.keys(registry.find('debug/error-gen')!.options)).toEqual(expect.arrayContaining(['error-no', 'failure', 'enable']));
  });

  it('looks in dist/xlators next to dist/src', () => {
    expect(XLATOR_DIR).toBe(path.resolve(__dirname, '../../xlators'));
    expect(fs.existsSync(path.join(XLATOR_DIR, 'debug', 'trace.js'))).toBe(true);
  });

  it.each(['features/bit-rot', 'mount/fuse', 'debug/io-stats', 'mgmt/glusterd', 'storage/bd', 'nonexistent/thing'])(
    'returns undefined for the unknown type %s',
    (type) => {
      expect(registry.find(type)).toBeUndefined();
    },
  );

  it.each([
    '../etc',
    '../../xlators/debug/trace',
    'a/b/c',
    'storage/posix/index',
    'Storage/Posix',
    'DEBUG/trace',
    'debug/Trace',
    '',
    'storage',
    'storage/',
    '/storage/posix',
    'storage//posix',
    'debug/trace.js',
    'debug/../debug/trace',
    './debug/trace',
    'debug\\trace',
    ' debug/trace',
    'debug/trace ',
    '1debug/trace',
  ])('returns undefined for the malformed type %j', (type) => {
    expect(registry.find(type)).toBeUndefined();
  });

  it('never loads a module outside its folder, even one that exists', () => {
    const dir = tempDir('xl-core-registry-');
    fs.mkdirSync(path.join(dir, 'cat'));
    fs.writeFileSync(path.join(dir, 'outside.js'), 'throw new Error("must not be loaded")');
    fs.writeFileSync(path.join(dir, 'cat', 'x.js'), 'exports.default = { type: "cat/x", description: "", options: {}, subvolumes: { min: 0 }, create() {} };');
    const r = new Registry(path.join(dir, 'cat'));
    expect(r.find('../outside')).toBeUndefined();
    const own = new Registry(dir);
    expect(own.find('cat/x')!.type).toBe('cat/x');
    expect(own.find('cat/../outside')).toBeUndefined();
  });

  it('throws when a module does not export the translator its path names', () => {
    const dir = tempDir('xl-core-registry-');
    fs.mkdirSync(path.join(dir, 'cat'));
    fs.writeFileSync(path.join(dir, 'cat', 'wrong.js'), 'exports.default = { type: "cat/other" };');
    expect(() => new Registry(dir).find('cat/wrong')).toThrow(/does not export the translator cat\/wrong/);
  });
});

describe('Registry.register', () => {
  const def = defineTranslator({
    type: 'test/widget',
    description: 'a test type',
    options: { size: opt.int({ description: 'n', default: '1' }) },
    subvolumes: { min: 0, max: 2 },
    create: (init) => new Xlator(init),
  });

  it('makes a test type available, on that registry only', () => {
    const r = new Registry();
    expect(r.find('test/widget')).toBeUndefined();
    r.register(def);
    expect(r.find('test/widget')).toBe(def);
    expect(new Registry().find('test/widget')).toBeUndefined();
  });

  it('a registered type is found even if its name would not be loadable', () => {
    const r = new Registry();
    const odd = defineTranslator({ ...def, type: 'Test/Odd' });
    r.register(odd);
    expect(r.find('Test/Odd')).toBe(odd);
  });

  it('a registered type takes precedence over the module of the same name', () => {
    const r = new Registry();
    const fake = defineTranslator({ ...def, type: 'debug/trace' });
    r.register(fake);
    expect(r.find('debug/trace')).toBe(fake);
  });
});
