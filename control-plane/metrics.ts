/** why a message was not stored; each is a label value of `argus_ingest_rejected_total` */
export const REJECT_REASONS = [
  'unknown_topic',
  'oversized',
  'malformed_json',
  'schema',
  'device_mismatch',
  'not_authorized',
  /** valid by the contract, refused by the database when written on its own */
  'refused_by_database',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** which HTTP bound bit; each is a label value of `argus_http_limited_total` */
export const HTTP_LIMITS = [
  /** a request body over `limits.http.bodyBytes` (or a snapshot over its limit): 413 */
  'body_size',
  /** a JSON body nested deeper than `limits.http.jsonDepth`: 400 */
  'json_depth',
  /** headers or body not received within their timeout: 408, connection closed */
  'request_timeout',
  /** request headers over node's 16 KiB: 431 */
  'header_size',
  /** a connection over `limits.http.connectionsPerAddress`, closed at once */
  'connections_per_address',
  /** a connection over `limits.http.connections`, closed at once */
  'connections',
  /** a live stream refused past `limits.http.liveStreams`: 503 */
  'live_streams',
  /** a list page ended early at `limits.http.pageBytes` */
  'page_bytes',
  /** a stored event nested deeper than the API serves (event-bus.ts MAX_SERVED_DEPTH), left out of a page or stream */
  'event_depth',
] as const;
export type HttpLimit = (typeof HTTP_LIMITS)[number];

/** upper bounds (s) of the ingest latency histogram: receipt of a message → its transaction committed */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** the control plane's counters, rendered in the Prometheus text format by `render` */
export class Metrics {
  readonly ingested = new Map<string, number>();
  readonly rejected = new Map<RejectReason, number>(REJECT_REASONS.map((r) => [r, 0]));
  readonly httpLimited = new Map<HttpLimit, number>(HTTP_LIMITS.map((l) => [l, 0]));
  duplicates = 0;
  batches = 0;
  writeFailures = 0;
  commands = 0;
  sseClients = 0;
  private readonly latencyCounts = LATENCY_BUCKETS.map(() => 0);
  private latencySum = 0;
  private latencyCount = 0;

  countIngested(kind: string, n = 1): void {
    this.ingested.set(kind, (this.ingested.get(kind) ?? 0) + n);
  }

  countRejected(reason: RejectReason): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
  }

  countHttpLimited(limit: HttpLimit): void {
    this.httpLimited.set(limit, (this.httpLimited.get(limit) ?? 0) + 1);
  }

  observeLatency(seconds: number): void {
    this.latencySum += seconds;
    this.latencyCount++;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++)
      if (seconds <= LATENCY_BUCKETS[i]!) this.latencyCounts[i]!++;
  }

  render(gauges: { devicesOnline: number; pending: number; streamsCut: number }): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
    };
    metric(
      'argus_ingest_messages_total',
      'counter',
      'messages stored, by kind',
      [...this.ingested].map(([k, v]) => [`{kind="${k}"}`, v]),
    );
    metric(
      'argus_ingest_rejected_total',
      'counter',
      'messages rejected, by reason',
      [...this.rejected].map(([k, v]) => [`{reason="${k}"}`, v]),
    );
    metric('argus_ingest_duplicates_total', 'counter', 'redelivered messages already stored', [
      ['', this.duplicates],
    ]);
    metric('argus_ingest_batches_total', 'counter', 'transactions written', [['', this.batches]]);
    metric('argus_ingest_write_failures_total', 'counter', 'batches that failed and were retried', [
      ['', this.writeFailures],
    ]);
    metric('argus_ingest_pending', 'gauge', 'messages received and waiting for their batch to be written', [
      ['', gauges.pending],
    ]);
    lines.push(
      '# HELP argus_ingest_latency_seconds message received → stored (committed)',
      '# TYPE argus_ingest_latency_seconds histogram',
    );
    LATENCY_BUCKETS.forEach((b, i) => {
      lines.push(`argus_ingest_latency_seconds_bucket{le="${b}"} ${this.latencyCounts[i]}`);
    });
    lines.push(
      `argus_ingest_latency_seconds_bucket{le="+Inf"} ${this.latencyCount}`,
      `argus_ingest_latency_seconds_sum ${this.latencySum}`,
      `argus_ingest_latency_seconds_count ${this.latencyCount}`,
    );
    metric('argus_devices_online', 'gauge', 'devices whose availability is online', [
      ['', gauges.devicesOnline],
    ]);
    metric('argus_commands_total', 'counter', 'commands published to devices', [['', this.commands]]);
    metric('argus_event_stream_clients', 'gauge', 'open live event streams', [['', this.sseClients]]);
    metric(
      'argus_event_stream_cut_total',
      'counter',
      'live event streams ended because the client stopped reading',
      [['', gauges.streamsCut]],
    );
    metric(
      'argus_http_limited_total',
      'counter',
      'HTTP requests and connections refused or cut by a bound of limits.http, by limit',
      [...this.httpLimited].map(([k, v]) => [`{limit="${k}"}`, v]),
    );
    const mem = process.memoryUsage();
    metric('process_resident_memory_bytes', 'gauge', 'resident set size', [['', mem.rss]]);
    const cpu = process.cpuUsage();
    metric('process_cpu_seconds_total', 'counter', 'user and system CPU time', [
      ['', (cpu.user + cpu.system) / 1e6],
    ]);
    return `${lines.join('\n')}\n`;
  }
}
