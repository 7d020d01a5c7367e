/** The handoff view: live progress per stage, then the result or the failure. */

import { Widget } from '@lumino/widgets';

import { IPlotSpec, chartLabel, plotSpec } from './chart';
import { h, table } from './dom';
import { VARIANT_HEADERS, isUnchanged, variantRows } from './format';
import { IErrorInfo, IHandoffReply, IProgressEvent } from './protocol';
import { StageList, stageLine } from './stages';
import {
  KEPT_HEADERS,
  SCORE_HEADERS,
  defaultWhy,
  engineRows,
  judgedOn,
  keptLayers,
  keptRows,
  originLine
} from './decisions';

/** The one Handoff panel: every handoff from the UI reuses it (`start` resets it). */
export class HandoffView extends Widget {
  private _stages = new StageList();
  private _heading: HTMLElement;
  private _status: HTMLElement;
  private _body: HTMLElement;
  private _plots: HTMLElement[] = [];
  private _runs = 0;
  private _running = false;

  constructor() {
    super();
    this.addClass('labkit-HandoffView');
    this.id = 'labkit-handoff-view';
    this.title.label = 'Handoff';
    this.title.closable = true;
    this._heading = h('h2', {}, 'Handoff');
    this._status = h('p', { class: 'labkit-status' }, '');
    this._body = h('div', { class: 'labkit-body' });
    this.node.append(
      this._heading,
      this._status,
      this._stages.node,
      this._body
    );
  }

  /** Whether a handoff is running in this panel (its result or error not shown yet). */
  get running(): boolean {
    return this._running;
  }

  /** How many handoffs this panel has shown (`data-run` on the node, for tests too). */
  get runs(): number {
    return this._runs;
  }

  /** Clear the panel for a new handoff of `modelName`: every stage pending again. */
  start(modelName: string): void {
    this._purgePlots();
    this._runs += 1;
    this._running = true;
    this.node.dataset.run = String(this._runs);
    this.title.label = `Handoff: ${modelName}`;
    this._heading.textContent = `Handoff: ${modelName}`;
    this._status.textContent = `Handing off ${modelName}…`;
    this._stages.reset();
    this._body.replaceChildren();
  }

  progress(p: IProgressEvent): void {
    this._stages.progress(p);
    const line = stageLine(p);
    if (line) {
      this._status.textContent = line;
    }
  }

  /** The finished handoff. Stages keep the status their events gave them (a stage that
   *  was skipped stays skipped); an unchanged model reads as neutral, not as a success. */
  showResult(reply: IHandoffReply): void {
    this._running = false;
    const result = reply.result;
    const unchanged = isUnchanged(result);
    this._status.textContent = unchanged
      ? 'No new version was written.'
      : 'Handoff complete.';
    const origin = originLine(result);
    const spec = plotSpec(reply);
    const chart = spec
      ? h('div', {
          class: 'labkit-speed-chart',
          role: 'img',
          'aria-label': `Speed-up vs PyTorch eager. ${chartLabel(spec)}`
        })
      : null;
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
        origin ? h('p', { class: 'labkit-origin' }, 'From ', origin) : null,
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
        chart ? h('h4', {}, 'Speed vs PyTorch eager') : null,
        chart,
        decisions(result),
        rejected.length ? h('h4', {}, 'Left out of the bundle') : null,
        rejected.length
          ? h('ul', { class: 'labkit-rejected' }, ...rejected)
          : null
      )
    );
    if (chart && spec) {
      this._draw(chart, spec).catch(reason => {
        chart.textContent = `The speed chart could not be drawn: ${reason}`;
      });
    }
  }

  /** plotly.js is loaded when the first chart is drawn, not with the extension. */
  private async _draw(el: HTMLElement, spec: IPlotSpec): Promise<void> {
    const Plotly = await import('plotly.js-basic-dist-min');
    if (this.node.contains(el)) {
      await Plotly.newPlot(el, spec.data, spec.layout, spec.config);
      this._plots.push(el);
    }
  }

  private _purgePlots(): void {
    if (this._plots.length) {
      const plots = this._plots.splice(0);
      void import('plotly.js-basic-dist-min').then(Plotly =>
        plots.forEach(el => Plotly.purge(el))
      );
    }
  }

  dispose(): void {
    this._purgePlots();
    super.dispose();
  }

  showError(error: IErrorInfo): void {
    this._running = false;
    const stage = error.stage;
    this._stages.fail(stage);
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

/** "What was decided": why the default is the default (the rule and its numbers), the
 *  layers kept in fp32 with their measured sensitivity, the inputs each quantized variant
 *  was judged on, the engine configurations that passed or were rejected. */
function decisions(result: IHandoffReply['result']): HTMLElement | null {
  const why = defaultWhy(result);
  const kept = keptLayers(result);
  const judged = judgedOn(result);
  const engines = engineRows(result);
  if (!why && !kept.length && !judged.length && !engines.length) {
    return null;
  }
  return h(
    'div',
    { class: 'labkit-decisions' },
    h('h4', {}, 'What was decided'),
    why
      ? h(
          'div',
          {
            class: 'labkit-default-rule',
            'data-chosen': why.chosen,
            'data-reliable': String(why.reliable)
          },
          h('h5', {}, `Why ${why.chosen} is the default`),
          h('p', { class: 'labkit-default-reason' }, why.reason),
          why.rows.length
            ? table(SCORE_HEADERS, why.rows, 'labkit-table labkit-scores')
            : null,
          why.bounds ? h('p', { class: 'labkit-hint' }, why.bounds) : null,
          h('p', { class: 'labkit-hint labkit-rule' }, `Rule: ${why.rule}`)
        )
      : null,
    judged.length
      ? h(
          'ul',
          { class: 'labkit-judged-on' },
          ...judged.map(j =>
            h(
              'li',
              { 'data-variant': j.variant, 'data-judged-on': j.judgedOn },
              h('b', {}, j.variant),
              `: ${j.text}`
            )
          )
        )
      : null,
    kept.length
      ? h('h5', {}, 'Layers kept in fp32 (quantization sensitivity)')
      : null,
    kept.length
      ? table(KEPT_HEADERS, keptRows(kept), 'labkit-table labkit-kept')
      : null,
    engines.length
      ? h('h5', {}, 'Engine configurations judged at handoff')
      : null,
    engines.length
      ? table(
          ['variant', 'engine', 'verdict', 'measured / why rejected'],
          engines.map(e => [
            e.variant,
            e.config,
            e.passed ? 'passed' : 'rejected',
            e.detail
          ]),
          'labkit-table labkit-engines'
        )
      : null
  );
}
