/** The handoff view: live progress per stage, then the result or the failure. */

import { Widget } from '@lumino/widgets';

import { barChart, h, table } from './dom';
import {
  VARIANT_HEADERS,
  isUnchanged,
  speedup,
  stageIndex,
  variantRows
} from './format';
import { IErrorInfo, IHandoffReply, IProgressEvent, STAGES } from './protocol';

const STATUS_OF: Record<string, string> = {
  start: 'running',
  done: 'done',
  fail: 'fail',
  skip: 'skipped'
};

export class HandoffView extends Widget {
  private _stages = new Map<string, HTMLElement>();
  private _status: HTMLElement;
  private _body: HTMLElement;

  constructor(modelName: string) {
    super();
    this.addClass('labkit-HandoffView');
    this.id = `labkit-handoff-${Date.now().toString(36)}`;
    this.title.label = `Handoff: ${modelName}`;
    this.title.closable = true;
    const list = h('ol', { class: 'labkit-stages' });
    for (const stage of STAGES) {
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
      this._stages.set(stage, item);
      list.appendChild(item);
    }
    this._status = h(
      'p',
      { class: 'labkit-status' },
      `Handing off ${modelName}…`
    );
    this._body = h('div', { class: 'labkit-body' });
    this.node.append(
      h('h2', {}, `Handoff: ${modelName}`),
      this._status,
      list,
      this._body
    );
  }

  progress(p: IProgressEvent): void {
    const item = this._stages.get(p.stage);
    if (!item) {
      return;
    }
    if (p.status !== 'info') {
      item.dataset.status = STATUS_OF[p.status] ?? p.status;
    }
    const msg = item.querySelector('.labkit-stage-message');
    const took =
      p.status === 'done' && typeof p.elapsed_s === 'number'
        ? `${p.elapsed_s.toFixed(1)} s`
        : '';
    const text =
      p.status === 'skip'
        ? `skipped${p.message ? `: ${p.message}` : ''}`
        : [took, p.message].filter(Boolean).join(' — ');
    if (msg && text) {
      msg.textContent = text;
    }
    if (p.status === 'start') {
      this._status.textContent = `Stage ${stageIndex(p.stage) + 1}/${STAGES.length}: ${p.stage}…`;
    }
  }

  /** The finished handoff. Stages keep the status their events gave them (a stage that
   *  was skipped stays skipped); an unchanged model reads as neutral, not as a success. */
  showResult(reply: IHandoffReply): void {
    const result = reply.result;
    const unchanged = isUnchanged(result);
    this._status.textContent = unchanged
      ? 'No new version was written.'
      : 'Handoff complete.';
    const speed: [string, number][] = [['pytorch', 1]];
    for (const v of result.variants ?? []) {
      const s = speedup(v);
      if (typeof s === 'number') {
        speed.push([v.name, s]);
      }
    }
    const rejected = (result.rejected ?? []).map(r =>
      h('li', {}, h('b', {}, r.name), `: ${r.reason}`)
    );
    this._body.replaceChildren(
      h(
        'div',
        {
          class: unchanged
            ? 'labkit-result labkit-mod-unchanged'
            : 'labkit-result',
          'data-version': result.version,
          'data-change': result.change
        },
        h('h3', {}, `${result.name} ${result.version}`),
        h('p', { class: 'labkit-change' }, reply.headline),
        h(
          'p',
          {},
          'Default variant: ',
          h('b', { class: 'labkit-default' }, result.default_variant)
        ),
        h(
          'p',
          {},
          'Bundle: ',
          h('code', { class: 'labkit-path' }, result.path)
        ),
        h('h4', {}, 'Parity and speed per variant'),
        table(
          VARIANT_HEADERS,
          variantRows(result),
          'labkit-table labkit-parity'
        ),
        speed.length > 1 ? h('h4', {}, 'Speed vs PyTorch (batch-1 p50)') : null,
        speed.length > 1 ? (barChart(speed, '×') as unknown as Node) : null,
        rejected.length ? h('h4', {}, 'Left out of the bundle') : null,
        rejected.length ? h('ul', {}, ...rejected) : null
      )
    );
  }

  showError(error: IErrorInfo): void {
    const stage = error.stage;
    if (stage && this._stages.has(stage)) {
      this._stages.get(stage)!.dataset.status = 'fail';
    }
    this._status.textContent = 'Handoff failed.';
    this._body.replaceChildren(
      h(
        'div',
        { class: 'labkit-error', 'data-stage': stage ?? '' },
        h('h3', {}, stage ? `Failed at stage: ${stage}` : 'Handoff failed'),
        h('p', { class: 'labkit-error-type' }, error.type),
        h('pre', { class: 'labkit-error-message' }, error.message),
        h('p', {}, 'No bundle was written.')
      )
    );
  }
}
