import {
  defaultWhy,
  engineRows,
  judgedOn,
  keptLayers,
  keptRows,
  originLine
} from '../decisions';
import { bundleCells, previousVersion, trialButtons } from '../format';
import { IBundleSummary, IVariant } from '../protocol';
import { stageLine, stageText } from '../stages';

function variant(fields: Partial<IVariant> & { name: string }): IVariant {
  return {
    file: `models/${fields.name}.onnx`,
    sha256: '0'.repeat(64),
    precision: 'fp32',
    tolerance: { rel: 1e-4, metric: 'top1_agreement', min_metric: null },
    speedup: null,
    ...fields
  };
}

/** The int8 record of the outlier-head model (tests/test_sensitivity.py), as written. */
const rescued = variant({
  name: 'int8-dynamic',
  precision: 'int8',
  quantization: {
    options: { name: 'int8-dynamic' },
    judged_on: 'generated',
    excluded: [
      {
        block: 'head',
        nodes: ['node_MatMul_4'],
        reason:
          'quantized alone it gave max rel err 0.00811, top1_agreement 0.6667; kept in fp32',
        metric: 'top1_agreement',
        metric_value: 0.6666667,
        max_rel: 0.0081134
      }
    ],
    sensitivity: []
  }
});

describe('layers kept in fp32', () => {
  it('reads each excluded block with the sensitivity measured for it', () => {
    const rows = keptLayers({
      variants: [variant({ name: 'fp32' }), rescued]
    });
    expect(rows).toEqual([
      {
        variant: 'int8-dynamic',
        block: 'head',
        nodes: 1,
        metric: 'top1_agreement',
        metricValue: 0.6666667,
        maxRel: 0.0081134,
        reason:
          'quantized alone it gave max rel err 0.00811, top1_agreement 0.6667; kept in fp32'
      }
    ]);
    expect(keptRows(rows)).toEqual([
      [
        'int8-dynamic',
        'head',
        'top1_agreement 0.6667',
        '8.11e-3',
        'quantized alone it gave max rel err 0.00811, top1_agreement 0.6667; kept in fp32'
      ]
    ]);
  });

  it('counts a block of several nodes, and says so when nothing was measured', () => {
    const v = variant({
      name: 'int8-static',
      quantization: {
        options: {},
        excluded: [
          { block: 'encoder.layer.0', nodes: ['a', 'b', 'c'], reason: 'kept' }
        ]
      }
    });
    const rows = keptLayers({ variants: [v] });
    expect(keptRows(rows)).toEqual([
      ['int8-static', 'encoder.layer.0 (3 nodes)', '—', '—', 'kept']
    ]);
  });

  it('is empty for fp32 variants and records without exclusions', () => {
    const plain = variant({
      name: 'int8-dynamic',
      quantization: { options: {}, excluded: [] }
    });
    expect(
      keptLayers({ variants: [variant({ name: 'fp32' }), plain] })
    ).toEqual([]);
  });
});

describe('judged on', () => {
  it('says which inputs each quantized variant was judged on', () => {
    const real = variant({
      name: 'int8-static',
      quantization: { options: {}, judged_on: 'real' }
    });
    expect(
      judgedOn({ variants: [variant({ name: 'fp32' }), rescued, real] })
    ).toEqual([
      {
        variant: 'int8-dynamic',
        judgedOn: 'generated',
        text: 'judged on the example inputs and inputs generated from them, not real data (pass parity_inputs=[real batches] to judge it on real data)'
      },
      {
        variant: 'int8-static',
        judgedOn: 'real',
        text: 'judged on your real data (parity_inputs)'
      }
    ]);
  });
});

describe('engine configurations', () => {
  it('lists passed ones first, rejected ones with their reason', () => {
    const tolerance = { rel: 1e-4, metric: null, min_metric: null };
    const v = variant({
      name: 'fp32',
      checks: [
        {
          engine: 'openvino',
          precision: 'bf16',
          passed: false,
          tolerance,
          judged_on: 'all',
          max_rel: 0.5,
          reason: 'max rel 0.5 > 0.01'
        },
        {
          engine: 'onnxruntime',
          precision: 'fp32',
          passed: true,
          tolerance,
          judged_on: 'all',
          max_rel: 2e-7,
          metric: 'top1_agreement',
          metric_value: 1
        }
      ]
    });
    expect(engineRows({ variants: [v] })).toEqual([
      {
        variant: 'fp32',
        config: 'onnxruntime-fp32',
        passed: true,
        detail: 'max rel 2.00e-7, top1_agreement 1'
      },
      {
        variant: 'fp32',
        config: 'openvino-bf16',
        passed: false,
        detail: 'max rel 0.5 > 0.01'
      }
    ]);
  });
});

describe('default variant rule', () => {
  const rule = {
    rule: 'the incumbent stays the default unless …',
    chosen: 'int8-dynamic',
    incumbent: 'fp32',
    previous: null,
    previous_version: null,
    reliable: true,
    reason: 'int8-dynamic beats fp32 (1.412×; margin 5.0%, noise 3.1%)',
    scores: { fp32: 1.81, 'int8-dynamic': 2.556 },
    noise: 0.0312,
    margin: 0.05
  };

  it('shows the reason, each score best first, and the noise and margin', () => {
    expect(defaultWhy({ default_rule: rule })).toEqual({
      chosen: 'int8-dynamic',
      rule: rule.rule,
      reason: rule.reason,
      reliable: true,
      rows: [
        ['int8-dynamic', '2.56×', 'default'],
        ['fp32', '1.81×', 'incumbent']
      ],
      bounds: 'noise ±3.1%, margin 5.0%'
    });
  });

  it('has no scores when the numbers were unreliable, and nothing without a rule', () => {
    const unreliable = {
      ...rule,
      chosen: 'fp32',
      reliable: false,
      scores: {},
      noise: null,
      margin: null
    };
    const why = defaultWhy({ default_rule: unreliable })!;
    expect(why.rows).toEqual([]);
    expect(why.bounds).toBe('');
    expect(defaultWhy({ default_rule: null })).toBeNull();
    expect(defaultWhy({})).toBeNull();
  });
});

describe('bundles panel rows', () => {
  const b: IBundleSummary = {
    name: 'digits',
    versions: ['1.0.0', '1.1.0'],
    latest: '1.1.0',
    path: '/s/digits/1.1.0',
    default_variant: 'int8-dynamic',
    speedup: 2.345,
    parity_ok: true
  };

  it('shows a row and diffs the latest against the version before it', () => {
    expect(bundleCells(b)).toEqual([
      'digits',
      '1.0.0, 1.1.0',
      'int8-dynamic',
      '2.35×',
      'pass'
    ]);
    expect(previousVersion(b)).toBe('1.0.0');
    expect(
      previousVersion({ ...b, versions: ['1.0.0'], latest: '1.0.0' })
    ).toBe(null);
  });

  it('shows why an unreadable bundle is not summarized', () => {
    const broken = {
      ...b,
      default_variant: null,
      speedup: null,
      parity_ok: null,
      problem: 'manifest.json: bad JSON'
    };
    expect(bundleCells(broken).slice(2)).toEqual([
      '—',
      '—',
      'manifest.json: bad JSON'
    ]);
  });
});

describe('stage chips', () => {
  it('say how long a stage took, why it was skipped, and which stage runs', () => {
    expect(
      stageText({
        stage: 'export',
        status: 'done',
        message: '',
        elapsed_s: 3.27
      })
    ).toBe('3.3 s');
    expect(
      stageText({
        stage: 'benchmark',
        status: 'info',
        message: 'round 3/8',
        elapsed_s: null
      })
    ).toBe('round 3/8');
    expect(
      stageText({
        stage: 'bundle',
        status: 'skip',
        message: 'identical to 1.0.0'
      })
    ).toBe('skipped: identical to 1.0.0');
    expect(stageLine({ stage: 'parity', status: 'start' })).toBe(
      'Stage 3/6: parity…'
    );
    expect(stageLine({ stage: 'parity', status: 'done' })).toBeNull();
  });
});

describe('experiment trials', () => {
  const data = {
    metric: 'val_loss',
    trials: [
      {
        id: 1,
        params: { hidden: 4, lr: 0.1 },
        metrics: { val_loss: 0.41234 },
        latency_ms: 0.01,
        status: 'ok' as const,
        weights_saved: true,
        pareto: true,
        best: false
      },
      {
        id: 2,
        params: { hidden: 16, lr: 0.1 },
        metrics: { val_loss: 0.2 },
        latency_ms: 0.02,
        status: 'ok' as const,
        weights_saved: false,
        pareto: true,
        best: true
      },
      {
        id: 3,
        params: { hidden: 64, lr: 0.1 },
        metrics: {},
        latency_ms: null,
        status: 'failed' as const,
        weights_saved: false,
        pareto: false,
        best: false
      }
    ]
  };

  it('has a button per trial: the best named, a failed one disabled', () => {
    expect(trialButtons(data)).toEqual([
      {
        id: 1,
        label: 'hand off trial #1',
        enabled: true,
        title:
          'hidden=4, lr=0.1 · val_loss 0.4123 · weights saved: can be handed off after a kernel restart too'
      },
      {
        id: 2,
        label: 'hand off trial #2 (best)',
        enabled: true,
        title:
          'hidden=16, lr=0.1 · val_loss 0.2 · weights not saved: only while this kernel still holds the model'
      },
      {
        id: 3,
        label: 'hand off trial #3',
        enabled: false,
        title: 'hidden=64, lr=0.1 · this trial failed: nothing to hand off'
      }
    ]);
  });

  it('names the trial a bundle was handed off from', () => {
    const experiment = {
      name: 'ui-sweep',
      run: 'r20261204-1',
      trial: 2,
      params: { hidden: 16 },
      metrics: { val_loss: 0.31234, train_loss: 0.2 },
      metric: 'val_loss',
      goal: 'min' as const
    };
    expect(originLine({ experiment })).toBe(
      'experiment ui-sweep, run r20261204-1, trial #2: hidden=16 · val_loss 0.3123 (goal: min)'
    );
    expect(originLine({ experiment: null })).toBeNull();
  });
});
