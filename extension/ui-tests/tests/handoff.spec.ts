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
  await shot(page, 'handoff-result');
  // the handoff added no cell, output or execution count to the notebook
  await expect(page.locator('.jp-NotebookPanel .jp-Cell')).toHaveCount(cells);
  await expect(page.locator('.jp-InputPrompt').last()).toHaveText(
    lastPrompt ?? ''
  );

  const bundle = (await result.locator('.labkit-path').textContent()) ?? '';
  expect(bundle).toBe(path.join(fs.realpathSync(STORE), 'digits-ui', '1.0.0'));
  expect(fs.existsSync(path.join(bundle, 'manifest.json'))).toBe(true);
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

/** Hand off the notebook's model into `store`, without int8; returns the new view. */
async function handOffTo(page: IJupyterLabPageFixture, store: string) {
  // Earlier views stay open; mark them so the new one is found whatever the tab order.
  await page
    .locator('.labkit-HandoffView')
    .evaluateAll(nodes => nodes.forEach(n => n.classList.add('seen-by-test')));
  await clickHandoff(page);
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog).toContainText('Hand off model', { timeout: 60000 });
  await dialog.locator('input.labkit-quantize').uncheck();
  await dialog.locator('input.labkit-store').fill(store);
  await dialog.locator('.jp-Dialog-button.jp-mod-accept').click();
  const view = page.locator('.labkit-HandoffView:not(.seen-by-test)');
  await expect(view).toHaveCount(1, { timeout: 30000 });
  await expect(view.locator('.labkit-result')).toBeVisible({
    timeout: 180000
  });
  return view;
}

test('an unchanged model is a neutral result; a retrain names the version it updates', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(480 * 1000);
  await openAndRun(
    page,
    tmpPath,
    path.join(__dirname, '..', 'notebooks', 'retrain_tiny.ipynb')
  );
  // A store other than the kernel's default, chosen in the dialog.
  const other = path.join(fs.realpathSync(STORE), 'chosen-in-dialog');

  const first = await handOffTo(page, other);
  const firstResult = first.locator('.labkit-result');
  await expect(firstResult).toHaveAttribute('data-change', 'first');
  await expect(firstResult).toHaveAttribute('data-version', '1.0.0');

  // The same model again: nothing is written, and nothing claims success.
  const again = await handOffTo(page, other);
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

  // Retrain (another seed, same architecture) and hand off: a minor version from 1.0.0.
  // The result views are closed first so the notebook's toolbar has room for the button.
  const tabs = page.locator('.lm-TabBar-tab', { hasText: 'Handoff: tiny-ui' });
  while ((await tabs.count()) > 0) {
    await tabs.first().locator('.lm-TabBar-tabCloseIcon').click();
  }
  await page.notebook.activate('retrain_tiny.ipynb');
  await page.notebook.addCell(
    'code',
    'model = train(1)\n' +
      'labkit.register(model, x[:2], name="tiny-ui", task="classification", ' +
      'parity_inputs=[x])'
  );
  await page.notebook.runCell(2, true);
  await expect(page.locator('.jp-NotebookPanel .jp-CodeCell')).toHaveCount(2);
  const retrain = await handOffTo(page, other);
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
});
