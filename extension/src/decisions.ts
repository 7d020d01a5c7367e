/**
 * What a handoff decided, as rows the result view shows: the layers kept in fp32 with the
 * sensitivity measured for each, the inputs each quantized variant was judged on, and the
 * engine configurations that passed or were rejected. Pure functions over the reply (the
 * facts and their wording come from the kernel); jest runs them in node.
 */

import { formatNumber } from './format';
import { IHandoffResult, JUDGED_ON_WORDS } from './protocol';

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** One layer (a module's block of nodes) a quantized variant keeps in fp32. */
export interface IKeptLayer {
  variant: string;
  block: string;
  nodes: number;
  /** The task metric measured with only this block quantized (e.g. top1_agreement). */
  metric: string | null;
  metricValue: number | null;
  /** The largest relative error measured with only this block quantized. */
  maxRel: number | null;
  reason: string;
}

/** The layers kept in fp32, per quantized variant, most sensitive first (the order the
 *  kernel's sensitivity analysis excluded them in), each with what it measured when it
 *  alone was quantized. */
export function keptLayers(
  result: Pick<IHandoffResult, 'variants'>
): IKeptLayer[] {
  return (result.variants ?? []).flatMap(v =>
    (v.quantization?.excluded ?? []).map(e => ({
      variant: v.name,
      block: e.block,
      nodes: e.nodes.length,
      metric: e.metric ?? null,
      metricValue: num(e.metric_value),
      maxRel: num(e.max_rel),
      reason: e.reason
    }))
  );
}

export const KEPT_HEADERS = [
  'variant',
  'layer kept in fp32',
  'quantized alone',
  'max rel error',
  'why'
];

/** Display rows of the kept-layer table. */
export function keptRows(rows: IKeptLayer[]): string[][] {
  return rows.map(r => [
    r.variant,
    r.nodes > 1 ? `${r.block} (${r.nodes} nodes)` : r.block,
    r.metricValue === null
      ? '—'
      : `${r.metric ?? 'metric'} ${formatNumber(r.metricValue, 4)}`,
    formatNumber(r.maxRel),
    r.reason
  ]);
}

/** What a quantized variant's verdict was reached on: the user's data or generated inputs. */
export interface IJudgedOn {
  variant: string;
  judgedOn: string;
  text: string;
}

export function judgedOn(
  result: Pick<IHandoffResult, 'variants'>
): IJudgedOn[] {
  return (result.variants ?? []).flatMap(v => {
    const on = v.quantization?.judged_on;
    return on
      ? [{ variant: v.name, judgedOn: on, text: JUDGED_ON_WORDS[on] }]
      : [];
  });
}

/** One engine configuration (engine, precision) of a variant judged at handoff. */
export interface IEngineRow {
  variant: string;
  config: string;
  passed: boolean;
  detail: string;
}

/** Every engine configuration judged at handoff, passed ones first. */
export function engineRows(
  result: Pick<IHandoffResult, 'variants'>
): IEngineRow[] {
  const rows = (result.variants ?? []).flatMap(v =>
    (v.checks ?? []).map(c => {
      const stats = [
        num(c.max_rel) === null ? '' : `max rel ${formatNumber(c.max_rel)}`,
        c.metric && num(c.metric_value) !== null
          ? `${c.metric} ${formatNumber(c.metric_value, 4)}`
          : ''
      ]
        .filter(Boolean)
        .join(', ');
      return {
        variant: v.name,
        config: `${c.engine}-${c.precision}`,
        passed: c.passed,
        detail: c.passed ? stats : (c.reason ?? stats)
      };
    })
  );
  return rows.sort((a, b) => Number(b.passed) - Number(a.passed));
}

/** Why the default variant is the default: the kernel's rule and reason, and the score
 *  of every variant it compared (geometric mean of its batch-1 and batch-N speed-ups). */
export interface IDefaultWhy {
  chosen: string;
  rule: string;
  reason: string;
  reliable: boolean;
  rows: string[][];
  /** "noise ±3.0%, margin 5.0%" when measured, else ''. */
  bounds: string;
}

export const SCORE_HEADERS = ['variant', 'score', ''];

function percent(value: number | null | undefined): string | null {
  const v = num(value);
  return v === null ? null : `${(v * 100).toFixed(1)}%`;
}

export function defaultWhy(
  result: Pick<IHandoffResult, 'default_rule'>
): IDefaultWhy | null {
  const r = result.default_rule;
  if (!r) {
    return null;
  }
  const rows = Object.entries(r.scores)
    .sort((a, b) => b[1] - a[1])
    .map(([name, score]) => [
      name,
      `${score.toFixed(2)}×`,
      [
        name === r.chosen ? 'default' : '',
        name === r.incumbent ? 'incumbent' : ''
      ]
        .filter(Boolean)
        .join(', ')
    ]);
  const noise = percent(r.noise);
  const margin = percent(r.margin);
  const bounds = [
    noise ? `noise ±${noise}` : '',
    margin ? `margin ${margin}` : ''
  ]
    .filter(Boolean)
    .join(', ');
  return {
    chosen: r.chosen,
    rule: r.rule,
    reason: r.reason,
    reliable: r.reliable,
    rows,
    bounds
  };
}

/** Where a handed-off model came from when it was an experiment's trial, in one line:
 *  "experiment ui-sweep, run r1, trial #2: hidden=16 · val_loss 0.3123 (goal: min)". */
export function originLine(
  result: Pick<IHandoffResult, 'experiment'>
): string | null {
  const e = result.experiment;
  if (!e) {
    return null;
  }
  const params = Object.entries(e.params)
    .map(
      ([k, v]) =>
        `${k}=${typeof v === 'number' ? formatNumber(v, 4) : String(v)}`
    )
    .join(', ');
  const value = e.metrics[e.metric];
  const metric =
    typeof value === 'number'
      ? `${e.metric} ${formatNumber(value, 4)} (goal: ${e.goal})`
      : '';
  const facts = [params, metric].filter(Boolean).join(' · ');
  return `experiment ${e.name}, run ${e.run}, trial #${e.trial}${facts ? `: ${facts}` : ''}`;
}
