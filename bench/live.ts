/**
 * npm run bench:live — the live view's box CPU per stream, passthrough against the MPEG-1
 * fallback, and its glass-to-glass latency (bench/live-view-measure.ts says how).
 *
 *   npm run bench:live            (ARGUS_BENCH_LIVE_S=15: seconds measured per format)
 *
 * The last line is one JSON object.
 */
import { measureLiveView } from './live-view-measure.ts';

const WINDOW_S = Number(process.env.ARGUS_BENCH_LIVE_S ?? 15);
console.log(JSON.stringify({ bench: 'live', window_s: WINDOW_S, ...(await measureLiveView(WINDOW_S)) }));
