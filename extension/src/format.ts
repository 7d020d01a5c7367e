/** Pure formatting helpers for the dialog, result view and side panel. */

import {
  BUNDLE_NAME_RE,
  IBundleSummary,
  IExperimentOutput,
  IHandoffResult,
  IVariant,
  STAGES
} from './protocol';

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

/** A result that wrote nothing: the model is identical to a stored version. */
export function isUnchanged(result: { change: unknown }): boolean {
  return result.change === 'none';
}

export function parityStatus(v: IVariant): 'pass' | 'fail' | 'unknown' {
  const ok = v.parity?.passed;
  return ok === true ? 'pass' : ok === false ? 'fail' : 'unknown';
}

export function maxRelError(v: IVariant): unknown {
  return v.parity?.max_rel;
}

/** Speed-up vs PyTorch eager: `speedup` on a result's variant. */
export function speedup(
  v: IVariant,
  kind: 'p50' | 'throughput' = 'p50'
): unknown {
  return v.speedup?.[kind];
}

/** Batch-1 median latency of the variant on the machine that made the bundle. */
export function latencyMs(v: IVariant): unknown {
  return v.benchmark?.p50_ms;
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
  return BUNDLE_NAME_RE.test(name);
}

/** The display cells of one bundle's row (name, versions, default, speed-up, parity). */
export function bundleCells(b: IBundleSummary): string[] {
  return [
    b.name,
    b.versions.join(', '),
    b.default_variant ?? '—',
    formatSpeedup(b.speedup),
    b.parity_ok === true
      ? 'pass'
      : b.parity_ok === false
        ? 'FAIL'
        : (b.problem ?? '—')
  ];
}

/** The version a row's diff compares the latest one against, or null with one version. */
export function previousVersion(b: IBundleSummary): string | null {
  const i = b.versions.indexOf(b.latest);
  return i > 0 ? b.versions[i - 1] : null;
}

/** One "hand off trial #N" button of an experiment's output. */
export interface ITrialButton {
  id: number;
  label: string;
  enabled: boolean;
  title: string;
}

function shown(value: unknown): string {
  return typeof value === 'number' ? formatNumber(value, 4) : String(value);
}

/** The buttons of an experiment's output: one per trial, the failed ones disabled. A trial
 *  whose weights were saved can be handed off after a kernel restart too. */
export function trialButtons(
  data: Pick<IExperimentOutput, 'metric' | 'trials'>
): ITrialButton[] {
  return data.trials.map(t => {
    const params = Object.entries(t.params)
      .map(([k, v]) => `${k}=${shown(v)}`)
      .join(', ');
    const value = t.metrics[data.metric];
    const facts = [
      params,
      value === undefined ? '' : `${data.metric} ${shown(value)}`
    ].filter(Boolean);
    const ok = t.status === 'ok';
    const how = !ok
      ? 'this trial failed: nothing to hand off'
      : t.weights_saved
        ? 'weights saved: can be handed off after a kernel restart too'
        : 'weights not saved: only while this kernel still holds the model';
    return {
      id: t.id,
      label: `hand off trial #${t.id}${t.best ? ' (best)' : ''}`,
      enabled: ok,
      title: [...facts, how].join(' · ')
    };
  });
}
