/**
 * Galata configuration: the lab server is started by webServer (its own temp root dir; the
 * store comes from LABKIT_STORE), and the browser is Debian's Chromium — never a download.
 */
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

const port = process.env.LABKIT_UI_PORT || '8888';
const url = `http://127.0.0.1:${port}`;

module.exports = {
  ...baseConfig,
  timeout: 300 * 1000,
  expect: { timeout: 30 * 1000 },
  retries: 0,
  workers: 1,
  outputDir: 'test-results',
  reporter: [['list'], ['json', { outputFile: 'test-results/results.json' }]],
  use: {
    ...baseConfig.use,
    baseURL: url,
    viewport: { width: 1400, height: 900 },
    video: 'off',
    trace: 'off',
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run'
      ]
    }
  },
  webServer: {
    // The server's log goes to a file, not into the test report.
    command:
      'mkdir -p ../../test-artifacts/ui && jlpm start > ../../test-artifacts/ui/jupyter-server.log 2>&1',
    url: `${url}/lab`,
    timeout: 180 * 1000,
    reuseExistingServer: false,
    stdout: 'ignore',
    stderr: 'ignore'
  }
};
