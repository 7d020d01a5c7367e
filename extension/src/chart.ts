/**
 * The result view's speed chart. The figure is built in the kernel by the one chart builder
 * (`labkit.notebook.charts.speed_figure`, the same figure the notebook shows for a
 * HandoffResult) and arrives as plotly JSON in the handoff reply's `figure`; this module only
 * checks its shape and adapts it to the dialog. Kept free of plotly.js itself so jest runs it
 * in node; the view loads plotly.js lazily to draw it.
 */

import { IHandoffReply } from './protocol';

export interface IPlotSpec {
  data: Record<string, unknown>[];
  layout: Record<string, unknown>;
  config: Record<string, unknown>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** What plotly.js draws for this reply, or null when the kernel sent no figure (no variant
 *  was benchmarked, or plotly is not installed in the kernel) or it is not a figure. */
export function plotSpec(
  reply: Pick<IHandoffReply, 'figure'>
): IPlotSpec | null {
  const figure = reply.figure;
  if (!isObject(figure) || !Array.isArray(figure.data)) {
    return null;
  }
  const data = figure.data.filter(isObject);
  if (!data.length) {
    return null;
  }
  const layout = isObject(figure.layout) ? figure.layout : {};
  return {
    data,
    // The dialog sets the width; plotly follows its container.
    layout: { ...layout, width: undefined, autosize: true },
    config: { displaylogo: false, responsive: true, staticPlot: false }
  };
}

/** One bar series of the chart: which speed-up it shows, per variant label. */
export interface ISpeedSeries {
  series: string;
  labels: string[];
  values: (number | null)[];
}

/** The bars a spec draws, per series (`meta` names the speed-up: p50 or throughput). */
export function speedSeries(spec: IPlotSpec): ISpeedSeries[] {
  return spec.data
    .filter(t => t.type === 'bar')
    .map(t => ({
      series: String(t.meta ?? t.name ?? ''),
      labels: Array.isArray(t.x) ? t.x.map(String) : [],
      values: Array.isArray(t.y)
        ? t.y.map(v => (typeof v === 'number' ? v : null))
        : []
    }));
}

/** The chart in words, for screen readers and as the chart element's title. */
export function chartLabel(spec: IPlotSpec): string {
  return speedSeries(spec)
    .map(
      s =>
        `${s.series}: ` +
        s.labels
          .map((l, i) => {
            const v = s.values[i];
            return `${l} ${v === null || v === undefined ? '—' : `${v.toFixed(2)}×`}`;
          })
          .join(', ')
    )
    .join('; ');
}
