/** The extension's icon: the toolbar button, the side panel and its tabs. */

import { LabIcon } from '@jupyterlab/ui-components';

export const handoffIcon = new LabIcon({
  name: 'labkit-handoff:handoff',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M3 11h11.2l-3.6-3.6L12 6l6 6-6 6-1.4-1.4 ' +
    '3.6-3.6H3zm16-7h2v16h-2z"/></svg>'
});
