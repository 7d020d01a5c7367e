/** The Bundles panel's reads, answered by the current notebook's kernel: the list, a
 *  bundle's report and its diff against the version before it. */

import { INotebookTracker } from '@jupyterlab/notebook';

import { kernelOf } from './handoff';
import { HandoffClient } from './kernel';
import {
  IBundleSummary,
  IDiffReply,
  IReportReply,
  RequestType
} from './protocol';
import { BundleDocHolder } from './tabs';

/** One request to the current notebook's kernel (the Bundles panel's reads). */
async function askKernel<T>(
  tracker: INotebookTracker,
  type: RequestType,
  payload: Record<string, unknown>
): Promise<T> {
  const panel = tracker.currentWidget;
  if (!panel) {
    throw new Error(
      'Open a notebook whose kernel has imported labkit to read its bundles.'
    );
  }
  const client = new HandoffClient(kernelOf(panel));
  try {
    const state = await client.probe();
    if (state !== 'ready') {
      throw new Error(
        state === 'no-kernel'
          ? 'No kernel is running for the current notebook.'
          : 'Run "import labkit" in the current notebook to read bundles.'
      );
    }
    return await client.request<T>(type, payload);
  } finally {
    client.dispose();
  }
}

export function listBundles(
  tracker: INotebookTracker,
  store: string | null
): Promise<{ store: string; bundles: IBundleSummary[] }> {
  return askKernel(tracker, 'list_bundles', store ? { store } : {});
}

/** The latest version's report.md, rendered in the bundle tab. */
export async function openReport(
  tracker: INotebookTracker,
  docs: BundleDocHolder,
  bundle: IBundleSummary,
  store: string
): Promise<void> {
  const title = `Report: ${bundle.name} ${bundle.latest}`;
  const view = docs.show(title);
  try {
    const reply = await askKernel<IReportReply>(tracker, 'bundle_report', {
      store,
      name: bundle.name,
      version: bundle.latest
    });
    await view.showReport(reply);
  } catch (err) {
    view.showError(title, (err as Error).message);
  }
  docs.retitle();
}

/** `handoff diff` of the version before the latest against the latest, from the kernel. */
export async function diffPrevious(
  tracker: INotebookTracker,
  docs: BundleDocHolder,
  bundle: IBundleSummary,
  store: string
): Promise<void> {
  const title = `Diff: ${bundle.name} ${bundle.latest}`;
  const view = docs.show(title);
  try {
    const reply = await askKernel<IDiffReply>(tracker, 'bundle_diff', {
      store,
      name: bundle.name,
      version: bundle.latest
    });
    view.showDiff(reply);
  } catch (err) {
    view.showError(title, (err as Error).message);
  }
  docs.retitle();
}
