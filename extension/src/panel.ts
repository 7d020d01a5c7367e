/**
 * Side panel: the bundles in a store, read by the kernel (`list_bundles`). It shows the
 * store the last handoff used once there has been one, else the kernel's default store.
 * A row opens its bundle's report; "diff" compares the latest version with the one before.
 */

import { Widget } from '@lumino/widgets';

import { h } from './dom';
import { bundleCells, previousVersion } from './format';
import { IBundleSummary } from './protocol';

export type BundleSource = (store: string | null) => Promise<{
  store: string;
  bundles: IBundleSummary[];
}>;

/** What a row asks for: the report of its latest version, or the diff against the
 *  version before it (`store` is the store the panel lists). */
export interface IBundleActions {
  openReport(bundle: IBundleSummary, store: string): void;
  diffPrevious(bundle: IBundleSummary, store: string): void;
}

export class BundlesPanel extends Widget {
  private _content: HTMLElement;
  private _store: string | null = null;

  constructor(
    private _source: BundleSource,
    private _actions: IBundleActions | null = null
  ) {
    super();
    this.id = 'labkit-bundles';
    this.addClass('labkit-BundlesPanel');
    this.title.caption = 'labkit bundles';
    const refresh = h(
      'button',
      { class: 'jp-mod-styled labkit-refresh' },
      'Refresh'
    );
    refresh.addEventListener('click', () => void this.refresh());
    this._content = h(
      'div',
      { class: 'labkit-bundles-content' },
      'No bundles listed yet.'
    );
    this.node.append(h('h3', {}, 'Bundles'), refresh, this._content);
  }

  setSource(source: BundleSource): void {
    this._source = source;
  }

  /** Show this store from now on (the one a handoff just wrote to), and refresh. */
  setStore(store: string): Promise<void> {
    this._store = store || null;
    return this.refresh();
  }

  get store(): string | null {
    return this._store;
  }

  async refresh(): Promise<void> {
    this._content.replaceChildren(h('p', {}, 'Loading…'));
    try {
      const { store, bundles } = await this._source(this._store);
      this.render(store, bundles);
    } catch (err) {
      this._content.replaceChildren(
        h('p', { class: 'labkit-bundles-error' }, (err as Error).message)
      );
    }
  }

  render(store: string, bundles: IBundleSummary[]): void {
    const headers = ['name', 'versions', 'default', 'speed-up', 'parity', ''];
    const rows = bundles.map(b => this._row(b, store));
    this._content.replaceChildren(
      h('p', { class: 'labkit-store-path' }, `Store: ${store}`),
      bundles.length
        ? h(
            'div',
            { class: 'labkit-table-scroll' },
            h(
              'table',
              { class: 'labkit-table labkit-bundles' },
              h('thead', {}, h('tr', {}, ...headers.map(t => h('th', {}, t)))),
              h('tbody', {}, ...rows)
            ),
            h(
              'p',
              { class: 'labkit-hint' },
              'Click a bundle to read its report.'
            )
          )
        : h(
            'p',
            {},
            'The store is empty: hand off a model to create the first bundle.'
          )
    );
  }

  private _row(b: IBundleSummary, store: string): HTMLElement {
    const cells = bundleCells(b).map(c => h('td', {}, c));
    const previous = previousVersion(b);
    const diff = h(
      'button',
      {
        class: 'jp-mod-styled labkit-diff-previous',
        title: previous
          ? `What changed from ${previous} to ${b.latest}`
          : 'Only one version: nothing to compare',
        disabled: previous === null
      },
      'diff'
    );
    diff.addEventListener('click', event => {
      event.stopPropagation();
      this._actions?.diffPrevious(b, store);
    });
    const row = h(
      'tr',
      {
        class: 'labkit-bundle-row',
        tabindex: '0',
        role: 'button',
        'data-name': b.name,
        title: `Open the report of ${b.name} ${b.latest}`
      },
      ...cells,
      h('td', {}, diff)
    );
    const open = (): void => this._actions?.openReport(b, store);
    row.addEventListener('click', open);
    row.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        open();
      }
    });
    return row;
  }
}
