import {
  formatCount,
  formatNumber,
  formatSpeedup,
  isUnchanged,
  parityStatus,
  stageIndex,
  validBundleName,
  variantRows
} from '../format';
import { IHandoffResult, IVariant } from '../protocol';

/** A variant with the fields every written one has; the test varies the rest. */
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

describe('number formatting', () => {
  it('formats ordinary, tiny and missing numbers', () => {
    expect(formatNumber(1.23456)).toBe('1.23');
    expect(formatNumber(3.2e-7)).toBe('3.20e-7');
    expect(formatNumber(0)).toBe('0');
    expect(formatNumber(undefined)).toBe('—');
    expect(formatNumber(NaN)).toBe('—');
  });

  it('formats speed-ups and counts', () => {
    expect(formatSpeedup(2.345)).toBe('2.35×');
    expect(formatSpeedup(null)).toBe('—');
    expect(formatCount(2410)).toBe('2.4k');
    expect(formatCount(3.5e6)).toBe('3.5M');
    expect(formatCount(12)).toBe('12');
  });
});

describe('result helpers', () => {
  const result: IHandoffResult = {
    name: 'digits',
    version: '1.1.0',
    path: '/s/digits/1.1.0',
    change: 'minor',
    change_reason: 'weights-only update: drop-in compatible',
    previous: '1.0.0',
    default_variant: 'int8',
    variants: [
      variant({
        name: 'fp32',
        precision: 'fp32',
        parity: { passed: true, max_rel: 1e-7 },
        benchmark: { p50_ms: 0.05 },
        speedup: { p50: 1.8, throughput: 2 }
      }),
      variant({
        name: 'int8',
        precision: 'int8',
        parity: { passed: false },
        speedup: { p50: 3.5, throughput: 2.25 }
      })
    ],
    rejected: [],
    parity: {},
    benchmark: null,
    exporter: { name: 'dynamo', opset: 18, fallback_reason: null }
  };

  it('tells an unchanged model from a new version', () => {
    expect(isUnchanged(result)).toBe(false);
    expect(isUnchanged({ ...result, change: 'none' })).toBe(true);
  });

  it('builds one row per variant, marking the default', () => {
    const rows = variantRows(result);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toEqual([
      'fp32',
      'fp32',
      'pass',
      '1.00e-7',
      '0.05',
      '1.80×',
      '2.00×'
    ]);
    expect(rows[1][0]).toBe('int8 (default)');
    expect(rows[1][2]).toBe('fail');
    expect(rows[1].slice(5)).toEqual(['3.50×', '2.25×']);
    expect(parityStatus(variant({ name: 'x' }))).toBe('unknown');
  });

  it('knows the stage order and bundle names', () => {
    expect(stageIndex('freeze')).toBe(0);
    expect(stageIndex('bundle')).toBe(5);
    expect(stageIndex('nope')).toBe(-1);
    expect(validBundleName('digits-mlp')).toBe(true);
    expect(validBundleName('../evil')).toBe(false);
    expect(validBundleName('Upper')).toBe(false);
  });
});
