/**
 * End to end: real JupyterLab, real kernel, real pipeline, Debian's Chromium.
 * The server (webServer in playwright.config.js) runs with LABKIT_STORE set by the caller.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const REPO = path.resolve(__dirname, '..', '..', '..');
const STORE = process.env.LABKIT_STORE ?? '';
const PYTHON =
  process.env.LABKIT_PYTHON ?? path.join(REPO, '.venv', 'bin', 'python');
const SHOTS = path.join(REPO, 'test-artifacts', 'ui');
const HANDOFF_BUTTON =
  '.jp-NotebookPanel-toolbar [data-command="labkit:handoff"]';

test.use({ autoGoto: true, serverFiles: 'off' });

async function shot(page: IJupyterLabPageFixture, name: string): Promise<void> {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

async function openAndRun(
  page: IJupyterLabPageFixture,
  tmpPath: string,
  local: string
): Promise<string> {
  const name = path.basename(local);
  await page.contents.uploadFile(local, `${tmpPath}/${name}`);
  await page.notebook.openByPath(`${tmpPath}/${name}`);
  await page.notebook.activate(name);
  await page.notebook.run();
  return name;
}

async function clickHandoff(page: IJupyterLabPageFixture): Promise<void> {
  const button = page.locator(HANDOFF_BUTTON);
  await expect(button).toBeVisible();
  await expect(button).toContainText('Handoff');
  await button.click();
}

test.beforeAll(() => {
  expect(STORE, 'LABKIT_STORE must point at a temporary store').not.toBe('');
});

test('quickstart: run the notebook, click Handoff, get a verified bundle', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(420 * 1000);
  await openAndRun(
    page,
    tmpPath,
    path.join(REPO, 'examples', 'quickstart.ipynb')
  );
  await shot(page, 'quickstart-ran');

  const cells = await page.locator('.jp-NotebookPanel .jp-Cell').count();
  const lastPrompt = await page.locator('.jp-InputPrompt').last().textContent();

  await clickHandoff(page);
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog).toContainText('Hand off model', { timeout: 60000 });
  await dialog.locator('input.labkit-name').fill('digits-ui');
  await shot(page, 'handoff-dialog');
  await dialog.locator('.jp-Dialog-button.jp-mod-accept').click();

  const view = page.locator('.labkit-HandoffView');
  await expect(
    view.locator('.labkit-stage[data-stage="freeze"]')
  ).toBeVisible();
  const result = view.locator('.labkit-result');
  await expect(result).toBeVisible({ timeout: 240000 });
  await expect(result).toHaveAttribute('data-version', '1.0.0');
  await expect(result).toHaveAttribute('data-change', 'first');
  await expect(result.locator('.labkit-change')).toHaveText(
    '1.0.0 — first handoff of this model'
  );
  await expect(result.locator('table.labkit-parity')).toContainText('fp32');
  await expect(result.locator('table.labkit-parity')).toContainText('pass');
  await expect(view.locator('.labkit-stage[data-status="done"]')).toHaveCount(
    6
  );
  // The speed chart is the kernel's plotly figure drawn by plotly.js, not hand-made SVG
  // bars: one bar per variant and series, valued at the speed-ups the result reports.
  const chart = result.locator('.labkit-speed-chart.js-plotly-plot');
  await expect(chart).toBeVisible({ timeout: 60000 });
  await expect(chart.locator('.trace.bars .point')).toHaveCount(
    2 * (await result.locator('table.labkit-parity tbody tr').count())
  );
  await shot(page, 'handoff-result');
  // the handoff added no cell, output or execution count to the notebook
  await expect(page.locator('.jp-NotebookPanel .jp-Cell')).toHaveCount(cells);
  await expect(page.locator('.jp-InputPrompt').last()).toHaveText(
    lastPrompt ?? ''
  );

  const bundle = (await result.locator('.labkit-path').textContent()) ?? '';
  expect(bundle).toBe(path.join(fs.realpathSync(STORE), 'digits-ui', '1.0.0'));
  expect(fs.existsSync(path.join(bundle, 'manifest.json'))).toBe(true);
  const manifest = JSON.parse(
    fs.readFileSync(path.join(bundle, 'manifest.json'), 'utf-8')
  );
  const traces = await chart.evaluate((el: any) =>
    el.data.map((t: any) => ({ meta: t.meta, x: t.x, y: t.y }))
  );
  expect(traces.map((t: any) => t.meta)).toEqual(['p50', 'throughput']);
  for (const t of traces) {
    expect(t.x).toEqual(
      manifest.variants.map((v: any) =>
        v.name === manifest.default_variant ? `${v.name} (default)` : v.name
      )
    );
    expect(t.y).toEqual(
      manifest.variants.map((v: any) => v.benchmark.speedup[t.meta])
    );
  }
  expect(fs.existsSync(path.join(bundle, 'source', 'quickstart.ipynb'))).toBe(
    true
  );
  const verify = execFileSync(PYTHON, ['-m', 'handoff', 'verify', bundle], {
    encoding: 'utf-8',
    cwd: REPO
  });
  fs.writeFileSync(path.join(SHOTS, 'handoff-verify.txt'), verify);

  // The side panel lists the store's bundles, refreshed after the handoff.
  await page.sidebar.openTab('labkit-bundles');
  const panel = page.locator('#labkit-bundles');
  await expect(panel).toContainText('digits-ui', { timeout: 60000 });
  await expect(panel).toContainText('digits');
  await shot(page, 'bundles-panel');
});

test('a model whose export fails shows the stage and message, and writes nothing', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(240 * 1000);
  await openAndRun(
    page,
    tmpPath,
    path.join(__dirname, '..', 'notebooks', 'export_fails.ipynb')
  );
  await clickHandoff(page);
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog).toContainText('Hand off model', { timeout: 60000 });
  await dialog.locator('.jp-Dialog-button.jp-mod-accept').click();

  const error = page.locator('.labkit-HandoffView .labkit-error');
  await expect(error).toBeVisible({ timeout: 180000 });
  await expect(error).toHaveAttribute('data-stage', 'export');
  await expect(error).toContainText('Failed at stage: export');
  await expect(error.locator('.labkit-error-type')).toHaveText('ExportError');
  await expect(error.locator('.labkit-error-message')).toContainText(
    'this forward refuses to be traced'
  );
  await expect(
    page.locator('.labkit-HandoffView .labkit-stage[data-stage="export"]')
  ).toHaveAttribute('data-status', 'fail');
  await shot(page, 'handoff-export-failed');
  expect(fs.existsSync(path.join(STORE, 'refuses-export'))).toBe(false);
});

test('a kernel without labkit gets told exactly what to run', async ({
  page,
  tmpPath
}) => {
  await openAndRun(
    page,
    tmpPath,
    path.join(__dirname, '..', 'notebooks', 'not_imported.ipynb')
  );
  await clickHandoff(page);
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog).toContainText('labkit is not imported', {
    timeout: 60000
  });
  await expect(dialog.locator('.labkit-code')).toContainText('import labkit');
  await expect(dialog.locator('.labkit-code')).toContainText(
    'labkit.register('
  );
  await shot(page, 'handoff-not-imported');
  await dialog.locator('.jp-Dialog-button.jp-mod-accept').click();
  // silent checks add no cell output and no execution count
  await expect(page.locator('.jp-Cell')).toHaveCount(1);
  await expect(page.locator('.jp-InputPrompt').first()).toContainText('[1]');
});

test('labkit imported but nothing registered says how to register', async ({
  page,
  tmpPath
}) => {
  await openAndRun(
    page,
    tmpPath,
    path.join(__dirname, '..', 'notebooks', 'nothing_registered.ipynb')
  );
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+Shift+H');
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog).toContainText('No model registered', { timeout: 60000 });
  await expect(dialog.locator('.labkit-code')).toContainText(
    'labkit.register('
  );
  await shot(page, 'handoff-nothing-registered');
});

test('no running kernel is said plainly', async ({ page, tmpPath }) => {
  const local = path.join(__dirname, '..', 'notebooks', 'not_imported.ipynb');
  await page.contents.uploadFile(local, `${tmpPath}/no_kernel.ipynb`);
  await page.notebook.openByPath(`${tmpPath}/no_kernel.ipynb`);
  await page.notebook.activate('no_kernel.ipynb');
  await page.menu.clickMenuItem('Kernel>Shut Down Kernel');
  await expect(
    page.locator('.jp-NotebookPanel-toolbar .jp-KernelName')
  ).toContainText('No Kernel');
  await clickHandoff(page);
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog).toContainText('No kernel is running', {
    timeout: 60000
  });
  await shot(page, 'handoff-no-kernel');
});

/** Hand off the notebook's model into `store`, without int8; returns the Handoff panel
 *  once it shows this handoff's result. Every handoff reuses the one panel: its `data-run`
 *  counts them. The panel is a tab over the notebook, so the notebook is brought back first. */
async function handOffTo(
  page: IJupyterLabPageFixture,
  notebook: string,
  store: string
) {
  const view = page.locator('.labkit-HandoffView');
  const runs = (await view.count())
    ? Number(await view.getAttribute('data-run'))
    : 0;
  await page.notebook.activate(notebook);
  await clickHandoff(page);
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog).toContainText('Hand off model', { timeout: 60000 });
  await dialog.locator('input.labkit-quantize').uncheck();
  await dialog.locator('input.labkit-store').fill(store);
  await dialog.locator('.jp-Dialog-button.jp-mod-accept').click();
  await expect(view).toHaveCount(1);
  await expect(view).toHaveAttribute('data-run', String(runs + 1));
  await expect(view.locator('.labkit-result')).toBeVisible({
    timeout: 180000
  });
  return view;
}

/** Where the notebook and its Handoff button are on the page (the notebook in front). */
async function layout(page: IJupyterLabPageFixture, notebook: string) {
  await page.notebook.activate(notebook);
  const panel = page.locator('.jp-NotebookPanel');
  await expect(panel).toHaveCount(1);
  await expect(page.locator(HANDOFF_BUTTON)).toBeVisible();
  return {
    width: (await panel.boundingBox())!.width,
    button: (await page.locator(HANDOFF_BUTTON).boundingBox())!
  };
}

test('one Handoff panel: an unchanged model is neutral, a retrain names the version it updates, the Bundles panel opens reports and diffs', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(480 * 1000);
  const nb = await openAndRun(
    page,
    tmpPath,
    path.join(__dirname, '..', 'notebooks', 'retrain_tiny.ipynb')
  );
  // A store other than the kernel's default, chosen in the dialog.
  const other = path.join(fs.realpathSync(STORE), 'chosen-in-dialog');
  const before = await layout(page, nb);

  const first = await handOffTo(page, nb, other);
  const firstResult = first.locator('.labkit-result');
  await expect(firstResult).toHaveAttribute('data-change', 'first');
  await expect(firstResult).toHaveAttribute('data-version', '1.0.0');

  // The same model again: nothing is written, and nothing claims success.
  const again = await handOffTo(page, nb, other);
  const unchanged = again.locator('.labkit-result');
  await expect(unchanged).toHaveAttribute('data-change', 'none');
  await expect(unchanged).toHaveClass(/labkit-mod-unchanged/);
  await expect(unchanged.locator('.labkit-change')).toHaveText(
    'no new version: identical to 1.0.0'
  );
  await expect(again.locator('.labkit-status')).toHaveText(
    'No new version was written.'
  );
  for (const stage of ['optimize', 'benchmark', 'bundle']) {
    await expect(
      again.locator(`.labkit-stage[data-stage="${stage}"]`)
    ).toHaveAttribute('data-status', 'skipped');
  }
  await expect(again.locator('.labkit-stage[data-status="done"]')).toHaveCount(
    3
  );
  await expect(page.locator('.Toastify__toast--success')).toHaveCount(0);
  await expect(
    page.locator('.Toastify__toast', { hasText: 'no new version' })
  ).toBeVisible();
  await shot(page, 'handoff-unchanged');
  expect(fs.readdirSync(path.join(other, 'tiny-ui'))).toEqual(['1.0.0']);

  // Two handoffs in a row: one Handoff tab, reused; the notebook keeps its width and the
  // Handoff button its place (before, each handoff split the notebook again).
  await expect(
    page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', {
      hasText: 'Handoff: tiny-ui'
    })
  ).toHaveCount(1);
  const after = await layout(page, nb);
  expect(Math.abs(after.width - before.width)).toBeLessThanOrEqual(1);
  for (const k of ['x', 'y', 'width', 'height'] as const) {
    expect(Math.abs(after.button[k] - before.button[k])).toBeLessThanOrEqual(1);
  }
  await shot(page, 'handoff-twice-notebook-unchanged');

  // Retrain (another seed, same architecture) and hand off: a minor version from 1.0.0.
  await page.notebook.addCell(
    'code',
    'model = train(1)\n' +
      'labkit.register(model, x[:2], name="tiny-ui", task="classification", ' +
      'parity_inputs=[x])'
  );
  await page.notebook.runCell(2, true);
  await expect(page.locator('.jp-NotebookPanel .jp-CodeCell')).toHaveCount(2);
  const retrain = await handOffTo(page, nb, other);
  const minor = retrain.locator('.labkit-result');
  await expect(minor).toHaveAttribute('data-change', 'minor');
  await expect(minor).toHaveAttribute('data-version', '1.1.0');
  await expect(minor.locator('.labkit-change')).toHaveText(
    '1.1.0 — weights-only update from 1.0.0: drop-in compatible'
  );
  await expect(
    retrain.locator('.labkit-stage[data-status="done"]')
  ).toHaveCount(6);
  // each stage shows the time it took, measured in the kernel
  await expect(
    retrain.locator('.labkit-stage[data-stage="export"] .labkit-stage-message')
  ).toContainText(/\d+\.\d s/);
  await shot(page, 'handoff-retrain-minor');

  // The side panel shows the store this handoff used, not the kernel's default.
  await page.notebook.activate(nb);
  await page.sidebar.openTab('labkit-bundles');
  const panel = page.locator('#labkit-bundles');
  await expect(panel.locator('.labkit-store-path')).toHaveText(
    `Store: ${other}`,
    { timeout: 60000 }
  );
  await expect(panel.locator('table')).toContainText('1.0.0, 1.1.0');
  // the table fits the panel (its last column is not cut off), and the panel scrolls
  const box = (await panel.boundingBox())!;
  const table = (await panel.locator('table').boundingBox())!;
  expect(table.x + table.width).toBeLessThanOrEqual(box.x + box.width + 1);
  await expect(panel.locator('table th').last()).toBeInViewport({ ratio: 1 });
  const overflow = await panel.evaluate(
    node => getComputedStyle(node).overflow
  );
  expect(overflow).toBe('auto');
  await shot(page, 'bundles-panel-chosen-store');

  // A row opens the latest version's report.md, rendered.
  const row = panel.locator('tr.labkit-bundle-row[data-name="tiny-ui"]');
  await row.click();
  const doc = page.locator('.labkit-BundleDocView');
  await expect(doc).toHaveAttribute('data-kind', 'report', { timeout: 60000 });
  await expect(doc.locator('.labkit-report h1')).toHaveText(/^tiny-ui 1\.1\.0/);
  await expect(doc.locator('.labkit-report')).toContainText(
    'weights-only update'
  );
  await expect(doc.locator('.labkit-report table').first()).toBeVisible();
  await shot(page, 'bundles-report');

  // "diff" compares it with the version before it, in handoff diff's words.
  await row.locator('button.labkit-diff-previous').click();
  await expect(doc).toHaveAttribute('data-kind', 'diff', { timeout: 60000 });
  const diff = doc.locator('.labkit-diff');
  await expect(diff).toHaveAttribute('data-change', 'minor');
  await expect(diff).toContainText(
    'tiny-ui 1.0.0 → tiny-ui 1.1.0: minor — weights-only update'
  );
  await expect(diff).toContainText('changed: weights');
  await expect(diff).toContainText('max abs difference');
  // one tab for reports and diffs, reused
  await expect(
    page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', { hasText: 'tiny-ui' })
  ).toHaveCount(2); // the Handoff panel and the bundle tab
  await shot(page, 'bundles-diff');
});

test('the result view shows the layers a model needed kept in fp32, and the report says so', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(360 * 1000);
  const nb = await openAndRun(
    page,
    tmpPath,
    path.join(__dirname, '..', 'notebooks', 'sensitivity.ipynb')
  );
  await clickHandoff(page);
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog).toContainText('Hand off model', { timeout: 60000 });
  await expect(dialog.locator('input.labkit-quantize')).toBeChecked();
  await dialog.locator('.jp-Dialog-button.jp-mod-accept').click();
  const view = page.locator('.labkit-HandoffView');
  const result = view.locator('.labkit-result');
  await expect(result).toBeVisible({ timeout: 240000 });

  const bundle = (await result.locator('.labkit-path').textContent()) ?? '';
  const manifest = JSON.parse(
    fs.readFileSync(path.join(bundle, 'manifest.json'), 'utf-8')
  );
  const int8 = manifest.variants.find((v: any) => v.name === 'int8-dynamic');
  expect(int8.quantization.excluded.map((e: any) => e.block)).toEqual(['head']);
  const head = int8.quantization.excluded[0];

  // The decision and the measurement behind it, as the bundle records them.
  const kept = result.locator('table.labkit-kept');
  await expect(kept).toBeVisible();
  await expect(kept.locator('tbody tr')).toHaveCount(1);
  const cells = kept.locator('tbody tr td');
  await expect(cells.nth(0)).toHaveText('int8-dynamic');
  await expect(cells.nth(1)).toHaveText('head');
  await expect(cells.nth(2)).toHaveText(
    `${head.metric} ${Number(head.metric_value.toPrecision(4))}`
  );
  await expect(cells.nth(4)).toHaveText(head.reason);
  // no parity_inputs in this notebook: the int8 verdict was reached on generated inputs
  expect(int8.quantization.judged_on).toBe('generated');
  await expect(
    result.locator('.labkit-judged-on li[data-variant="int8-dynamic"]')
  ).toHaveAttribute('data-judged-on', 'generated');
  await result.locator('.labkit-decisions').scrollIntoViewIfNeeded();
  await shot(page, 'handoff-kept-in-fp32');

  // The Bundles panel opens the same bundle's report, which lists the kept layer.
  await page.notebook.activate(nb);
  await page.sidebar.openTab('labkit-bundles');
  const row = page.locator(
    '#labkit-bundles tr.labkit-bundle-row[data-name="outlier-ui"]'
  );
  await row.click({ timeout: 60000 });
  const report = page.locator('.labkit-BundleDocView .labkit-report');
  await expect(report).toContainText('Layers kept in fp32', { timeout: 60000 });
  await expect(report).toContainText('head');
  await expect(row.locator('button.labkit-diff-previous')).toBeDisabled();
  await shot(page, 'bundles-report-kept-in-fp32');
});
