/**
 * labkit.experiment in a real JupyterLab: four trials, the results table, the accuracy vs
 * CPU latency plot with its Pareto front, and "hand off trial #N" producing a bundle.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import * as fs from 'fs';
import * as path from 'path';

const REPO = path.resolve(__dirname, '..', '..', '..');
const SHOTS = path.join(REPO, 'test-artifacts', 'ui');
const STORE = process.env.LABKIT_STORE ?? '';
const NOTEBOOK = path.join(__dirname, '..', 'notebooks', 'experiments.ipynb');

test.use({ autoGoto: true, serverFiles: 'off' });

async function shot(page: IJupyterLabPageFixture, name: string): Promise<void> {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

test('an experiment of 4 trials: table, accuracy vs latency, hand off a trial', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(400 * 1000);
  expect(STORE, 'LABKIT_STORE must point at a temporary store').not.toBe('');
  const name = 'experiments.ipynb';
  await page.contents.uploadFile(NOTEBOOK, `${tmpPath}/${name}`);
  await page.notebook.openByPath(`${tmpPath}/${name}`);
  await page.notebook.activate(name);
  await page.notebook.runCell(0);

  const table = page.locator('.labkit-experiment');
  await expect(table).toContainText('4 of 4 trials, done', { timeout: 240000 });
  await expect(table.locator('tr')).toHaveCount(5);
  await expect(table).toContainText('CPU latency (ms)');
  await expect(table).toContainText('★');

  const plot = page.locator('.js-plotly-plot').first();
  await expect(plot).toBeVisible();
  const fig = await plot.evaluate((el: any) =>
    el.data.map((t: any) => ({
      name: t.name,
      x: Array.from(t.x),
      y: Array.from(t.y)
    }))
  );
  expect(fig[0].x).toHaveLength(4);
  expect(fig[0].x.every((ms: any) => Number(ms) > 0)).toBe(true);
  expect(fig[1].name).toBe('Pareto front');
  const front = fig[1].y.map(Number);
  expect(front).toEqual([...front].sort((a, b) => a - b)); // faster ones are less accurate
  await shot(page, 'experiment-table-and-plot');

  const button = page.locator('.labkit-handoff-trial', {
    hasText: 'hand off trial #2'
  });
  await expect(button).toBeVisible();
  await button.click();
  await expect(page.locator('.labkit-result')).toBeVisible({ timeout: 240000 });
  await shot(page, 'experiment-handed-off');
  expect(
    fs.existsSync(path.join(STORE, 'ui-sweep', '1.0.0', 'manifest.json'))
  ).toBe(true);
});
