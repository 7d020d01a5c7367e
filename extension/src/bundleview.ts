/**
 * The one main-area tab the Bundles panel opens: a bundle's report.md rendered as markdown,
 * or what changed against the version before it (`handoff diff`'s text, computed in the
 * kernel). Reused for every row, like the Handoff panel, so tabs do not pile up.
 */

import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

import { h } from './dom';
import { IDiffReply, IReportReply } from './protocol';

export class BundleDocView extends Widget {
  private _heading: HTMLElement;
  private _body: HTMLElement;
  private _renderer: Widget | null = null;

  constructor(private _rendermime: IRenderMimeRegistry) {
    super();
    this.id = 'labkit-bundle-doc';
    this.addClass('labkit-BundleDocView');
    this.title.label = 'Bundle';
    this.title.closable = true;
    this._heading = h('h2', {}, '');
    this._body = h('div', { class: 'labkit-bundle-doc-body' });
    this.node.append(this._heading, this._body);
  }

  private _clear(): void {
    this._renderer?.dispose();
    this._renderer = null;
  }

  dispose(): void {
    this._clear();
    super.dispose();
  }

  loading(title: string): void {
    this._clear();
    this.title.label = title;
    this._heading.textContent = title;
    delete this.node.dataset.kind;
    this._body.replaceChildren(h('p', {}, 'Loading…'));
  }

  showError(title: string, message: string): void {
    this._clear();
    this.title.label = title;
    this._heading.textContent = title;
    this.node.dataset.kind = 'error';
    this._body.replaceChildren(
      h('pre', { class: 'labkit-error-message' }, message)
    );
  }

  /** report.md, rendered by JupyterLab's markdown renderer (sanitized, like a notebook's). */
  async showReport(reply: IReportReply): Promise<void> {
    const title = `Report: ${reply.name} ${reply.version}`;
    this.title.label = title;
    this._heading.textContent = title;
    this.node.dataset.kind = 'report';
    this.node.dataset.bundle = `${reply.name}/${reply.version}`;
    this._clear();
    const renderer = this._rendermime.createRenderer('text/markdown');
    this._renderer = renderer;
    const model = this._rendermime.createModel({
      data: { 'text/markdown': reply.markdown },
      trusted: false
    });
    await renderer.renderModel(model);
    renderer.addClass('labkit-report');
    this._body.replaceChildren(
      h('p', {}, 'Bundle: ', h('code', { class: 'labkit-path' }, reply.path)),
      renderer.node
    );
  }

  /** What changed from the previous version, in `handoff diff`'s words. */
  showDiff(reply: IDiffReply): void {
    this._clear();
    const title = `Diff: ${reply.name} ${reply.from_version} → ${reply.to_version}`;
    this.title.label = title;
    this._heading.textContent = title;
    this.node.dataset.kind = 'diff';
    this.node.dataset.bundle = `${reply.name}/${reply.to_version}`;
    const change = reply.diff.change;
    this._body.replaceChildren(
      h(
        'pre',
        {
          class: 'labkit-diff',
          'data-change': typeof change === 'string' ? change : ''
        },
        reply.lines.join('\n')
      )
    );
  }
}
