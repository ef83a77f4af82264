import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { PacketSizeWatch } from '../../control-plane/mqtt/v5-adapter.ts';

/** a stream of real MQTT packets (publishes of any size, pings), as mqtt-packet writes them */
const packets = fc.array(
  fc.oneof(
    fc
      .record({ topic: fc.string({ minLength: 1, maxLength: 40 }), bytes: fc.nat({ max: 5000 }) })
      .map(({ topic, bytes }) =>
        mqttPacket.generate({
          cmd: 'publish',
          topic,
          payload: Buffer.alloc(bytes, 1),
          qos: 0,
          retain: false,
          dup: false,
        }),
      ),
    fc.constant(mqttPacket.generate({ cmd: 'pingreq' })),
  ),
  { minLength: 1, maxLength: 20 },
);

describe('PacketSizeWatch', () => {
  it('bites exactly when a packet of the stream is larger than the maximum, however the stream is cut', () => {
    fc.assert(
      fc.property(
        packets,
        fc.integer({ min: 2, max: 6000 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (list, max, cuts) => {
          const stream = Buffer.concat(list);
          const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          let bitAt: number | undefined;
          let fed = 0;
          const watch = new PacketSizeWatch(max, () => {
            bitAt ??= fed;
          });
          for (const [i, end] of [...points, stream.length].entries()) {
            const start = i === 0 ? 0 : points[i - 1]!;
            fed = end;
            watch.observe(stream.subarray(start, end));
          }
          const first = list.findIndex((p) => p.length > max);
          assert.equal(bitAt !== undefined, first >= 0);
          if (first >= 0) {
            // it bit before the body of the oversized packet was fed past the chunk holding its header
            const headerEnd = list.slice(0, first).reduce((n, p) => n + p.length, 0) + 5;
            const chunkEnd = [...points, stream.length].find((p) => p >= Math.min(headerEnd, stream.length))!;
            assert.ok(bitAt! <= chunkEnd, `bit at ${bitAt}, header within ${chunkEnd}`);
          }
        },
      ),
      { seed: 424242, numRuns: 2000 },
    );
  });

  it('refuses a length field longer than four bytes', () => {
    let bit = false;
    new PacketSizeWatch(Number.MAX_SAFE_INTEGER, () => {
      bit = true;
    }).observe(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]));
    assert.equal(bit, true);
  });
});
