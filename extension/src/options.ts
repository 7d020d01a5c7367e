/** The body of the "Hand off model" dialog: which model, bundle name, quantize, store. */

import { Dialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { h } from './dom';
import { formatCount } from './format';
import { IModelInfo } from './protocol';

export interface IHandoffOptions {
  model: string;
  name: string;
  quantize: boolean;
  store: string;
}

export class OptionsBody
  extends Widget
  implements Dialog.IBodyWidget<IHandoffOptions>
{
  private _model: HTMLSelectElement;
  private _name: HTMLInputElement;
  private _quantize: HTMLInputElement;
  private _store: HTMLInputElement;

  constructor(models: IModelInfo[], store: string) {
    super();
    this.addClass('labkit-Options');
    this._model = h('select', {
      name: 'model',
      class: 'labkit-model'
    }) as HTMLSelectElement;
    for (const m of models) {
      const shapes = m.inputs
        .map(i => `[${(i.shape ?? []).join(', ')}]`)
        .join(' ');
      const label = `${m.name} — ${m.model_class}, ${formatCount(m.parameters)} params, ${shapes}`;
      this._model.appendChild(h('option', { value: m.name }, label));
    }
    this._name = h('input', {
      type: 'text',
      name: 'name',
      class: 'labkit-name',
      value: models[0]?.name ?? ''
    }) as HTMLInputElement;
    this._model.addEventListener('change', () => {
      this._name.value = this._model.value;
    });
    this._quantize = h('input', {
      type: 'checkbox',
      name: 'quantize',
      class: 'labkit-quantize',
      checked: true
    }) as HTMLInputElement;
    this._store = h('input', {
      type: 'text',
      name: 'store',
      class: 'labkit-store',
      value: store
    }) as HTMLInputElement;
    this.node.append(
      h(
        'label',
        { style: models.length > 1 ? '' : 'display:none' },
        'Model ',
        this._model
      ),
      h('label', {}, 'Bundle name ', this._name),
      h(
        'label',
        {},
        this._quantize,
        ' Try int8 quantization (kept only if it passes parity)'
      ),
      h('label', {}, 'Store ', this._store)
    );
  }

  getValue(): IHandoffOptions {
    return {
      model: this._model.value,
      name: this._name.value.trim(),
      quantize: this._quantize.checked,
      store: this._store.value.trim()
    };
  }
}
