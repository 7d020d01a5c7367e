/**
 * What a handoff decided, as rows the result view shows: the layers kept in fp32 with the
 * sensitivity measured for each, the inputs each quantized variant was judged on, and the
 * engine configurations that passed or were rejected. Pure functions over the reply (the
 * facts and their wording come from the kernel); jest runs them in node.
 */

import { formatNumber } from './format';
import { IHandoffResult, IVariant } from './protocol';

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function str(value: unknown): string | null {
  return typeof value === 'string' && value ? value : null;
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

/** The sensitivity the variant measured for `block` (quantized alone), if it kept it. */
function measured(
  quantization: Record<string, unknown>,
  block: string
): Record<string, unknown> {
  const table = quantization.sensitivity;
  if (!Array.isArray(table)) {
    return {};
  }
  return table.find(r => isObject(r) && r.block === block) ?? {};
}

/** The layers kept in fp32, per quantized variant, most sensitive first (the order the
 *  kernel's sensitivity analysis excluded them in). */
export function keptLayers(
  result: Pick<IHandoffResult, 'variants'>
): IKeptLayer[] {
  const rows: IKeptLayer[] = [];
  for (const v of result.variants ?? []) {
    const q = v.quantization;
    if (!isObject(q) || !Array.isArray(q.excluded)) {
      continue;
    }
    for (const e of q.excluded) {
      if (!isObject(e) || typeof e.block !== 'string') {
        continue;
      }
      // The excluded entry carries its own measurement; older records keep it only in
      // the sensitivity table.
      const m = { ...measured(q, e.block), ...e };
      rows.push({
        variant: v.name,
        block: e.block,
        nodes: Array.isArray(e.nodes) ? e.nodes.length : 0,
        metric: str(m.metric),
        metricValue: num(m.metric_value),
        maxRel: num(m.max_rel),
        reason: str(e.reason) ?? ''
      });
    }
  }
  return rows;
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

const JUDGED_TEXT: Record<string, string> = {
  real: 'real inputs (parity_inputs)',
  generated: 'generated inputs only (no parity_inputs given)',
  all: 'every input set'
};

export function judgedOn(
  result: Pick<IHandoffResult, 'variants'>
): IJudgedOn[] {
  const rows: IJudgedOn[] = [];
  for (const v of result.variants ?? []) {
    const q = v.quantization;
    const on = isObject(q) ? str(q.judged_on) : null;
    if (on) {
      rows.push({
        variant: v.name,
        judgedOn: on,
        text: JUDGED_TEXT[on] ?? on
      });
    }
  }
  return rows;
}

/** One engine configuration (engine, precision) of a variant judged at handoff. */
export interface IEngineRow {
  variant: string;
  config: string;
  passed: boolean;
  detail: string;
}

function checksOf(v: IVariant): Record<string, unknown>[] {
  const checks = (v as Record<string, unknown>).checks;
  return Array.isArray(checks) ? checks.filter(isObject) : [];
}

/** Every engine configuration judged at handoff, passed ones first. */
export function engineRows(
  result: Pick<IHandoffResult, 'variants'>
): IEngineRow[] {
  const rows: IEngineRow[] = [];
  for (const v of result.variants ?? []) {
    for (const c of checksOf(v)) {
      const passed = c.passed === true;
      const metric = str(c.metric);
      const value = num(c.metric_value);
      const stats = [
        num(c.max_rel) === null ? '' : `max rel ${formatNumber(c.max_rel)}`,
        metric && value !== null ? `${metric} ${formatNumber(value, 4)}` : ''
      ]
        .filter(Boolean)
        .join(', ');
      rows.push({
        variant: v.name,
        config: `${str(c.engine) ?? '?'}-${str(c.precision) ?? '?'}`,
        passed,
        detail: passed ? stats : (str(c.reason) ?? stats)
      });
    }
  }
  return rows.sort((a, b) => Number(b.passed) - Number(a.passed));
}
