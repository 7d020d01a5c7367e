/**
 * labkit.experiment in a real JupyterLab: four trials ranked by val_loss (lower is better),
 * the lowest loss marked on the results table and on the Pareto plot; then the kernel is
 * replaced by a new one, the run reopened with labkit.experiment.load, and a trial handed
 * off from the extension's trial button with its stages shown under the buttons.
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

interface ITrace {
  name: string;
  x: number[];
  y: number[];
}

test('experiment ranked by val_loss: lowest loss marked on table and Pareto plot; a trial handed off from a new kernel', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(480 * 1000);
  expect(STORE, 'LABKIT_STORE must point at a temporary store').not.toBe('');
  const name = 'experiments.ipynb';
  await page.contents.uploadFile(NOTEBOOK, `${tmpPath}/${name}`);
  await page.notebook.openByPath(`${tmpPath}/${name}`);
  await page.notebook.activate(name);
  await page.notebook.runCell(0);
  await page.notebook.runCell(1);
  const sweep = page.locator('.jp-Notebook .jp-Cell').nth(1);

  // (a) The table: ranked by val_loss, lower is better; the lowest loss is "best" and on the
  // Pareto front (★), and no other trial is called best.
  const table = sweep.locator('.labkit-experiment');
  await expect(table).toContainText('4 of 4 trials, done', { timeout: 240000 });
  await expect(table).toContainText('ranked by val_loss, lower is better');
  const header = await table
    .locator('tr')
    .first()
    .locator('th')
    .allTextContents();
  const col = header.indexOf('val_loss ↓');
  expect(col).toBeGreaterThan(0);
  const rows = await table
    .locator('tr')
    .evaluateAll(trs =>
      trs
        .slice(1)
        .map(tr =>
          Array.from(tr.querySelectorAll('td')).map(td => td.textContent ?? '')
        )
    );
  expect(rows).toHaveLength(4);
  const losses = rows.map(r => Number(r[col]));
  const lowest = losses.indexOf(Math.min(...losses));
  const highest = losses.indexOf(Math.max(...losses));
  expect(rows[lowest][0]).toMatch(/★/);
  expect(rows[lowest][0]).toMatch(/best/);
  expect(rows.filter(r => /best/.test(r[0]))).toHaveLength(1);
  expect(rows[highest][0]).not.toMatch(/best/);
  const best = Number(/#(\d+)/.exec(rows[lowest][0])![1]);

  // The plot: the same direction on its axis, the lowest loss on the Pareto front, and
  // along the front a faster trial has a higher loss.
  const plot = sweep.locator('.js-plotly-plot').first();
  await expect(plot).toBeVisible({ timeout: 60000 });
  const fig = await plot.evaluate((el: any) => ({
    data: el.data.map((t: any) => ({
      name: t.name,
      x: Array.from(t.x).map(Number),
      y: Array.from(t.y).map(Number)
    })),
    axis: el._fullLayout.yaxis.title.text
  }));
  expect(fig.axis).toBe('val_loss, lower is better');
  const trials = fig.data.find((t: ITrace) => t.name === 'trials')!;
  const front = fig.data.find((t: ITrace) => t.name === 'Pareto front')!;
  // the table shows 4 significant digits of the same numbers
  const shown = trials.y.map((v: number) => Number(v.toPrecision(4)));
  expect(shown.sort()).toEqual([...losses].sort());
  expect(Math.min(...front.y)).toBe(Math.min(...trials.y));
  const order = front.x.map((_: number, i: number) => i);
  order.sort((a: number, b: number) => front.x[a] - front.x[b]);
  const byLatency = order.map((i: number) => front.y[i]);
  expect(byLatency).toEqual([...byLatency].sort((a, b) => b - a));
  await plot.scrollIntoViewIfNeeded();
  await shot(page, 'experiment-val-loss');

  // (b) A new kernel: no model is in memory any more. Reopen the run from the store and
  // hand the best trial off from the reopened experiment's button. (The kernel is shut down
  // and a new one started: JupyterLab 4.6.6's "Restart Kernel" with jupyter_server 2.21 and
  // ipykernel 7.4 leaves the page waiting for the kernel forever here; the kernel process
  // starts afresh either way.)
  await page.notebook.save();
  await page.menu.clickMenuItem('Kernel>Shut Down Kernel');
  await expect(
    page.locator('.jp-NotebookPanel-toolbar .jp-KernelName')
  ).toContainText('No Kernel');
  // The toolbar says "No Kernel" while the status bar still says "Terminating": wait for
  // the shutdown to complete.
  await expect(page.locator('#jp-main-statusbar')).toContainText('No Kernel', {
    timeout: 60000
  });
  // Then the notebook is closed and opened again, which starts its kernel: choosing one
  // with "Change Kernel…" left the page at "No Kernel" while the server had started it
  // (3 runs in a row here, JupyterLab 4.6.6).
  await page.notebook.close(true);
  await page.notebook.openByPath(`${tmpPath}/${name}`);
  await page.notebook.activate(name);
  await expect(page.locator('#jp-main-statusbar')).toContainText('Idle', {
    timeout: 120000
  });
  await page.notebook.runCell(0);
  await page.notebook.addCell(
    'code',
    'exp = labkit.experiment.load("ui-sweep", model_fn=build)\nexp'
  );
  const last = (await page.locator('.jp-Notebook .jp-Cell').count()) - 1;
  await page.notebook.runCell(last);
  const reopened = page.locator('.jp-Notebook .jp-Cell').nth(last);
  await expect(reopened.locator('.labkit-experiment')).toContainText(
    '4 of 4 trials, done',
    { timeout: 60000 }
  );
  const button = reopened.locator(
    `.labkit-handoff-trial[data-trial="${best}"]`
  );
  await expect(button).toHaveText(`hand off trial #${best} (best)`);
  await expect(button).toHaveAttribute('title', /weights saved/);
  await button.click();
  const inline = reopened.locator('.labkit-trial-progress');
  await expect(inline).toBeVisible();
  await expect(inline).toHaveAttribute('data-state', 'done', {
    timeout: 240000
  });
  await expect(inline.locator('.labkit-stage[data-status="done"]')).toHaveCount(
    6
  );
  await expect(inline.locator('.labkit-status')).toHaveText(
    'ui-sweep 1.0.0 — first handoff of this model'
  );
  // the notebook stayed in front: the stages showed where the button was clicked
  await expect(page.locator('.jp-NotebookPanel')).toBeVisible();
  await inline.scrollIntoViewIfNeeded();
  await shot(page, 'experiment-trial-after-restart');

  // The bundle records which trial it is; the Handoff tab shows it with the full result.
  const manifest = JSON.parse(
    fs.readFileSync(
      path.join(STORE, 'ui-sweep', '1.0.0', 'manifest.json'),
      'utf-8'
    )
  );
  const origin = manifest.provenance.experiment;
  expect(origin.name).toBe('ui-sweep');
  expect(origin.trial).toBe(best);
  expect(origin.metric).toBe('val_loss');
  expect(origin.goal).toBe('min');
  expect(origin.metrics.val_loss).toBeCloseTo(losses[lowest], 3);
  await inline.locator('button.labkit-trial-details').click();
  const result = page.locator('.labkit-HandoffView .labkit-result');
  await expect(result).toBeVisible();
  await expect(result.locator('.labkit-origin')).toContainText(
    `experiment ui-sweep, run ${origin.run}, trial #${best}`
  );
  await shot(page, 'experiment-trial-result');
});
