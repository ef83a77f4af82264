import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertLegitHttp, fuzzHttp } from './http-requests.ts';
import { FUZZED_KINDS } from './messages.ts';
import { fuzzMqttPackets } from './mqtt-packets.ts';
import { fuzzMqttPayloads } from './mqtt-payloads.ts';
import { fuzzRun, SEEDS } from './property.ts';
import { assertLegitFlows, RSS_GROWTH_LIMIT_MIB, rssMiB } from './stalls.ts';
import { type FuzzTarget, type FuzzTargetOptions, startFuzzTarget } from './target.ts';

/** the share of `npm test`: a few hundred cases per class */
const SHARE = { payloadsPerKind: 200, packetConnections: 240, httpRequests: 480 };

/**
 * Runs `body` against a control plane of its own (so that a stall found by one fuzzer does not
 * show as a failure of the next), then checks the legit flows, the faults and the memory bound.
 */
async function againstFreshTarget(
  body: (target: FuzzTarget) => Promise<void>,
  options: FuzzTargetOptions = {},
): Promise<void> {
  const target = await startFuzzTarget(options);
  const rssAtStart = rssMiB();
  try {
    await body(target);
    assert.ok((await assertLegitFlows(target)) > 0);
    await assertLegitHttp(target);
    const growth = rssMiB() - rssAtStart;
    assert.ok(growth < RSS_GROWTH_LIMIT_MIB, `resident memory grew by ${growth} MiB`);
    assert.deepEqual(target.faults, []);
  } finally {
    await target.close();
  }
}

describe('fuzzing (fixed-seed share; `npm run fuzz` runs the full counts)', () => {
  for (const kind of FUZZED_KINDS)
    it(`publishes ${SHARE.payloadsPerKind} hostile payloads on ${kind} topics over the real broker`, () =>
      againstFreshTarget(
        async (target) => {
          const [count] = await fuzzMqttPayloads(
            target,
            SHARE.payloadsPerKind,
            () => fuzzRun(SEEDS.payloads + FUZZED_KINDS.indexOf(kind)),
            [kind],
          );
          assert.ok(count!.payloads >= SHARE.payloadsPerKind, `${kind}: ${count!.payloads}`);
        },
        { broker: 'open' },
      ));

  it(`sends ${SHARE.packetConnections} connections of malformed MQTT packets to the broker`, () =>
    againstFreshTarget(async (target) => {
      const count = await fuzzMqttPackets(target, SHARE.packetConnections, fuzzRun(SEEDS.packets));
      assert.ok(count.connections >= SHARE.packetConnections);
    }));

  it(`sends ${SHARE.httpRequests} generated requests across every route`, () =>
    againstFreshTarget(async (target) => {
      const count = await fuzzHttp(target, SHARE.httpRequests, fuzzRun(SEEDS.http));
      assert.ok(count.requests >= SHARE.httpRequests);
      assert.ok(count.routes >= 20, `${count.routes} routes`);
    }));
});
