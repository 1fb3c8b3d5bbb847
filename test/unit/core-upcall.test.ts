// Upcalls travel up a graph like events: from the translator that learned of a change to
// every parent, to the host at the top; a translator that does not care passes them on;
// delivery is iterative (a chain of any depth takes no stack per level); one translator's
// failure does not stop them reaching the others.
import { Logger } from '../../src/core/log';
import { Frame, FrameOwner } from '../../src/core/frame';
import type { XlEvent } from '../../src/core/events';
import { InodeTable } from '../../src/core/inode';
import type { Inode } from '../../src/core/inode';
import { Fd } from '../../src/core/fd';
import { ROOT_CALLER } from '../../src/core/types';
import type { Upcall } from '../../src/core/upcall';
import { Xlator, XlatorHost } from '../../src/core/xlator';

class Host implements XlatorHost, FrameOwner {
  readonly id = 3;
  readonly logs: string[] = [];
  readonly log = Logger.create('error', (l) => this.logs.push(l));
  readonly itable = new InodeTable({ lruLimit: 16, entryTimeoutMs: 1000 });
  readonly upcalls: [Upcall, string][] = [];
  topEvent(_e: XlEvent, _from: Xlator): void {}
  topUpcall(u: Upcall, from: Xlator): void {
    this.upcalls.push([u, from.name]);
  }
  frame(op: string): Frame {
    return new Frame(this, op, ROOT_CALLER);
  }
  newFd(inode: Inode, flags: number, isDir: boolean): Fd {
    return new Fd(inode, flags, isDir, async () => undefined);
  }
  frameStarted(): void {}
  frameDone(): void {}
}

/** A leaf that can start an upcall, as protocol/client does. */
class Leaf extends Xlator {
  tell(u: Upcall): void {
    this.sendUpcall(u);
  }
}

class Seeing extends Xlator {
  readonly seen: Upcall[] = [];
  override upcall(u: Upcall, from?: Xlator): void {
    this.seen.push(u);
    super.upcall(u, from);
  }
}

class Broken extends Xlator {
  override upcall(): void {
    throw new Error('a bug');
  }
}

const make = <T extends Xlator>(cls: new (i: ConstructorParameters<typeof Xlator>[0]) => T, host: Host, name: string, children: Xlator[] = []): T =>
  new cls({ name, type: 'test/x', options: {}, children, host });

test('an upcall reaches every translator above and the host, once per path', () => {
  const host = new Host();
  const leaf = make(Leaf, host, 'leaf');
  const mid = make(Seeing, host, 'mid', [leaf]);
  const top = make(Seeing, host, 'top', [mid]);
  const u: Upcall = { gfid: '00000000-0000-0000-0000-00000000000a', attrs: true };
  leaf.tell(u);
  expect(mid.seen).toEqual([u]);
  expect(top.seen).toEqual([u]);
  expect(host.upcalls).toEqual([[u, 'top']]);
});

test('a chain of 20,000 translators passes an upcall up without a stack per level', () => {
  const host = new Host();
  const leaf = make(Leaf, host, 'leaf');
  let below: Xlator = leaf;
  for (let i = 0; i < 20_000; i++) below = make(Xlator, host, `x${i}`, [below]);
  leaf.tell({ attrs: true });
  expect(host.upcalls).toEqual([[{ attrs: true }, 'x19999']]);
});

test('a translator that fails handling an upcall does not stop it reaching the others (its error is logged)', () => {
  const host = new Host();
  const leaf = make(Leaf, host, 'leaf');
  make(Broken, host, 'broken', [leaf]);
  const fine = make(Seeing, host, 'fine', [leaf]);
  leaf.tell({ data: true });
  expect(fine.seen).toEqual([{ data: true }]);
  expect(host.upcalls).toEqual([[{ data: true }, 'fine']]);
  expect(host.logs.join('\n')).toMatch(/handling an upcall from leaf failed: a bug/);
});
