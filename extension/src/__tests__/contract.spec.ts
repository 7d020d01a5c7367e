/**
 * The extension against the contract Python really writes: the payloads in `fixtures/` come
 * from real handoffs (`python scripts/gen_schema.py --fixtures`), the schema is generated
 * from the Python types, and the UI's helpers must find real values in them.
 */

import * as fs from 'fs';
import * as path from 'path';

import Ajv2020 from 'ajv/dist/2020';

import {
  isUnchanged,
  latencyMs,
  maxRelError,
  parityStatus,
  speedup,
  validBundleName,
  variantRows
} from '../format';
import {
  BUNDLE_NAME_RE,
  IHandoffEvent,
  IHandoffResult,
  PROTOCOL_VERSION,
  STAGES,
  STAGE_STATUSES,
  parseKernelMessage
} from '../protocol';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const schema = JSON.parse(
  fs.readFileSync(path.join(ROOT, 'schema', 'labkit.schema.json'), 'utf-8')
);
const ajv = new Ajv2020({ allErrors: true, strict: false });
ajv.addSchema(schema, 'labkit');

function fixture(name: string): any {
  return JSON.parse(
    fs.readFileSync(path.join(__dirname, 'fixtures', `${name}.json`), 'utf-8')
  );
}

function check(definition: string, payload: unknown): string {
  const validate = ajv.getSchema(`labkit#/$defs/${definition}`);
  if (!validate) {
    throw new Error(`no definition ${definition}`);
  }
  return validate(payload) ? '' : ajv.errorsText(validate.errors);
}

const LABELS = ['first', 'minor', 'none'];

describe('schema generated from the Python types', () => {
  it('carries the constants the extension compiles in', () => {
    const c = schema['x-constants'];
    expect(c.PROTOCOL_VERSION).toBe(PROTOCOL_VERSION);
    expect(c.STAGES).toEqual([...STAGES]);
    expect(c.STAGE_STATUSES).toEqual([...STAGE_STATUSES]);
    expect(c.BUNDLE_NAME_PATTERN).toBe(BUNDLE_NAME_RE.source);
  });

  it.each(LABELS)('validates the real %s result and its progress', label => {
    const event = fixture(`event-${label}`);
    expect(check('HandoffEvent', event)).toBe('');
    for (const progress of fixture(`progress-${label}`)) {
      expect(check('HandoffEvent', progress)).toBe('');
    }
  });

  it('validates a real manifest.json', () => {
    expect(check('Manifest', fixture('manifest'))).toBe('');
  });

  it('refuses payloads the kernel never writes', () => {
    const result = fixture('event-first').result;
    expect(check('HandoffResult', { ...result, ok: true })).not.toBe('');
    expect(
      check('ProgressEvent', { stage: 'export', status: 'finished' })
    ).not.toBe('');
    expect(check('HandoffRequest', { notebook_path: 'a.ipynb' })).not.toBe('');
    const request = {
      model: 'digits',
      store: null,
      source: 'a.ipynb',
      options: { quantize: false, name: null }
    };
    expect(check('HandoffRequest', request)).toBe('');
  });
});

describe('the UI reads what Python writes', () => {
  const first: IHandoffResult = (fixture('event-first') as IHandoffEvent)
    .result as IHandoffResult;

  it('finds parity, latency and speed-up in a real result', () => {
    const fp32 = first.variants.find(v => v.name === 'fp32')!;
    expect(parityStatus(fp32)).toBe('pass');
    expect(typeof maxRelError(fp32)).toBe('number');
    expect(latencyMs(fp32) as number).toBeGreaterThan(0);
    expect(speedup(fp32) as number).toBeGreaterThan(0);
    expect(speedup(fp32, 'throughput') as number).toBeGreaterThan(0);
    for (const row of variantRows(first)) {
      expect(row.slice(2)).not.toContain('—');
      expect(row[2]).toBe('pass');
    }
  });

  it('tells the unchanged result apart and names the previous version', () => {
    const none = fixture('event-none');
    const minor = fixture('event-minor');
    expect(isUnchanged(none.result)).toBe(true);
    expect(isUnchanged(minor.result)).toBe(false);
    expect(none.headline).toBe('no new version: identical to 1.1.0');
    expect(minor.headline).toBe(
      '1.1.0 — weights-only update from 1.0.0: drop-in compatible'
    );
    const skipped = fixture('progress-none')
      .filter((e: IHandoffEvent) => e.progress?.status === 'skip')
      .map((e: IHandoffEvent) => e.progress?.stage);
    expect(skipped).toEqual(['optimize', 'benchmark', 'bundle']);
  });

  it('parses real progress messages, keeping the stage times', () => {
    const done = fixture('progress-first')
      .map((e: IHandoffEvent) =>
        parseKernelMessage({
          protocol: PROTOCOL_VERSION,
          kind: 'progress',
          id: 'r1',
          payload: e.progress
        })
      )
      .filter((m: any) => m.payload.status === 'done');
    expect(done.map((m: any) => m.payload.stage)).toEqual([...STAGES]);
    for (const m of done) {
      expect(typeof m.payload.elapsed_s).toBe('number');
    }
  });

  it('checks bundle names with the rule from Python', () => {
    expect(validBundleName(first.name)).toBe(true);
    expect(validBundleName('Bad Name')).toBe(false);
  });
});
