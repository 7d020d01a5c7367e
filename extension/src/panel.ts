/**
 * Side panel: the bundles in a store, read by the kernel (`list_bundles`). It shows the
 * store the last handoff used once there has been one, else the kernel's default store.
 */

import { Widget } from '@lumino/widgets';

import { h, table } from './dom';
import { formatSpeedup } from './format';
import { IBundleSummary } from './protocol';

export type BundleSource = (store: string | null) => Promise<{
  store: string;
  bundles: IBundleSummary[];
}>;

export class BundlesPanel extends Widget {
  private _content: HTMLElement;
  private _store: string | null = null;

  constructor(private _source: BundleSource) {
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
    const rows = bundles.map(b => [
      b.name,
      b.versions.join(', '),
      b.default_variant ?? '—',
      formatSpeedup(b.speedup),
      b.parity_ok === true
        ? 'pass'
        : b.parity_ok === false
          ? 'FAIL'
          : (b.problem ?? '—')
    ]);
    this._content.replaceChildren(
      h('p', { class: 'labkit-store-path' }, `Store: ${store}`),
      bundles.length
        ? h(
            'div',
            { class: 'labkit-table-scroll' },
            table(['name', 'versions', 'default', 'speed-up', 'parity'], rows)
          )
        : h(
            'p',
            {},
            'The store is empty: hand off a model to create the first bundle.'
          )
    );
  }
}
