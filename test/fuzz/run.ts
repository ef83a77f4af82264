/**
 * `npm run fuzz`: every fuzzer at its full count, the counts printed as they finish and a one-line
 * JSON summary at the end. Each fuzzer (each topic kind) runs against a control plane of its own,
 * so that one finding does not hide the others. FUZZ_PAYLOADS_PER_KIND, FUZZ_PACKET_CONNECTIONS and
 * FUZZ_HTTP_REQUESTS change the counts; FUZZ_ONLY (e.g. `mqtt-payloads/events`, `mqtt-packets`,
 * `http`, several with commas) runs only those; FUZZ_SEED with FUZZ_PATH replays the failing case a
 * failure names.
 */
import { assertLegitHttp, fuzzHttp, type HttpFuzzCount } from './http-requests.ts';
import { FUZZED_KINDS } from './messages.ts';
import { fuzzMqttPackets, type PacketFuzzCount } from './mqtt-packets.ts';
import { fuzzMqttPayloads, type PayloadFuzzCount } from './mqtt-payloads.ts';
import { fuzzRun, SEEDS } from './property.ts';
import { assertLegitFlows, RSS_GROWTH_LIMIT_MIB, rssMiB } from './stalls.ts';
import { type FuzzTarget, type FuzzTargetOptions, startFuzzTarget } from './target.ts';

const count = (name: string, full: number) => Number(process.env[name] ?? full);
const only = process.env.FUZZ_ONLY?.split(',');
const wanted = (name: string) => !only || only.some((o) => o === name || name.startsWith(`${o}/`));

const started = Date.now();
const rssAtStart = rssMiB();
let rssPeak = rssAtStart;
const sampler = setInterval(() => {
  rssPeak = Math.max(rssPeak, rssMiB());
}, 500);
const summary: {
  ok: boolean;
  failures: string[];
  payloads: PayloadFuzzCount[];
  packets?: PacketFuzzCount;
  http?: HttpFuzzCount;
  faults: number;
  legitAcked: number;
  rssMiB: { start: number; end: number; peak: number; limit: number };
  seconds: number;
} = {
  ok: false,
  failures: [],
  payloads: [],
  faults: 0,
  legitAcked: 0,
  rssMiB: { start: rssAtStart, end: 0, peak: 0, limit: RSS_GROWTH_LIMIT_MIB },
  seconds: 0,
};

/** one fuzzer against a control plane of its own, so that a stall it finds does not fail the next */
async function fuzzer(
  name: string,
  body: (target: FuzzTarget) => Promise<void>,
  options: FuzzTargetOptions = {},
): Promise<void> {
  const target = await startFuzzTarget(options);
  try {
    await body(target);
    summary.legitAcked += await assertLegitFlows(target);
    await assertLegitHttp(target);
    const growth = rssMiB() - rssAtStart;
    if (growth > RSS_GROWTH_LIMIT_MIB) throw new Error(`resident memory grew by ${growth} MiB`);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    summary.failures.push(`${name}: ${message.split('\n').slice(0, 2).join(' | ')}`);
    console.error(message);
  } finally {
    summary.faults += target.faults.length;
    await target.close();
  }
}

const kinds = FUZZED_KINDS.filter((k) => wanted(`mqtt-payloads/${k}`));
for (const kind of kinds)
  await fuzzer(
    `mqtt-payloads/${kind}`,
    async (target) => {
      const [c] = await fuzzMqttPayloads(
        target,
        count('FUZZ_PAYLOADS_PER_KIND', 10_000),
        (k) => fuzzRun(SEEDS.payloads + FUZZED_KINDS.indexOf(k)),
        [kind],
      );
      summary.payloads.push(c!);
      console.log(`mqtt payloads ${c!.kind}: ${c!.payloads} (seed ${c!.seed})`);
    },
    { broker: 'open' },
  );
if (wanted('mqtt-packets'))
  await fuzzer('mqtt-packets', async (target) => {
    summary.packets = await fuzzMqttPackets(
      target,
      count('FUZZ_PACKET_CONNECTIONS', 10_000),
      fuzzRun(SEEDS.packets),
    );
    console.log(
      `mqtt packets: ${summary.packets.connections} connections, ${summary.packets.packets} packets`,
    );
  });
if (wanted('http'))
  await fuzzer('http', async (target) => {
    summary.http = await fuzzHttp(target, count('FUZZ_HTTP_REQUESTS', 10_000), fuzzRun(SEEDS.http));
    console.log(
      `http: ${summary.http.requests} requests over ${summary.http.routes} routes`,
      summary.http.byStatus,
    );
  });
clearInterval(sampler);
summary.rssMiB.end = rssMiB();
summary.rssMiB.peak = Math.max(rssPeak, summary.rssMiB.end);
summary.seconds = Math.round((Date.now() - started) / 1000);
summary.ok = summary.failures.length === 0 && summary.faults === 0;
console.log(JSON.stringify(summary));
process.exit(summary.ok ? 0 : 1);
