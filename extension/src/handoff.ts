/**
 * What the Handoff button and an experiment's trial buttons do: reach the notebook's kernel
 * (telling the user what to run when it cannot answer), ask for the options, run the
 * request and show it in the one Handoff tab (and under the trial buttons).
 */

import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import { h } from './dom';
import {
  IMPORT_HINT,
  REGISTER_HINT,
  isUnchanged,
  validBundleName
} from './format';
import { HandoffClient, HandoffError, IKernelLike } from './kernel';
import { IHandoffOptions, OptionsBody } from './options';
import { BundlesPanel } from './panel';
import {
  IErrorInfo,
  IExperimentOutput,
  IHandoffReply,
  IHandoffRequest,
  IModelsReply,
  IProgressEvent,
  ITrialHandoffRequest
} from './protocol';
import { HandoffPanelHolder } from './tabs';
import { InlineProgress } from './trials';
import { HandoffView } from './view';

export function kernelOf(panel: NotebookPanel | null): IKernelLike | null {
  return (
    (panel?.sessionContext.session?.kernel as unknown as IKernelLike) ?? null
  );
}

export function message(
  title: string,
  text: string,
  code?: string
): Promise<unknown> {
  const body = h(
    'div',
    { class: 'labkit-message' },
    h('p', {}, text),
    code ? h('pre', { class: 'labkit-code' }, code) : null
  );
  return showDialog({
    title,
    body: new Widget({ node: body }),
    buttons: [Dialog.okButton({ label: 'OK' })]
  });
}

async function connect(
  panel: NotebookPanel | null
): Promise<HandoffClient | null> {
  if (!panel) {
    await message(
      'Hand off model',
      'Open the notebook where your model is built first.'
    );
    return null;
  }
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session?.kernel;
  if (kernel?.status === 'busy') {
    Notification.info(
      'Handoff: waiting for the kernel to finish running cells…',
      {
        autoClose: 4000
      }
    );
  }
  const client = new HandoffClient(kernelOf(panel));
  const state = await client.probe();
  if (state === 'no-kernel') {
    await message(
      'No kernel is running',
      'This notebook has no running kernel. Start one (Kernel ▸ Restart Kernel), run the ' +
        'cells that build and register your model, then click Handoff again.'
    );
    return null;
  }
  if (state === 'not-imported') {
    await message(
      'labkit is not imported in this kernel',
      'Run this in a cell of the notebook, then click Handoff again:',
      IMPORT_HINT
    );
    return null;
  }
  return client;
}

const BUSY =
  'A handoff is running: wait for it to finish before starting another.';

/**
 * Run one handoff request on `client` and show it in `view` (and `inline`, for a trial
 * button): stages live, then the result or the error, and a notification. The Bundles
 * panel follows the store the handoff used.
 */
async function execute(
  client: HandoffClient,
  view: HandoffView,
  bundles: BundlesPanel,
  type: 'handoff' | 'handoff_trial',
  payload: Record<string, unknown>,
  inline?: {
    progress: (p: IProgressEvent) => void;
    done: (r: IHandoffReply) => void;
    fail: (e: IErrorInfo) => void;
  }
): Promise<void> {
  try {
    const reply = await client.request<IHandoffReply>(type, payload, p => {
      view.progress(p);
      inline?.progress(p);
    });
    view.showResult(reply);
    inline?.done(reply);
    void bundles.setStore(reply.store);
    const name = reply.result.name;
    if (isUnchanged(reply.result)) {
      Notification.info(`${name}: ${reply.headline}`, { autoClose: 5000 });
    } else {
      Notification.success(`${name} ${reply.headline}`, { autoClose: 5000 });
    }
  } catch (err) {
    const e = err instanceof HandoffError ? err : null;
    const info: IErrorInfo = {
      type: e?.type ?? 'Error',
      message: (err as Error).message,
      stage: e?.stage ?? null
    };
    view.showError(info);
    inline?.fail(info);
    Notification.error(`Handoff failed${e?.stage ? ` at ${e.stage}` : ''}`, {
      autoClose: 5000
    });
    void bundles.refresh();
  }
}

/** The notebook's kernel, ready for a handoff: null (the user told why) while a handoff
 *  runs or when the kernel cannot be reached. */
async function reach(
  panel: NotebookPanel | null,
  panels: HandoffPanelHolder
): Promise<HandoffClient | null> {
  if (panels.view?.running) {
    Notification.warning(BUSY, { autoClose: 5000 });
    return null;
  }
  try {
    return await connect(panel);
  } catch (err) {
    await message(
      'Handoff',
      `Could not reach the kernel: ${(err as Error).message}`
    );
    return null;
  }
}

/** A trial button of an experiment's output: hand that trial off from the notebook that
 *  holds the output; the stages show under the buttons and in the Handoff tab (which is
 *  updated, not brought to the front, until "details" is clicked). */
export async function runTrialHandoff(
  tracker: INotebookTracker,
  bundles: BundlesPanel,
  panels: HandoffPanelHolder,
  node: HTMLElement,
  data: IExperimentOutput,
  trial: number,
  inline: InlineProgress
): Promise<void> {
  const panel = tracker.find(p => p.node.contains(node)) ?? null;
  const client = await reach(panel, panels);
  if (!client || !panel) {
    return;
  }
  try {
    if (panel.context.model.dirty) {
      await panel.context.save();
    }
    const request: ITrialHandoffRequest = {
      experiment: data.experiment,
      run: data.run,
      trial,
      store: data.store,
      source: panel.context.path
    };
    inline.start(trial);
    await execute(
      client,
      panels.show(`${data.bundle_name} (trial #${trial})`, panel, false),
      bundles,
      'handoff_trial',
      request as unknown as Record<string, unknown>,
      {
        progress: p => inline.progress(p),
        done: r => inline.done(r, () => panels.activate()),
        fail: e => inline.fail(e)
      }
    );
  } finally {
    client.dispose();
  }
}

export async function runHandoff(
  tracker: INotebookTracker,
  bundles: BundlesPanel,
  panels: HandoffPanelHolder
): Promise<void> {
  const panel = tracker.currentWidget;
  const client = await reach(panel, panels);
  if (!client || !panel) {
    return;
  }
  try {
    const listed = await client.request<IModelsReply>('list_models');
    if (!listed.models.length) {
      await message(
        'No model registered',
        'labkit is imported but no model is registered in this kernel. Run:',
        REGISTER_HINT
      );
      return;
    }
    const body = new OptionsBody(listed.models, listed.store);
    const choice = await showDialog<IHandoffOptions>({
      title: 'Hand off model',
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Hand off' })]
    });
    if (!choice.button.accept || !choice.value) {
      return;
    }
    const opts = choice.value;
    if (opts.name && !validBundleName(opts.name)) {
      await message(
        'Invalid bundle name',
        `"${opts.name}" is not a valid bundle name: use lowercase letters, digits, ".", "_" ` +
          'and "-", starting with a letter or digit (at most 64 characters).'
      );
      return;
    }
    if (panels.view?.running) {
      // another notebook's handoff started while this dialog was open
      Notification.warning(BUSY, { autoClose: 5000 });
      return;
    }
    if (panel.context.model.dirty) {
      await panel.context.save();
    }
    const request: IHandoffRequest = {
      model: opts.model,
      store: opts.store || null,
      source: panel.context.path,
      options: { quantize: opts.quantize, name: opts.name || null }
    };
    await execute(
      client,
      panels.show(opts.name || opts.model, panel),
      bundles,
      'handoff',
      request as unknown as Record<string, unknown>
    );
  } catch (err) {
    await message('Handoff', (err as Error).message);
  } finally {
    client.dispose();
  }
}
