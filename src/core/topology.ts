import type { OptionSchema } from './options';
import type { Volfile, VolumeDecl } from './volfile';

/** How a new volfile differs from the one a graph was built from. */
export type VolfileChange =
  | { readonly kind: 'same' }
  /** Only option values changed, and every changed option can change in place. */
  | { readonly kind: 'options'; readonly volumes: readonly string[] }
  | { readonly kind: 'topology'; readonly reason: string };

const top = (v: Volfile): VolumeDecl => v.volumes[v.volumes.length - 1];

function byName(v: Volfile): Map<string, VolumeDecl> {
  return new Map(v.volumes.map((d) => [d.name, d]));
}

const optionMap = (d: VolumeDecl): Map<string, string> => new Map(d.options.map((o) => [o.key, o.value]));

/** Keys whose value differs (set, changed or removed). */
function changedKeys(a: VolumeDecl, b: VolumeDecl): string[] {
  const x = optionMap(a);
  const y = optionMap(b);
  return [...new Set([...x.keys(), ...y.keys()])].filter((k) => x.get(k) !== y.get(k));
}

/**
 * Compares two volfiles as GlusterFS does before a reload: the same volumes (by name), of
 * the same types, wired the same way, under the same top, is the same topology, and
 * then only options can differ. An option whose spec says it cannot change in place
 * makes the change a topology change.
 */
export function compareVolfiles(old: Volfile, next: Volfile, schemaOf: (type: string) => OptionSchema | undefined): VolfileChange {
  const a = byName(old);
  const b = byName(next);
  for (const name of a.keys()) if (!b.has(name)) return { kind: 'topology', reason: `volume '${name}' was removed` };
  for (const name of b.keys()) if (!a.has(name)) return { kind: 'topology', reason: `volume '${name}' was added` };
  if (top(old).name !== top(next).name) return { kind: 'topology', reason: `the top is now '${top(next).name}'` };
  const changed: string[] = [];
  for (const [name, d] of b) {
    const o = a.get(name)!;
    if (o.type !== d.type) return { kind: 'topology', reason: `volume '${name}' is now of type ${d.type}` };
    if (o.subvolumes.map((s) => s.name).join('\0') !== d.subvolumes.map((s) => s.name).join('\0')) {
      return { kind: 'topology', reason: `volume '${name}' has other subvolumes` };
    }
    const keys = changedKeys(o, d);
    if (keys.length === 0) continue;
    const fixed = keys.find((k) => schemaOf(d.type)?.[k]?.reconfigurable === false);
    if (fixed) return { kind: 'topology', reason: `option '${fixed}' of volume '${name}' cannot change in place` };
    changed.push(name);
  }
  return changed.length ? { kind: 'options', volumes: changed } : { kind: 'same' };
}
