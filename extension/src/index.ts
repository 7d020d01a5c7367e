import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { diffPrevious, listBundles, openReport } from './bundles';
import { runHandoff, runTrialHandoff } from './handoff';
import { handoffIcon } from './icon';
import { BundlesPanel } from './panel';
import { BundleDocHolder, HandoffPanelHolder } from './tabs';
import { trialsRendererFactory } from './trials';

const PLUGIN_ID = 'labkit-handoff:plugin';

export namespace CommandIDs {
  export const handoff = 'labkit:handoff';
  export const refresh = 'labkit:refresh-bundles';
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
    rendermime.addFactory(
      trialsRendererFactory((node, data, trial, inline) =>
        runTrialHandoff(tracker, bundles, panels, node, data, trial, inline)
      )
    );
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
