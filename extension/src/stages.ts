/** The stages of a handoff as a row of chips, updated by progress events: the Handoff tab
 *  and the inline progress under an experiment's trial buttons both show one. */

import { h } from './dom';
import { stageIndex } from './format';
import { IProgressEvent, STAGES } from './protocol';

const STATUS_OF: Record<string, string> = {
  start: 'running',
  done: 'done',
  fail: 'fail',
  skip: 'skipped'
};

/** What a stage's chip says under its name for one event ('' leaves it as it was). */
export function stageText(p: IProgressEvent): string {
  const took =
    p.status === 'done' && typeof p.elapsed_s === 'number'
      ? `${p.elapsed_s.toFixed(1)} s`
      : '';
  return p.status === 'skip'
    ? `skipped${p.message ? `: ${p.message}` : ''}`
    : [took, p.message].filter(Boolean).join(' — ');
}

/** "Stage 3/6: parity…" for a stage that starts, else null. */
export function stageLine(p: IProgressEvent): string | null {
  return p.status === 'start'
    ? `Stage ${stageIndex(p.stage) + 1}/${STAGES.length}: ${p.stage}…`
    : null;
}

export class StageList {
  readonly node: HTMLElement;
  private _items = new Map<string, HTMLElement>();

  constructor() {
    this.node = h('ol', { class: 'labkit-stages' });
  }

  /** Every stage pending again. */
  reset(): void {
    this._items.clear();
    this.node.replaceChildren(
      ...STAGES.map(stage => {
        const item = h(
          'li',
          {
            class: 'labkit-stage',
            'data-stage': stage,
            'data-status': 'pending'
          },
          h('span', { class: 'labkit-stage-name' }, stage),
          h('span', { class: 'labkit-stage-message' }, '')
        );
        this._items.set(stage, item);
        return item;
      })
    );
  }

  progress(p: IProgressEvent): void {
    const item = this._items.get(p.stage);
    if (!item) {
      return;
    }
    if (p.status !== 'info') {
      item.dataset.status = STATUS_OF[p.status] ?? p.status;
    }
    const msg = item.querySelector('.labkit-stage-message');
    const text = stageText(p);
    if (msg && text) {
      msg.textContent = text;
    }
  }

  /** Mark `stage` failed (the error reply names it). */
  fail(stage: string | null | undefined): void {
    const item = stage ? this._items.get(stage) : undefined;
    if (item) {
      item.dataset.status = 'fail';
    }
  }
}
