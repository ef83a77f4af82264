/**
 * Every value of the contract is bounded, so that nothing that passes a schema can hurt the code
 * behind it (a database column, JSON.stringify, a page of the API): integers fit a JavaScript
 * number exactly and a 64-bit column, numbers are finite and within what a box can measure,
 * strings and lists have a length and free-form objects a number of keys. Nesting depth and the
 * payload's size are bounded when it is parsed (control-plane/ingest/decode.ts).
 */
export const CONTRACT_BOUNDS = {
  /** a counter that only grows (cameraSeq, spool bytes …): exact in a double and a BIGINT */
  counter: Number.MAX_SAFE_INTEGER,
  /** a 32-bit counter (an event's seq, a track id, a model version): fits an INTEGER column */
  int32: 2 ** 31 - 1,
  /** characters of a name, label or version */
  name: 128,
  /** characters of a free-form text (a reason, a command's message) */
  text: 2000,
  /** items of a list (cameras, models, providers) */
  items: 64,
  /** keys of a free-form object (before, after, counters, data, args) */
  keys: 64,
  /** a pixel coordinate or size */
  pixels: 65_535,
  /** the magnitude of any other number (a measurement, a counter value) */
  magnitude: 1e15,
} as const;
