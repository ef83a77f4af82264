/**
 * Minimum-cost assignment (Hungarian algorithm with potentials, O(n²·m)) on a rows × cols cost
 * matrix. Returns for each row the assigned column or -1. Pairs whose cost is at or above
 * `maxCost` are never assigned.
 */
export function assign(cost: readonly (readonly number[])[], maxCost: number): number[] {
  const rows = cost.length;
  const cols = rows > 0 ? cost[0]!.length : 0;
  if (rows === 0 || cols === 0) return new Array(rows).fill(-1);
  // work on a matrix with rows ≤ cols; forbidden pairs get a cost larger than any real assignment
  const transpose = rows > cols;
  const n = transpose ? cols : rows;
  const m = transpose ? rows : cols;
  const big = maxCost * (n + 1) + 1;
  const at = (i: number, j: number) => {
    const c = transpose ? cost[j]![i]! : cost[i]![j]!;
    return c >= maxCost ? big : c;
  };
  const u = new Float64Array(n + 1);
  const v = new Float64Array(m + 1);
  const p = new Int32Array(m + 1); // p[j] = row (1-based) matched to column j
  const way = new Int32Array(m + 1);
  for (let i = 1; i <= n; i++) {
    p[0] = i;
    let j0 = 0;
    const minv = new Float64Array(m + 1).fill(Number.POSITIVE_INFINITY);
    const used = new Uint8Array(m + 1);
    do {
      used[j0] = 1;
      const i0 = p[j0]!;
      let delta = Number.POSITIVE_INFINITY;
      let j1 = 0;
      for (let j = 1; j <= m; j++) {
        if (used[j]) continue;
        const cur = at(i0 - 1, j - 1) - u[i0]! - v[j]!;
        if (cur < minv[j]!) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j]! < delta) {
          delta = minv[j]!;
          j1 = j;
        }
      }
      for (let j = 0; j <= m; j++) {
        if (used[j]) {
          u[p[j]!] = u[p[j]!]! + delta;
          v[j] = v[j]! - delta;
        } else {
          minv[j] = minv[j]! - delta;
        }
      }
      j0 = j1;
    } while (p[j0] !== 0);
    do {
      const j1 = way[j0]!;
      p[j0] = p[j1]!;
      j0 = j1;
    } while (j0 !== 0);
  }
  const result = new Array<number>(rows).fill(-1);
  for (let j = 1; j <= m; j++) {
    const i = p[j]!;
    if (i === 0) continue;
    const [row, col] = transpose ? [j - 1, i - 1] : [i - 1, j - 1];
    if (cost[row]![col]! < maxCost) result[row] = col;
  }
  return result;
}
