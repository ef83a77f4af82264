import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertLegitHttp, fuzzHttp } from './http-requests.ts';
import { FUZZED_KINDS } from './messages.ts';
import { fuzzMqttPackets } from './mqtt-packets.ts';
import { fuzzMqttPayloads } from './mqtt-payloads.ts';
import { fuzzRun, SEEDS } from './property.ts';
import { assertLegitFlows, RSS_GROWTH_LIMIT_MIB, rssMiB } from './stalls.ts';
import { type FuzzTarget, startFuzzTarget } from './target.ts';

/** the share of `npm test`: a few hundred cases per class */
const SHARE = { payloadsPerKind: 200, packetConnections: 240, httpRequests: 480 };

describe('fuzzing (fixed-seed share; `npm run fuzz` runs the full counts)', () => {
  let target: FuzzTarget;
  let rssAtStart: number;
  before(async () => {
    target = await startFuzzTarget();
    rssAtStart = rssMiB();
  });
  after(async () => {
    await target?.close();
  });

  it(`publishes ${SHARE.payloadsPerKind} hostile payloads per topic kind over the real broker`, async () => {
    const counts = await fuzzMqttPayloads(target, SHARE.payloadsPerKind, (kind) =>
      fuzzRun(SEEDS.payloads + FUZZED_KINDS.indexOf(kind)),
    );
    assert.deepEqual(
      counts.map((c) => c.kind),
      FUZZED_KINDS,
    );
    for (const c of counts) assert.ok(c.payloads >= SHARE.payloadsPerKind, `${c.kind}: ${c.payloads}`);
    assert.ok((await assertLegitFlows(target)) > 0);
    await assertLegitHttp(target);
  });

  it(`sends ${SHARE.packetConnections} connections of malformed MQTT packets to the broker`, async () => {
    const count = await fuzzMqttPackets(target, SHARE.packetConnections, fuzzRun(SEEDS.packets));
    assert.ok(count.connections >= SHARE.packetConnections);
    await assertLegitFlows(target);
  });

  it(`sends ${SHARE.httpRequests} generated requests across every route`, async () => {
    const count = await fuzzHttp(target, SHARE.httpRequests, fuzzRun(SEEDS.http));
    assert.ok(count.requests >= SHARE.httpRequests);
    assert.ok(count.routes >= 20, `${count.routes} routes`);
    await assertLegitHttp(target);
    await assertLegitFlows(target);
  });

  it('stays within the memory bound and saw no fault', () => {
    const growth = rssMiB() - rssAtStart;
    assert.ok(growth < RSS_GROWTH_LIMIT_MIB, `resident memory grew by ${growth} MiB`);
    assert.deepEqual(target.faults, []);
  });
});
