"""Legibility of a drawn chart, measured in the browser: size, font size, contrast.

:data:`MEASURE_SVG` runs in the page on one chart's ``<svg>``. For each text it gives the rendered
height and font size (CSS pixels, after the SVG is scaled into its box), its fill colour and the
colour it is drawn on: the first painted shape or element under its centre
(``document.elementsFromPoint``), not counting the text itself. Colours are read back through a
canvas, so any CSS colour syntax (``oklch(...)`` included) becomes sRGB. Contrast is the WCAG 2
ratio (4.5 is the minimum for normal text, 3 for graphics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MEASURE_SVG", "Chart", "TextSample", "measure"]

MEASURE_SVG = """
svg => {
  const ctx = document.createElement('canvas').getContext('2d', {willReadFrequently: true});
  const rgb = c => {
    if (!c || c === 'none' || c.startsWith('url(')) return null;
    ctx.clearRect(0, 0, 1, 1); ctx.fillStyle = '#00000000'; ctx.fillStyle = c; ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    return {r, g, b, a: a / 255};
  };
  const lum = c => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const painted = (el, skip) => {
    const cs = getComputedStyle(el);
    if (el instanceof SVGElement && el.tagName !== 'svg') {
      if (skip(el) || !['rect', 'path', 'polygon', 'circle'].includes(el.tagName)) return null;
      const f = rgb(cs.fill);
      return f && f.a > 0.5 && Number(cs.fillOpacity) > 0.5 && Number(cs.opacity) > 0.5 ? f : null;
    }
    const b = rgb(cs.backgroundColor);
    return b && b.a > 0.5 ? b : null;
  };
  const under = (x, y, skip) => {
    for (const el of document.elementsFromPoint(x, y)) {
      if (el.tagName === 'text' || el.tagName === 'tspan') continue;
      const c = painted(el, skip); if (c) return c;
    }
    return {r: 255, g: 255, b: 255, a: 1};
  };
  const hex = c => '#' + [c.r, c.g, c.b].map(v => v.toString(16).padStart(2, '0')).join('');
  svg.scrollIntoView({block: 'center'});
  const box = svg.getBoundingClientRect();
  const scale = box.width / (svg.viewBox.baseVal && svg.viewBox.baseVal.width || box.width);
  const texts = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim()).map(t => {
    t.scrollIntoView({block: 'center', inline: 'center'});
    const b = t.getBoundingClientRect(); const cs = getComputedStyle(t);
    const fill = rgb(cs.fill) || rgb(cs.color);
    const bg = under(b.x + b.width / 2, b.y + b.height / 2, () => false);
    return {text: t.textContent.trim(), height: b.height, font_px: parseFloat(cs.fontSize) * scale,
            contrast: ratio(fill, bg), fill: hex(fill), background: hex(bg)};
  });
  svg.scrollIntoView({block: 'center'});
  const bars = [...svg.querySelectorAll('rect.task, g.bar-plot-0 rect, [class*="plot"] rect')].map(r => {
    const b = r.getBoundingClientRect();
    const bg = under(b.x + b.width / 2, b.y + b.height / 2, el => el === r);
    return {contrast: ratio(rgb(getComputedStyle(r).fill), bg), fill: getComputedStyle(r).fill};
  });
  return {kind: svg.getAttribute('aria-roledescription'), width: box.width, height: box.height,
          texts, bars};
}
"""


@dataclass(frozen=True)
class TextSample:
    """One text of a chart as drawn."""

    text: str
    height: float
    font_px: float
    contrast: float
    fill: str
    background: str


@dataclass(frozen=True)
class Chart:
    """One chart as drawn: its box, its texts, and its bars' contrast with what is behind them."""

    kind: str
    width: float
    height: float
    texts: list[TextSample]
    bar_contrasts: list[float]

    def illegible(self, *, min_font_px: float, min_contrast: float = 4.5) -> list[TextSample]:
        """Texts smaller than ``min_font_px`` or with less contrast than ``min_contrast``."""
        return [t for t in self.texts if t.font_px < min_font_px or t.contrast < min_contrast]


def measure(svg: Any) -> Chart:
    """Measure the chart drawn by ``svg`` (a Playwright locator of one ``<svg>``)."""
    data = svg.evaluate(MEASURE_SVG)
    return Chart(
        kind=str(data["kind"]),
        width=float(data["width"]),
        height=float(data["height"]),
        texts=[TextSample(**t) for t in data["texts"]],
        bar_contrasts=[float(b["contrast"]) for b in data["bars"]],
    )
