/** Pure formatting helpers for the dialog, result view and side panel. */

import { IHandoffResult, IVariant, STAGES } from './protocol';

export const CHANGE_TEXT: Record<string, string> = {
  first: 'first version of this model',
  minor: 'weights-only update (minor): drop-in compatible',
  major: 'breaking change (major): architecture or signature changed',
  patch: 'metadata-only update (patch)',
  none: 'nothing changed: no new version was written'
};

export function formatNumber(value: unknown, digits = 3): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    return '—';
  }
  if (value !== 0 && (Math.abs(value) < 1e-2 || Math.abs(value) >= 1e5)) {
    return value.toExponential(2);
  }
  return String(Number(value.toPrecision(digits)));
}

export function formatSpeedup(value: unknown): string {
  return typeof value === 'number' && Number.isFinite(value)
    ? `${value.toFixed(2)}×`
    : '—';
}

export function formatCount(value: unknown): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    return '—';
  }
  const units: [string, number][] = [
    ['G', 1e9],
    ['M', 1e6],
    ['k', 1e3]
  ];
  for (const [unit, size] of units) {
    if (Math.abs(value) >= size) {
      return `${(value / size).toFixed(1)}${unit}`;
    }
  }
  return String(value);
}

export function describeChange(
  result: Pick<IHandoffResult, 'change' | 'change_reason'>
): string {
  const base = CHANGE_TEXT[result.change] ?? result.change;
  return result.change_reason ? `${base} — ${result.change_reason}` : base;
}

function pick(
  obj: Record<string, unknown> | undefined,
  keys: string[]
): unknown {
  if (!obj) {
    return undefined;
  }
  for (const k of keys) {
    if (obj[k] !== undefined && obj[k] !== null) {
      return obj[k];
    }
  }
  return undefined;
}

export function parityStatus(v: IVariant): 'pass' | 'fail' | 'unknown' {
  const ok = pick(v.parity, ['ok', 'passed']);
  return ok === true ? 'pass' : ok === false ? 'fail' : 'unknown';
}

export function maxRelError(v: IVariant): unknown {
  return pick(v.parity, ['max_rel', 'max_rel_error', 'rel_error']);
}

/** Speed-up vs PyTorch: `speedup` on a result's variant, `benchmark.speedup` in a manifest. */
export function speedup(
  v: IVariant,
  kind: 'p50' | 'throughput' = 'p50'
): unknown {
  const nested = v.speedup ?? (v.benchmark?.speedup as IVariant['speedup']);
  if (nested && typeof nested === 'object') {
    return nested[kind];
  }
  return kind === 'p50' ? v.speedup_p50 : v.speedup_throughput;
}

export function latencyMs(v: IVariant): unknown {
  return pick(v.benchmark, ['p50_ms', 'latency_p50_ms', 'p50']);
}

/** Rows of the result view's table, one per variant, as display strings. */
export function variantRows(result: IHandoffResult): string[][] {
  return (result.variants ?? []).map(v => [
    v.name === result.default_variant ? `${v.name} (default)` : v.name,
    v.precision ?? '',
    parityStatus(v),
    formatNumber(maxRelError(v)),
    formatNumber(latencyMs(v)),
    formatSpeedup(speedup(v)),
    formatSpeedup(speedup(v, 'throughput'))
  ]);
}

export const VARIANT_HEADERS = [
  'variant',
  'precision',
  'parity',
  'max rel error',
  'p50 ms',
  'speed-up p50',
  'speed-up throughput'
];

export function stageIndex(stage: string): number {
  return (STAGES as readonly string[]).indexOf(stage);
}

/** The instruction shown when the kernel has not imported labkit. */
export const IMPORT_HINT =
  'import labkit\nlabkit.register(model, example_inputs, name="my-model")';

export const REGISTER_HINT =
  'labkit.register(model, example_inputs, name="my-model")';

/** A bundle name a user may type: the store's rule, checked before asking the kernel. */
export function validBundleName(name: string): boolean {
  return /^[a-z0-9][a-z0-9._-]{0,63}$/.test(name);
}
