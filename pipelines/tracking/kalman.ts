import type { Box } from '../../inference/rect.ts';

/**
 * Kalman filter over a box, as four independent position/velocity filters (centre x, centre y,
 * width, height): the centre moves at constant velocity, the size is a random walk (no size
 * velocity), so a box coasting unmatched keeps its size (one box cut short
 * by an occlusion or a region's edge would otherwise shrink the track to nothing in a second, and
 * it would match nothing when the person is seen whole again). Noise scales with the box height,
 * so near and far objects are tracked alike; prediction takes the elapsed time, so skipped frames
 * are handled.
 */

interface Axis {
  x: number;
  v: number;
  /** covariance [pp, pv, vv] */
  pp: number;
  pv: number;
  vv: number;
}

/** standard deviations as fractions of the box height: position drift per √(0.1 s), velocity change per √s, measurement */
const POSITION_NOISE = 1 / 20;
const VELOCITY_NOISE = 1;
const MEASUREMENT_NOISE = 1 / 20;
/** axes 0–1 are the centre (constant velocity), 2–3 the size (random walk) */
const SIZE_AXES = 2;

export class BoxFilter {
  private axes: Axis[];

  constructor(box: Box) {
    const m = toMeasurement(box);
    const h = m[3]!;
    this.axes = m.map((x) => ({
      x,
      v: 0,
      pp: (2 * POSITION_NOISE * h) ** 2,
      pv: 0,
      vv: (VELOCITY_NOISE * h) ** 2,
    }));
  }

  /** advances the state by `dt` seconds */
  predict(dt: number): void {
    const h = Math.max(1, this.axes[3]!.x);
    const q = (POSITION_NOISE * h) ** 2 * (dt / 0.1);
    const qv = (VELOCITY_NOISE * h) ** 2 * dt;
    this.axes.forEach((a, i) => {
      if (i >= SIZE_AXES) {
        a.pp += q;
        return;
      }
      a.x += a.v * dt;
      const pp = a.pp + 2 * dt * a.pv + dt * dt * a.vv + q;
      const pv = a.pv + dt * a.vv;
      a.pp = pp;
      a.pv = pv;
      a.vv += qv;
    });
  }

  /** the object is known to stand still (nothing moved where it is): its centre's velocity is zero */
  stop(): void {
    for (let i = 0; i < SIZE_AXES; i++) {
      const a = this.axes[i]!;
      a.v = 0;
      a.pv = 0;
    }
  }

  /** corrects the state with a measured box */
  update(box: Box): void {
    const m = toMeasurement(box);
    const r = (MEASUREMENT_NOISE * Math.max(1, m[3]!)) ** 2;
    this.axes.forEach((a, i) => {
      const residual = m[i]! - a.x;
      const s = a.pp + r;
      const kx = a.pp / s;
      const kv = a.pv / s;
      a.x += kx * residual;
      a.v += kv * residual;
      const pp = (1 - kx) * a.pp;
      const pv = (1 - kx) * a.pv;
      a.vv -= kv * a.pv;
      a.pp = pp;
      a.pv = pv;
    });
  }

  box(): Box {
    const [cx, cy, rawW, rawH] = this.axes.map((a) => a.x) as [number, number, number, number];
    // a size velocity can drive a coasting box through zero: keep it a box
    const w = Math.max(rawW, 1);
    const h = Math.max(rawH, 1);
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2];
  }

  /** velocity of the box centre in pixels per second */
  velocity(): [number, number] {
    return [this.axes[0]!.v, this.axes[1]!.v];
  }
}

function toMeasurement(box: Box): number[] {
  const w = Math.max(1, box[2] - box[0]);
  const h = Math.max(1, box[3] - box[1]);
  return [box[0] + w / 2, box[1] + h / 2, w, h];
}
