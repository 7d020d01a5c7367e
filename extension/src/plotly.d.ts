/** The few plotly.js calls the result view makes (the basic dist ships no typings). */
declare module 'plotly.js-basic-dist-min' {
  export function newPlot(
    root: HTMLElement,
    data: Record<string, unknown>[],
    layout?: Record<string, unknown>,
    config?: Record<string, unknown>
  ): Promise<HTMLElement>;
  export function purge(root: HTMLElement): void;
}
