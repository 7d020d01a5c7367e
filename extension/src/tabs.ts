/** The main-area tabs the extension opens, each created once and reused: the Handoff tab
 *  (every handoff from the UI) and the bundle tab (a report or a diff from the Bundles
 *  panel). Reusing them keeps the notebook's width and its toolbar where they were. */

import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { BundleDocView } from './bundleview';
import { handoffIcon } from './icon';
import { HandoffView } from './view';

/**
 * The one Handoff panel: a tab in the main area beside the notebook, created by the first
 * handoff and reused (activated, reset) by every later one, so the notebook keeps its width.
 */
export class HandoffPanelHolder {
  private _main: MainAreaWidget<HandoffView> | null = null;

  constructor(private _app: JupyterFrontEnd) {}

  get view(): HandoffView | null {
    return this._main && !this._main.isDisposed ? this._main.content : null;
  }

  /** Reset the panel for a handoff of `model`; bring it to the front unless `activate` is
   *  false (a trial button shows the stages in its own output: the notebook stays). */
  show(model: string, notebook: NotebookPanel, activate = true): HandoffView {
    let main = this._main;
    if (!main || main.isDisposed) {
      main = new MainAreaWidget({ content: new HandoffView() });
      main.id = 'labkit-handoff';
      main.title.icon = handoffIcon;
      main.title.closable = true;
      this._main = main;
    }
    main.content.start(model);
    main.title.label = main.content.title.label;
    if (!main.isAttached) {
      this._app.shell.add(main, 'main', {
        mode: 'tab-after',
        ref: notebook.id,
        activate
      });
    }
    if (activate) {
      this.activate();
    }
    return main.content;
  }

  activate(): void {
    if (this._main && !this._main.isDisposed) {
      this._app.shell.activateById(this._main.id);
    }
  }
}

/** The one tab the Bundles panel opens a report or a diff in (created once, reused). */
export class BundleDocHolder {
  private _main: MainAreaWidget<BundleDocView> | null = null;

  constructor(
    private _app: JupyterFrontEnd,
    private _rendermime: IRenderMimeRegistry
  ) {}

  show(title: string): BundleDocView {
    let main = this._main;
    if (!main || main.isDisposed) {
      main = new MainAreaWidget({
        content: new BundleDocView(this._rendermime)
      });
      main.id = 'labkit-bundle-doc-panel';
      main.title.icon = handoffIcon;
      main.title.closable = true;
      this._main = main;
    }
    main.content.loading(title);
    main.title.label = title;
    if (!main.isAttached) {
      this._app.shell.add(main, 'main', { mode: 'tab-after' });
    }
    this._app.shell.activateById(main.id);
    return main.content;
  }

  /** The tab follows the view's title once the reply named the versions. */
  retitle(): void {
    if (this._main && !this._main.isDisposed) {
      this._main.title.label = this._main.content.title.label;
    }
  }
}
