import { useRef, useState } from 'preact/hooks';

/** [x, y] as fractions of the frame (x right, y down), as scenes give them */
export type Point = [number, number];

export interface Shape {
  key: string;
  /** the rule's id, as shown */
  label: string;
  kind: 'line' | 'polygon';
  points: Point[];
}

const clamp = (v: number) => Math.min(1, Math.max(0, Math.round(v * 1000) / 1000));
const STEP = 0.01;
const BIG_STEP = 0.05;

/** the point moved by an arrow key (Shift: five times as far), or null for another key */
function moved(p: Point, key: string, shift: boolean): Point | null {
  const d = shift ? BIG_STEP : STEP;
  if (key === 'ArrowLeft') return [clamp(p[0] - d), p[1]];
  if (key === 'ArrowRight') return [clamp(p[0] + d), p[1]];
  if (key === 'ArrowUp') return [p[0], clamp(p[1] - d)];
  if (key === 'ArrowDown') return [p[0], clamp(p[1] + d)];
  return null;
}

const letter = (i: number) =>
  String.fromCharCode(65 + (i % 26)) + (i >= 26 ? String(Math.floor(i / 26)) : '');

/**
 * Zones and counting lines over a camera's snapshot. A line shows its direction A→B and the side
 * an object crosses to for "in" (from the left of someone at A looking at B, to their right). The
 * pointer draws and drags; the keyboard does the same: a vertex takes focus (Tab) and moves with
 * the arrow keys (Shift: further), and while drawing, the arrow keys move a cursor over the
 * picture and Enter puts a point there.
 */
export function GeometryEditor({
  image,
  width,
  height,
  shapes,
  selected,
  drawing,
  onSelect,
  onMove,
  onAdd,
}: {
  image: string;
  width: number;
  height: number;
  shapes: readonly Shape[];
  selected: string | null;
  /** the points of the shape being drawn, or null when not drawing */
  drawing: { kind: 'line' | 'polygon'; points: Point[] } | null;
  onSelect: (key: string) => void;
  onMove: (key: string, index: number, p: Point) => void;
  onAdd: (p: Point) => void;
}) {
  const svg = useRef<SVGSVGElement>(null);
  const [drag, setDrag] = useState<{ key: string; index: number } | null>(null);
  const [cursor, setCursor] = useState<Point>([0.5, 0.5]);
  const at = (e: { clientX: number; clientY: number }): Point => {
    const r = svg.current!.getBoundingClientRect();
    return [clamp((e.clientX - r.left) / r.width), clamp((e.clientY - r.top) / r.height)];
  };
  const px = (p: Point) => `${p[0] * width},${p[1] * height}`;
  const r = Math.max(width, height) / 90;
  return (
    <div class="geometry">
      <img src={image} alt="" width={width} height={height} />
      <svg
        ref={svg}
        viewBox={`0 0 ${width} ${height}`}
        role="application"
        tabindex={drawing ? 0 : -1}
        aria-label={
          drawing
            ? `drawing a ${drawing.kind === 'line' ? 'line' : 'zone'}: click the picture, or move the cursor with the arrow keys and press Enter, to put point ${letter(drawing.points.length)}`
            : 'the camera snapshot with the scene’s zones and lines'
        }
        class={drawing ? 'drawing' : ''}
        onPointerDown={(e) => {
          if (drawing) onAdd(at(e));
        }}
        onPointerMove={(e) => {
          if (drag) onMove(drag.key, drag.index, at(e));
          else if (drawing) setCursor(at(e));
        }}
        onPointerUp={() => setDrag(null)}
        onKeyDown={(e) => {
          if (!drawing || e.target !== svg.current) return;
          const next = moved(cursor, e.key, e.shiftKey);
          if (next) {
            e.preventDefault();
            setCursor(next);
          } else if (e.key === 'Enter' || e.key === ' ') {
            e.preventDefault();
            onAdd(cursor);
          }
        }}
      >
        {shapes.map((s) => {
          const on = s.key === selected;
          const cls = `shape ${s.kind}${on ? ' selected' : ''}`;
          const [a, b] = s.points;
          let direction = null;
          if (s.kind === 'line' && a && b) {
            const dx = (b[0] - a[0]) * width;
            const dy = (b[1] - a[1]) * height;
            const len = Math.hypot(dx, dy) || 1;
            const mid = [(a[0] * width + b[0] * width) / 2, (a[1] * height + b[1] * height) / 2] as const;
            // the right of someone at A looking at B (y points down): where "in" ends
            const n = [-dy / len, dx / len] as const;
            const off = r * 4;
            direction = (
              <>
                <text class="side" x={mid[0] + n[0] * off} y={mid[1] + n[1] * off}>
                  in
                </text>
                <text class="side" x={mid[0] - n[0] * off} y={mid[1] - n[1] * off}>
                  out
                </text>
              </>
            );
          }
          return (
            <g key={s.key} class={cls} onPointerDown={() => !drawing && onSelect(s.key)}>
              {s.kind === 'line' ? (
                <line
                  x1={(a?.[0] ?? 0) * width}
                  y1={(a?.[1] ?? 0) * height}
                  x2={(b?.[0] ?? 0) * width}
                  y2={(b?.[1] ?? 0) * height}
                  marker-end="url(#arrow)"
                />
              ) : (
                <polygon points={s.points.map(px).join(' ')} />
              )}
              {direction}
              <text class="name" x={(a?.[0] ?? 0) * width + r * 1.5} y={(a?.[1] ?? 0) * height - r * 1.5}>
                {s.label}
              </text>
              {s.points.map((p, i) => (
                <circle
                  key={String(i)}
                  class="vertex"
                  cx={p[0] * width}
                  cy={p[1] * height}
                  r={r}
                  tabindex={drawing ? -1 : 0}
                  role="slider"
                  aria-label={`${s.label} point ${letter(i)}: arrow keys move it`}
                  aria-valuemin={0}
                  aria-valuemax={1}
                  aria-valuenow={p[0]}
                  aria-valuetext={`x ${p[0]}, y ${p[1]}`}
                  onPointerDown={(e) => {
                    if (drawing) return;
                    e.stopPropagation();
                    onSelect(s.key);
                    setDrag({ key: s.key, index: i });
                    (e.currentTarget as Element).setPointerCapture?.(e.pointerId);
                  }}
                  onKeyDown={(e) => {
                    const next = moved(p, e.key, e.shiftKey);
                    if (!next) return;
                    e.preventDefault();
                    onSelect(s.key);
                    onMove(s.key, i, next);
                  }}
                />
              ))}
            </g>
          );
        })}
        {drawing ? (
          <g class="shape pending">
            {drawing.kind === 'polygon' && drawing.points.length > 1 ? (
              <polyline points={drawing.points.map(px).join(' ')} />
            ) : null}
            {drawing.points.map((p, i) => (
              <circle key={String(i)} class="vertex" cx={p[0] * width} cy={p[1] * height} r={r} />
            ))}
            <circle class="cursor" cx={cursor[0] * width} cy={cursor[1] * height} r={r * 1.5} />
          </g>
        ) : null}
        <defs>
          <marker
            id="arrow"
            viewBox="0 0 10 10"
            refX="9"
            refY="5"
            markerWidth="6"
            markerHeight="6"
            orient="auto"
          >
            <path d="M0,0 L10,5 L0,10 z" class="arrow-head" />
          </marker>
        </defs>
      </svg>
    </div>
  );
}

/** the points of a shape as labelled number inputs: every coordinate editable by keyboard */
export function PointsTable({
  shape,
  onMove,
  onRemove,
  minPoints,
}: {
  shape: Shape;
  onMove: (index: number, p: Point) => void;
  onRemove?: (index: number) => void;
  minPoints: number;
}) {
  return (
    <table class="data points" aria-label={`points of ${shape.label}`}>
      <thead>
        <tr>
          <th scope="col">Point</th>
          <th scope="col">x (0–1, right)</th>
          <th scope="col">y (0–1, down)</th>
          {onRemove ? <th scope="col">Remove</th> : null}
        </tr>
      </thead>
      <tbody>
        {shape.points.map((p, i) => (
          <tr key={String(i)}>
            <th scope="row">{letter(i)}</th>
            {([0, 1] as const).map((axis) => (
              <td key={axis}>
                <input
                  type="number"
                  min={0}
                  max={1}
                  step={STEP}
                  aria-label={`${shape.label} point ${letter(i)} ${axis === 0 ? 'x' : 'y'}`}
                  value={p[axis]}
                  onInput={(e) => {
                    const v = Number(e.currentTarget.value);
                    if (!Number.isFinite(v)) return;
                    const next: Point = [...p];
                    next[axis] = clamp(v);
                    onMove(i, next);
                  }}
                />
              </td>
            ))}
            {onRemove ? (
              <td>
                <button
                  type="button"
                  disabled={shape.points.length <= minPoints}
                  aria-label={`remove point ${letter(i)} of ${shape.label}`}
                  onClick={() => onRemove(i)}
                >
                  ×
                </button>
              </td>
            ) : null}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
