import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  values: (number | null)[];
}

interface Props {
  title: string;
  unit: string;
  /** seconds since the epoch */
  times: number[];
  series: Series[];
}

const PALETTE = ['#2563eb', '#d97706', '#059669', '#db2777', '#7c3aed', '#0891b2', '#65a30d', '#dc2626'];

/** a time-series chart (uPlot, canvas): sized to its container, redrawn when the data changes */
export function Chart({ title, unit, times, series }: Props) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const axisColor = getComputedStyle(document.documentElement).getPropertyValue('--muted').trim() || '#666';
    const gridColor = getComputedStyle(document.documentElement).getPropertyValue('--line').trim() || '#ddd';
    const axis = { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor } };
    const plot = new uPlot(
      {
        width: Math.max(200, el.clientWidth),
        height: 180,
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.label,
            stroke: PALETTE[i % PALETTE.length]!,
            width: 1.5,
            value: (_u: uPlot, v: number | null) => (v === null ? '–' : `${v.toFixed(1)} ${unit}`),
          })),
        ],
        axes: [axis, { ...axis, size: 50 }],
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
      },
      [times, ...series.map((s) => s.values)],
      el,
    );
    const resize = new ResizeObserver(() =>
      plot.setSize({ width: Math.max(200, el.clientWidth), height: 180 }),
    );
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [times, series, unit]);
  return (
    <figure class="chart">
      <figcaption>
        {title} <span class="muted">({unit})</span>
      </figcaption>
      <div ref={box} role="img" aria-label={`${title} over time, ${series.map((s) => s.label).join(', ')}`} />
    </figure>
  );
}
