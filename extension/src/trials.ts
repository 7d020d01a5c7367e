/**
 * The "hand off trial #N" buttons of an experiment's output (mimetype `EXPERIMENT_MIME`,
 * which `labkit.experiment` writes with an HTML fallback). They are drawn from the output's
 * saved data, so they work after the notebook is reopened or its kernel restarted: a click
 * sends a `handoff_trial` request (the kernel reopens the run from the experiment store when
 * it is not open) and shows the stages live under the buttons, as the Handoff tab does.
 */

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { h } from './dom';
import { isUnchanged, trialButtons } from './format';
import {
  EXPERIMENT_MIME,
  IErrorInfo,
  IExperimentOutput,
  IHandoffReply,
  IProgressEvent
} from './protocol';
import { StageList, stageLine } from './stages';

/** Progress and outcome of one trial's handoff, under the buttons. */
export class InlineProgress {
  readonly node: HTMLElement;
  private _stages = new StageList();
  private _status: HTMLElement;
  private _outcome: HTMLElement;

  constructor() {
    this._status = h('p', { class: 'labkit-status' }, '');
    this._outcome = h('div', { class: 'labkit-trial-outcome' });
    this.node = h(
      'div',
      { class: 'labkit-trial-progress', hidden: true },
      this._status,
      this._stages.node,
      this._outcome
    );
  }

  start(trial: number): void {
    this.node.hidden = false;
    this.node.dataset.trial = String(trial);
    this.node.dataset.state = 'running';
    this._stages.reset();
    this._status.textContent = `Handing off trial #${trial}…`;
    this._outcome.replaceChildren();
  }

  progress(p: IProgressEvent): void {
    this._stages.progress(p);
    const line = stageLine(p);
    if (line) {
      this._status.textContent = line;
    }
  }

  /** The result in one line, and a button that shows it all in the Handoff tab. */
  done(reply: IHandoffReply, details: () => void): void {
    const result = reply.result;
    this.node.dataset.state = isUnchanged(result) ? 'unchanged' : 'done';
    this._status.textContent = `${result.name} ${reply.headline}`;
    const open = h(
      'button',
      { class: 'jp-mod-styled labkit-trial-details' },
      'details'
    );
    open.addEventListener('click', details);
    this._outcome.replaceChildren(
      h('code', { class: 'labkit-path' }, result.path),
      ' ',
      open
    );
  }

  fail(error: IErrorInfo): void {
    this.node.dataset.state = 'failed';
    this._stages.fail(error.stage);
    this._status.textContent = `Handoff failed${error.stage ? ` at ${error.stage}` : ''}: ${error.type}`;
    this._outcome.replaceChildren(
      h('pre', { class: 'labkit-error-message' }, error.message)
    );
  }

  /** Nothing was started (no kernel, labkit not imported, another handoff running). */
  cancel(): void {
    this.node.hidden = true;
  }
}

/** Hands off trial `trial` of `data` for the output whose node is `node`. */
export type TrialHandoff = (
  node: HTMLElement,
  data: IExperimentOutput,
  trial: number,
  inline: InlineProgress
) => Promise<void>;

export class TrialsRenderer extends Widget implements IRenderMime.IRenderer {
  private _inline = new InlineProgress();

  constructor(private _handoff: TrialHandoff) {
    super();
    this.addClass('labkit-TrialsRenderer');
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[EXPERIMENT_MIME] as unknown as IExperimentOutput;
    const buttons = trialButtons(data).map(b => {
      const el = h(
        'button',
        {
          class: 'jp-mod-styled labkit-handoff-trial',
          'data-trial': String(b.id),
          title: b.title,
          disabled: !b.enabled
        },
        b.label
      ) as HTMLButtonElement;
      el.addEventListener('click', () => void this._run(data, b.id));
      return el;
    });
    this.node.replaceChildren(
      h(
        'div',
        {
          class: 'labkit-experiment-handoff',
          'data-experiment': data.experiment,
          'data-run': data.run
        },
        ...buttons
      ),
      this._inline.node
    );
    return Promise.resolve();
  }

  private async _run(data: IExperimentOutput, trial: number): Promise<void> {
    const buttons = Array.from(
      this.node.querySelectorAll<HTMLButtonElement>('.labkit-handoff-trial')
    );
    const was = buttons.map(b => b.disabled);
    buttons.forEach(b => (b.disabled = true));
    try {
      await this._handoff(this.node, data, trial, this._inline);
    } finally {
      buttons.forEach((b, i) => (b.disabled = was[i]));
    }
  }
}

/** The renderer factory; `handoff` runs in the plugin, which knows the notebooks. */
export function trialsRendererFactory(
  handoff: TrialHandoff
): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [EXPERIMENT_MIME],
    // before text/html (the fallback, rank 50), so the buttons are what shows
    defaultRank: 40,
    createRenderer: () => new TrialsRenderer(handoff)
  };
}
