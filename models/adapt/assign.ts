import { iou } from '../../inference/nms.ts';
import type { Box } from '../../inference/rect.ts';

/**
 * Which cells of a GFL head learn which teacher box: Adaptive Training Sample Selection (ATSS,
 * Zhang et al., CVPR 2020), the assigner NanoDet is trained with. Every cell has an anchor, a
 * square of `anchorScale` × stride centred on the cell (NanoDet: 5). For each box, on every level,
 * the `topK` cells whose centres lie closest to the box's centre are its candidates; the IoUs of
 * their anchors with the box give the box its own threshold (their mean plus their standard
 * deviation), and the candidates at or above it whose centre lies inside the box are positives. A
 * cell positive for several boxes takes the one its anchor overlaps most (ties: the lower index),
 * so no cell is ever assigned to two boxes. Boxes are in model-input pixels.
 */

export interface LevelGrid {
  stride: number;
  cols: number;
  rows: number;
}

export interface AssignOptions {
  /** candidates per box per level (NanoDet: 9) */
  topK: number;
  /** the anchor's side in strides (NanoDet: 5) */
  anchorScale: number;
}

export const DEFAULT_ASSIGN: AssignOptions = { topK: 9, anchorScale: 5 };

export interface Assignment {
  /** per level, per cell: index of the box the cell learns, or -1 */
  box: Int32Array[];
  /** per level, per cell: IoU of its anchor with its box (0 where unassigned) */
  iou: Float64Array[];
  /** per level, per cell: 1 where the cell was a candidate of some box (kept as a near negative) */
  candidate: Uint8Array[];
}

/** the grids of a GFL head over an input of `width` × `height` pixels */
export function levelGrids(strides: readonly number[], width: number, height: number): LevelGrid[] {
  return strides.map((stride) => ({
    stride,
    cols: Math.ceil(width / stride),
    rows: Math.ceil(height / stride),
  }));
}

/** centre of cell `cell` of a level, as the decoder computes it */
export function cellCentre(grid: LevelGrid, cell: number): [number, number] {
  return [((cell % grid.cols) + 0.5) * grid.stride, (Math.floor(cell / grid.cols) + 0.5) * grid.stride];
}

/** whether a box can be learnt: finite edges and a positive area */
export function isUsableBox(b: Readonly<Box>): boolean {
  return b.every(Number.isFinite) && b[2] > b[0] && b[3] > b[1];
}

/** cells of `grid` nearest to (x, y), nearest first (ties: lower cell index) */
function nearestCells(grid: LevelGrid, x: number, y: number, k: number): number[] {
  const cells = grid.cols * grid.rows;
  const best: { cell: number; d: number }[] = [];
  for (let cell = 0; cell < cells; cell++) {
    const [cx, cy] = cellCentre(grid, cell);
    const d = (cx - x) ** 2 + (cy - y) ** 2;
    if (best.length === k && d >= best[k - 1]!.d) continue;
    let at = best.length;
    while (at > 0 && best[at - 1]!.d > d) at--;
    best.splice(at, 0, { cell, d });
    if (best.length > k) best.pop();
  }
  return best.map((b) => b.cell);
}

/** the least distance from (x, y) to an edge of the box (negative outside) */
function insideMargin([x1, y1, x2, y2]: Readonly<Box>, x: number, y: number): number {
  return Math.min(x - x1, y - y1, x2 - x, y2 - y);
}

/** a cell centre must lie this far (pixels) inside its box, as in mmdetection's ATSS */
const INSIDE_EPS = 0.01;

export function assignCells(
  boxes: readonly Readonly<Box>[],
  grids: readonly LevelGrid[],
  options: AssignOptions = DEFAULT_ASSIGN,
): Assignment {
  const box = grids.map((g) => new Int32Array(g.cols * g.rows).fill(-1));
  const overlap = grids.map((g) => new Float64Array(g.cols * g.rows));
  const candidate = grids.map((g) => new Uint8Array(g.cols * g.rows));
  const anchor = (level: number, cell: number): Box => {
    const g = grids[level]!;
    const [cx, cy] = cellCentre(g, cell);
    const half = (options.anchorScale * g.stride) / 2;
    return [cx - half, cy - half, cx + half, cy + half];
  };
  boxes.forEach((b, index) => {
    if (!isUsableBox(b)) return;
    const gx = (b[0] + b[2]) / 2;
    const gy = (b[1] + b[3]) / 2;
    const candidates: { level: number; cell: number; iou: number }[] = [];
    grids.forEach((g, level) => {
      for (const cell of nearestCells(g, gx, gy, options.topK)) {
        candidates.push({ level, cell, iou: iou(anchor(level, cell), b) });
        candidate[level]![cell] = 1;
      }
    });
    if (candidates.length === 0) return;
    const mean = candidates.reduce((a, c) => a + c.iou, 0) / candidates.length;
    const variance =
      candidates.length > 1
        ? candidates.reduce((a, c) => a + (c.iou - mean) ** 2, 0) / (candidates.length - 1)
        : 0;
    const threshold = mean + Math.sqrt(variance);
    for (const c of candidates) {
      if (c.iou < threshold || c.iou <= 0) continue;
      const [cx, cy] = cellCentre(grids[c.level]!, c.cell);
      if (insideMargin(b, cx, cy) <= INSIDE_EPS) continue;
      const current = box[c.level]![c.cell]!;
      if (current >= 0 && overlap[c.level]![c.cell]! >= c.iou) continue;
      box[c.level]![c.cell] = index;
      overlap[c.level]![c.cell] = c.iou;
    }
  });
  return { box, iou: overlap, candidate };
}
