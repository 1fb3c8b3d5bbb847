/**
 * Graph events. PARENT_* travel down from the top (the bridge) to the leaves; CHILD_* and
 * PARENT_DOWN_HANDLED travel up from the leaves to the top.
 */
export enum XlEvent {
  PARENT_UP = 'PARENT_UP',
  CHILD_UP = 'CHILD_UP',
  CHILD_DOWN = 'CHILD_DOWN',
  PARENT_DOWN = 'PARENT_DOWN',
  PARENT_DOWN_HANDLED = 'PARENT_DOWN_HANDLED',
}

export const isDownward = (e: XlEvent): boolean => e === XlEvent.PARENT_UP || e === XlEvent.PARENT_DOWN;
