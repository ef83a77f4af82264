/**
 * `npm run fuzz`: every fuzzer at its full count against one control plane, the counts printed as
 * they finish and a one-line JSON summary at the end. The counts can be changed with
 * FUZZ_PAYLOADS_PER_KIND, FUZZ_PACKET_CONNECTIONS and FUZZ_HTTP_REQUESTS; FUZZ_ONLY (e.g.
 * `mqtt-payloads/events`, `mqtt-packets`, `http`, or several with commas) runs only those, and FUZZ_SEED with FUZZ_PATH
 * replays the failing case a failure names.
 */
import { assertLegitHttp, fuzzHttp, type HttpFuzzCount } from './http-requests.ts';
import { FUZZED_KINDS } from './messages.ts';
import { fuzzMqttPackets, type PacketFuzzCount } from './mqtt-packets.ts';
import { fuzzMqttPayloads, type PayloadFuzzCount } from './mqtt-payloads.ts';
import { fuzzRun, SEEDS } from './property.ts';
import { assertLegitFlows, RSS_GROWTH_LIMIT_MIB, rssMiB } from './stalls.ts';
import { startFuzzTarget } from './target.ts';

const count = (name: string, full: number) => Number(process.env[name] ?? full);
const only = process.env.FUZZ_ONLY?.split(',');
const wanted = (name: string) => !only || only.some((o) => o === name || name.startsWith(`${o}/`));

const started = Date.now();
const target = await startFuzzTarget();
const rssAtStart = rssMiB();
let rssPeak = rssAtStart;
const sampler = setInterval(() => {
  rssPeak = Math.max(rssPeak, rssMiB());
}, 500);
const summary: {
  ok: boolean;
  failure?: string;
  payloads: PayloadFuzzCount[];
  packets?: PacketFuzzCount;
  http?: HttpFuzzCount;
  faults: number;
  legitAcked: number;
  rssMiB: { start: number; end: number; peak: number; limit: number };
  seconds: number;
} = {
  ok: false,
  payloads: [],
  faults: 0,
  legitAcked: 0,
  rssMiB: { start: rssAtStart, end: 0, peak: 0, limit: RSS_GROWTH_LIMIT_MIB },
  seconds: 0,
};
try {
  const kinds = FUZZED_KINDS.filter((k) => wanted(`mqtt-payloads/${k}`));
  if (kinds.length > 0) {
    summary.payloads = await fuzzMqttPayloads(
      target,
      count('FUZZ_PAYLOADS_PER_KIND', 10_000),
      (kind) => fuzzRun(SEEDS.payloads + FUZZED_KINDS.indexOf(kind)),
      kinds,
    );
    for (const c of summary.payloads) console.log(`mqtt payloads ${c.kind}: ${c.payloads} (seed ${c.seed})`);
    await assertLegitFlows(target);
    await assertLegitHttp(target);
  }
  if (wanted('mqtt-packets')) {
    summary.packets = await fuzzMqttPackets(
      target,
      count('FUZZ_PACKET_CONNECTIONS', 10_000),
      fuzzRun(SEEDS.packets),
    );
    console.log(
      `mqtt packets: ${summary.packets.connections} connections, ${summary.packets.packets} packets`,
    );
    await assertLegitFlows(target);
  }
  if (wanted('http')) {
    summary.http = await fuzzHttp(target, count('FUZZ_HTTP_REQUESTS', 10_000), fuzzRun(SEEDS.http));
    console.log(
      `http: ${summary.http.requests} requests over ${summary.http.routes} routes`,
      summary.http.byStatus,
    );
    await assertLegitHttp(target);
  }
  summary.legitAcked = await assertLegitFlows(target);
  const growth = rssMiB() - rssAtStart;
  if (growth > RSS_GROWTH_LIMIT_MIB) throw new Error(`resident memory grew by ${growth} MiB`);
  summary.ok = target.faults.length === 0;
} catch (err) {
  summary.failure = err instanceof Error ? err.message : String(err);
  console.error(summary.failure);
} finally {
  clearInterval(sampler);
  summary.faults = target.faults.length;
  summary.rssMiB.end = rssMiB();
  summary.rssMiB.peak = Math.max(rssPeak, summary.rssMiB.end);
  summary.legitAcked ||= target.legit.acked.length;
  summary.seconds = Math.round((Date.now() - started) / 1000);
  await target.close();
}
console.log(JSON.stringify({ ...summary, failure: summary.failure?.split('\n').slice(0, 2).join(' | ') }));
process.exit(summary.ok ? 0 : 1);
