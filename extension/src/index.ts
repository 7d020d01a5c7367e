import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
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
  IBundleSummary,
  IDiffReply,
  IHandoffReply,
  IHandoffRequest,
  IModelsReply,
  IReportReply,
  RequestType
} from './protocol';
import { handoffIcon } from './icon';
import { BundleDocHolder, HandoffPanelHolder } from './tabs';

const PLUGIN_ID = 'labkit-handoff:plugin';

export namespace CommandIDs {
  export const handoff = 'labkit:handoff';
  export const refresh = 'labkit:refresh-bundles';
}

function kernelOf(panel: NotebookPanel | null): IKernelLike | null {
  return (
    (panel?.sessionContext.session?.kernel as unknown as IKernelLike) ?? null
  );
}

function message(title: string, text: string, code?: string): Promise<unknown> {
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

async function runHandoff(
  tracker: INotebookTracker,
  bundles: BundlesPanel,
  panels: HandoffPanelHolder
): Promise<void> {
  const panel = tracker.currentWidget;
  if (panels.view?.running) {
    Notification.warning(BUSY, { autoClose: 5000 });
    return;
  }
  let client: HandoffClient | null;
  try {
    client = await connect(panel);
  } catch (err) {
    await message(
      'Handoff',
      `Could not reach the kernel: ${(err as Error).message}`
    );
    return;
  }
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
    const view = panels.show(opts.name || opts.model, panel);
    try {
      const request: IHandoffRequest = {
        model: opts.model,
        store: opts.store || null,
        source: panel.context.path,
        options: { quantize: opts.quantize, name: opts.name || null }
      };
      const reply = await client.request<IHandoffReply>(
        'handoff',
        request as unknown as Record<string, unknown>,
        p => view.progress(p)
      );
      view.showResult(reply);
      // The panel follows the store this handoff used (the dialog may have named another).
      void bundles.setStore(reply.store);
      const name = reply.result.name;
      if (isUnchanged(reply.result)) {
        Notification.info(`${name}: ${reply.headline}`, { autoClose: 5000 });
      } else {
        Notification.success(`${name} ${reply.headline}`, { autoClose: 5000 });
      }
    } catch (err) {
      const e = err instanceof HandoffError ? err : null;
      view.showError({
        type: e?.type ?? 'Error',
        message: (err as Error).message,
        stage: e?.stage ?? null
      });
      Notification.error(`Handoff failed${e?.stage ? ` at ${e.stage}` : ''}`, {
        autoClose: 5000
      });
      void bundles.refresh();
    }
  } catch (err) {
    await message('Handoff', (err as Error).message);
  } finally {
    client.dispose();
  }
}

/** One request to the current notebook's kernel (the Bundles panel's reads). */
async function askKernel<T>(
  tracker: INotebookTracker,
  type: RequestType,
  payload: Record<string, unknown>
): Promise<T> {
  const panel = tracker.currentWidget;
  if (!panel) {
    throw new Error(
      'Open a notebook whose kernel has imported labkit to read its bundles.'
    );
  }
  const client = new HandoffClient(kernelOf(panel));
  try {
    const state = await client.probe();
    if (state !== 'ready') {
      throw new Error(
        state === 'no-kernel'
          ? 'No kernel is running for the current notebook.'
          : 'Run "import labkit" in the current notebook to read bundles.'
      );
    }
    return await client.request<T>(type, payload);
  } finally {
    client.dispose();
  }
}

function listBundles(
  tracker: INotebookTracker,
  store: string | null
): Promise<{ store: string; bundles: IBundleSummary[] }> {
  return askKernel(tracker, 'list_bundles', store ? { store } : {});
}

/** The latest version's report.md, rendered in the bundle tab. */
async function openReport(
  tracker: INotebookTracker,
  docs: BundleDocHolder,
  bundle: IBundleSummary,
  store: string
): Promise<void> {
  const title = `Report: ${bundle.name} ${bundle.latest}`;
  const view = docs.show(title);
  try {
    const reply = await askKernel<IReportReply>(tracker, 'bundle_report', {
      store,
      name: bundle.name,
      version: bundle.latest
    });
    await view.showReport(reply);
  } catch (err) {
    view.showError(title, (err as Error).message);
  }
  docs.retitle();
}

/** `handoff diff` of the version before the latest against the latest, from the kernel. */
async function diffPrevious(
  tracker: INotebookTracker,
  docs: BundleDocHolder,
  bundle: IBundleSummary,
  store: string
): Promise<void> {
  const title = `Diff: ${bundle.name} ${bundle.latest}`;
  const view = docs.show(title);
  try {
    const reply = await askKernel<IDiffReply>(tracker, 'bundle_diff', {
      store,
      name: bundle.name,
      version: bundle.latest
    });
    view.showDiff(reply);
  } catch (err) {
    view.showError(title, (err as Error).message);
  }
  docs.retitle();
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Hand off a PyTorch model from the notebook to a verified labkit bundle.',
  autoStart: true,
  requires: [INotebookTracker, IRenderMimeRegistry],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    rendermime: IRenderMimeRegistry,
    palette: ICommandPalette | null
  ) => {
    const panels = new HandoffPanelHolder(app);
    const docs = new BundleDocHolder(app, rendermime);
    const bundles = new BundlesPanel(store => listBundles(tracker, store), {
      openReport: (b, store) => void openReport(tracker, docs, b, store),
      diffPrevious: (b, store) => void diffPrevious(tracker, docs, b, store)
    });
    bundles.title.icon = handoffIcon;
    app.shell.add(bundles, 'right', { rank: 900 });

    app.commands.addCommand(CommandIDs.handoff, {
      label: args => (args.toolbar ? 'Handoff' : 'Hand off model'),
      caption:
        'Hand off the model registered in this notebook to a verified labkit bundle',
      icon: args => (args.toolbar ? handoffIcon : undefined),
      isEnabled: () => tracker.currentWidget !== null,
      execute: () => runHandoff(tracker, bundles, panels)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh labkit bundles',
      execute: () => bundles.refresh()
    });
    palette?.addItem({ command: CommandIDs.handoff, category: 'labkit' });
    palette?.addItem({ command: CommandIDs.refresh, category: 'labkit' });
    tracker.currentChanged.connect(() => {
      if (bundles.isVisible) {
        void bundles.refresh();
      }
    });
  }
};

export default plugin;
