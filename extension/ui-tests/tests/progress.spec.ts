/**
 * labkit.progress in a real JupyterLab: train/validation on one shared axis (checked on the
 * plotly figure's data and axis range), divergence flagged, the Stop button ending a running
 * loop, and the plot still there after the notebook is saved, closed and reopened.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import * as fs from 'fs';
import * as path from 'path';

const REPO = path.resolve(__dirname, '..', '..', '..');
const SHOTS = path.join(REPO, 'test-artifacts', 'ui');
const NOTEBOOK = path.join(__dirname, '..', 'notebooks', 'progress.ipynb');

test.use({ autoGoto: true, serverFiles: 'off' });

async function shot(page: IJupyterLabPageFixture, name: string): Promise<void> {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

interface Trace {
  name: string;
  yaxis: string;
  y: (number | null)[];
}

/** The figure plotly drew in the n-th output that holds one (its data and layout). */
async function figure(
  page: IJupyterLabPageFixture,
  cell: number
): Promise<{ data: Trace[]; range: number[]; title: string }> {
  const plot = page
    .locator('.jp-Notebook .jp-Cell')
    .nth(cell)
    .locator('.js-plotly-plot')
    .first();
  await expect(plot).toBeVisible({ timeout: 60000 });
  return plot.evaluate((el: any) => ({
    data: el.data.map((t: any) => ({
      name: t.name,
      yaxis: t.yaxis ?? 'y',
      y: Array.from(t.y)
    })),
    range: el._fullLayout.yaxis.range,
    title: el._fullLayout.title.text
  }));
}

test('training progress: shared axes, divergence, Stop, and a plot that survives reopening', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(400 * 1000);
  const name = 'progress.ipynb';
  await page.contents.uploadFile(NOTEBOOK, `${tmpPath}/${name}`);
  await page.notebook.openByPath(`${tmpPath}/${name}`);
  await page.notebook.activate(name);

  // 1. train and validation loss on one axis whose range covers both
  await page.notebook.runCell(0);
  const paired = await figure(page, 0);
  const axes = Object.fromEntries(paired.data.map(t => [t.name, t.yaxis]));
  expect(axes['train_loss']).toBe('y');
  expect(axes['val_loss']).toBe('y');
  expect(axes['val_acc']).not.toBe('y');
  expect(axes['lr']).not.toBe(axes['val_acc']);
  const [lo, hi] = paired.range;
  expect(lo).toBeLessThanOrEqual(1 / 30);
  expect(hi).toBeGreaterThanOrEqual(1.0);
  const val = paired.data.find(t => t.name === 'val_loss')!;
  expect(val.y.every(v => v === 0.388)).toBe(true);
  await shot(page, 'progress-shared-axis');

  // 2. a diverging loss is flagged, not dropped
  await page.notebook.runCell(1);
  const diverging = await figure(page, 1);
  expect(diverging.title).toContain('loss diverged at step 6');
  await expect(
    page.locator('.jp-Notebook .jp-Cell').nth(1).locator('.jp-OutputArea')
  ).toContainText('diverged at step 6');
  await shot(page, 'progress-diverged');

  // 3. Stop ends a loop that would run for 1,000 s
  const running = page.notebook.runCell(2);
  const stop = page
    .locator('.jp-Notebook .jp-Cell')
    .nth(2)
    .locator('.labkit-progress-stop');
  await expect(stop).toBeVisible({ timeout: 60000 });
  await page.waitForTimeout(1500);
  await shot(page, 'progress-running');
  await stop.click();
  await running;
  const out = page
    .locator('.jp-Notebook .jp-Cell')
    .nth(2)
    .locator('.jp-OutputArea');
  await expect(out).toContainText('stopped at step', { timeout: 60000 });
  const steps = Number(
    /stopped at step (\d+)/.exec((await out.textContent()) ?? '')?.[1]
  );
  expect(steps).toBeGreaterThan(0);
  expect(steps).toBeLessThan(100000);
  await shot(page, 'progress-stopped');

  // 4. saved, closed, reopened: the static figures are drawn again, no dead widget
  await page.notebook.save();
  await page.notebook.close();
  await page.notebook.openByPath(`${tmpPath}/${name}`);
  await page.notebook.activate(name);
  // The figure is drawn from the saved plotly JSON; JupyterLab's plotly renderer also saved
  // a PNG of it, shown until the pointer enters, and then the interactive figure.
  const first = page.locator('.jp-Notebook .jp-Cell').first();
  const img = first.locator('.jp-RenderedPlotly img.plot-img');
  await expect(img).toBeVisible({ timeout: 60000 });
  expect(await img.getAttribute('src')).toMatch(/^data:image\/png;base64,/);
  await shot(page, 'progress-reopened');
  await img.dispatchEvent('mouseenter'); // the renderer swaps the image for the figure
  const reopened = await figure(page, 0);
  expect(reopened.data.map(t => t.name).sort()).toEqual(
    ['lr', 'train_loss', 'val_acc', 'val_loss'].sort()
  );
  await expect(page.locator('.jp-RenderedPlotly')).toHaveCount(3);
  await expect(page.locator('.jp-Notebook')).not.toContainText(
    'Error displaying widget'
  );
  await shot(page, 'progress-reopened-interactive');
});
