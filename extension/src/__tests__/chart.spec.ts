/**
 * The result view's speed chart: the kernel's figure (fixtures/figure-first.json is what
 * `labkit.notebook.charts.speed_figure` builds for fixtures/event-first.json's result, a real
 * handoff) reaches plotly.js with bars equal to the result's speed-ups, default marked.
 */

import * as fs from 'fs';
import * as path from 'path';

import { chartLabel, plotSpec, speedSeries } from '../chart';
import { speedup } from '../format';
import { IHandoffReply } from '../protocol';

function fixture(name: string): any {
  return JSON.parse(
    fs.readFileSync(path.join(__dirname, 'fixtures', `${name}.json`), 'utf-8')
  );
}

const event = fixture('event-first');
const reply: IHandoffReply = {
  result: event.result,
  store: event.store,
  headline: event.headline,
  figure: fixture('figure-first')
};

describe('plotSpec', () => {
  it('draws one bar per benchmarked variant and series, valued at its speed-up', () => {
    const spec = plotSpec(reply)!;
    expect(spec).not.toBeNull();
    const series = speedSeries(spec);
    expect(series.map(s => s.series)).toEqual(['p50', 'throughput']);
    const variants = reply.result.variants ?? [];
    expect(variants.length).toBeGreaterThan(0);
    for (const s of series) {
      expect(s.values).toEqual(
        variants.map(v => speedup(v, s.series as 'p50' | 'throughput'))
      );
    }
  });

  it('marks the default variant and keeps the 1x PyTorch line', () => {
    const spec = plotSpec(reply)!;
    const labels = speedSeries(spec)[0].labels;
    const def = reply.result.default_variant;
    expect(labels).toContain(`${def} (default)`);
    const widths = (spec.data[0].marker as any).line.width as number[];
    expect(widths[labels.indexOf(`${def} (default)`)]).toBeGreaterThan(0);
    const shapes = spec.layout.shapes as any[];
    expect(shapes[0].y0).toBe(1);
    expect(shapes[0].y1).toBe(1);
  });

  it('lets the dialog size the chart', () => {
    const spec = plotSpec(reply)!;
    expect(spec.layout.width).toBeUndefined();
    expect(spec.layout.autosize).toBe(true);
    expect(spec.config.displaylogo).toBe(false);
  });

  it('is null without a usable figure', () => {
    expect(plotSpec({ figure: null })).toBeNull();
    expect(plotSpec({})).toBeNull();
    expect(plotSpec({ figure: { data: 'bars' } })).toBeNull();
    expect(plotSpec({ figure: { data: [] } })).toBeNull();
  });

  it('says the chart in words', () => {
    const spec = plotSpec({
      figure: {
        data: [
          {
            type: 'bar',
            meta: 'p50',
            x: ['fp32 (default)', 'int8'],
            y: [2.5, 4]
          },
          {
            type: 'bar',
            meta: 'throughput',
            x: ['fp32 (default)', 'int8'],
            y: [1.9, null]
          }
        ]
      }
    })!;
    expect(chartLabel(spec)).toBe(
      'p50: fp32 (default) 2.50×, int8 4.00×; throughput: fp32 (default) 1.90×, int8 —'
    );
  });
});
