/** A tiny DOM builder: text always goes through textContent, never innerHTML. */

export type Child = Node | string | null | undefined | false;

export function h(
  tag: string,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: Child[]
): HTMLElement {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === true) {
      el.setAttribute(key, '');
    } else if (typeof value === 'string') {
      el.setAttribute(key, value);
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    el.appendChild(
      typeof child === 'string' ? document.createTextNode(child) : child
    );
  }
  return el;
}

export function table(
  headers: string[],
  rows: string[][],
  cls = 'labkit-table'
): HTMLElement {
  return h(
    'table',
    { class: cls },
    h('thead', {}, h('tr', {}, ...headers.map(t => h('th', {}, t)))),
    h('tbody', {}, ...rows.map(r => h('tr', {}, ...r.map(c => h('td', {}, c)))))
  );
}

const SVG = 'http://www.w3.org/2000/svg';

/** Horizontal bars (label, value) as inline SVG, for speed-ups vs PyTorch. */
export function barChart(items: [string, number][], unit: string): SVGElement {
  const row = 22;
  const left = 120;
  const width = 380;
  const max = Math.max(...items.map(([, v]) => v), 1e-12);
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(items.length * row + 6));
  svg.setAttribute('class', 'labkit-bars');
  items.forEach(([label, value], i) => {
    const y = i * row;
    const w = Math.max(((width - left - 60) * value) / max, 1);
    const text = document.createElementNS(SVG, 'text');
    text.setAttribute('x', String(left - 6));
    text.setAttribute('y', String(y + 15));
    text.setAttribute('text-anchor', 'end');
    text.textContent = label;
    const rect = document.createElementNS(SVG, 'rect');
    rect.setAttribute('x', String(left));
    rect.setAttribute('y', String(y + 4));
    rect.setAttribute('width', w.toFixed(1));
    rect.setAttribute('height', String(row - 8));
    rect.setAttribute('class', i === 0 ? 'labkit-bar-base' : 'labkit-bar');
    const val = document.createElementNS(SVG, 'text');
    val.setAttribute('x', String(left + w + 4));
    val.setAttribute('y', String(y + 15));
    val.textContent = `${value.toFixed(2)}${unit}`;
    svg.append(text, rect, val);
  });
  return svg;
}
