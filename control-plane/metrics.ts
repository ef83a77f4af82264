/** why a message was not stored; each is a label value of `argus_ingest_rejected_total` */
export const REJECT_REASONS = [
  'unknown_topic',
  'oversized',
  'malformed_json',
  'schema',
  'device_mismatch',
  'not_authorized',
  /** JSON nested deeper than `ingest.maxJsonDepth` */
  'too_deep',
  /** a command result for a command that was not sent to that device */
  'unknown_command',
  /** an update status for no assignment of that device (or of another rollout or artifact) */
  'unknown_assignment',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/**
 * why a message that follows the contract was quarantined (kept raw in the `quarantine` table,
 * acknowledged, not stored); each is a label value of `argus_ingest_quarantined_total`
 */
export const QUARANTINE_REASONS = [
  /** the database refused a value of the message, written on its own */
  'refused_by_database',
  /** the message failed on its own for another reason, while the database answered */
  'write_failed',
  /** an event (device, id, seq) stored before with other content */
  'conflicting_duplicate',
] as const;
export type QuarantineReason = (typeof QUARANTINE_REASONS)[number];
/** MQTT connections the embedded broker closed because a transport bound bit */
export const TRANSPORT_REFUSALS = ['packet_too_large', 'connect_timeout', 'connections_per_address'] as const;
export type TransportRefusal = (typeof TRANSPORT_REFUSALS)[number];
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
  /** a snapshot or harvested-frame upload over `limits.http.deviceUploadsPerMinute` for its device: 429 */
  'device_uploads',
  /** a list page ended early at `limits.http.pageBytes` */
  'page_bytes',
  /** an artifact download over `artifacts.downloads` open at once: 503 */
  'downloads',
  /** an artifact download over `artifacts.downloadsPerDevice` open at once for its device: 429 */
  'downloads_per_device',
] as const;
export type HttpLimit = (typeof HTTP_LIMITS)[number];

/** upper bounds (s) of the ingest latency histogram: receipt of a message → its transaction committed */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** which limit a retention delete enforced */
export type RetentionLimitKind = 'age' | 'size';

/** what retention did, per kind of rows (see retention/) */
export class RetentionMetrics {
  /** `${kind}/${limit}` → rows deleted */
  readonly rowsDeleted = new Map<string, number>();
  /** kind → estimated bytes of the rows deleted */
  readonly bytesDeleted = new Map<string, number>();
  /** kind → estimated bytes stored, as of the last run */
  readonly storedBytes = new Map<string, number>();
  /** bytes the database file shrank by (SQLite incremental vacuum) */
  reclaimedBytes = 0;
  runs = 0;
  failures = 0;
  /** ms since the epoch; 0 before the first run */
  lastRunAt = 0;
  lastRunSeconds = 0;

  countDeleted(kind: string, limit: RetentionLimitKind, rows: number, bytes: number): void {
    const key = `${kind}/${limit}`;
    this.rowsDeleted.set(key, (this.rowsDeleted.get(key) ?? 0) + rows);
    this.bytesDeleted.set(kind, (this.bytesDeleted.get(kind) ?? 0) + bytes);
  }
}

/** the control plane's counters, rendered in the Prometheus text format by `render` */
export class Metrics {
  readonly ingested = new Map<string, number>();
  readonly rejected = new Map<RejectReason, number>(REJECT_REASONS.map((r) => [r, 0]));
  readonly quarantined = new Map<QuarantineReason, number>(QUARANTINE_REASONS.map((r) => [r, 0]));
  readonly transportRefused = new Map<TransportRefusal, number>(TRANSPORT_REFUSALS.map((r) => [r, 0]));
  readonly httpLimited = new Map<HttpLimit, number>(HTTP_LIMITS.map((l) => [l, 0]));
  duplicates = 0;
  /** messages whose acknowledgement was delayed because their device was over its rate */
  paced = 0;
  /** retained messages the broker was told not to keep (rejected, or on a topic that is not retained) */
  retainCleared = 0;
  batches = 0;
  writeFailures = 0;
  commands = 0;
  sseClients = 0;
  readonly retention = new RetentionMetrics();
  /** logins by outcome: `ok`, `denied` (wrong name or password), `throttled` (per address or account) */
  readonly logins = new Map<string, number>([
    ['ok', 0],
    ['denied', 0],
  ]);
  /** logins refused before their password was tried, by what the limit counts: `address` or `account` */
  readonly loginsThrottled = new Map<string, number>([
    ['address', 0],
    ['account', 0],
  ]);
  /** API requests refused by status: 401 (no or a wrong credential), 403 (too low a role, no CSRF token) */
  readonly apiRefused = new Map<number, number>([
    [401, 0],
    [403, 0],
  ]);
  auditWriteFailures = 0;
  private readonly latencyCounts = LATENCY_BUCKETS.map(() => 0);
  private latencySum = 0;
  private latencyCount = 0;

  countIngested(kind: string, n = 1): void {
    this.ingested.set(kind, (this.ingested.get(kind) ?? 0) + n);
  }

  count<K>(counter: Map<K, number>, key: K): void {
    counter.set(key, (counter.get(key) ?? 0) + 1);
  }

  countRejected(reason: RejectReason): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
  }

  countQuarantined(reason: QuarantineReason): void {
    this.quarantined.set(reason, (this.quarantined.get(reason) ?? 0) + 1);
  }

  countTransportRefused(reason: TransportRefusal): void {
    this.transportRefused.set(reason, (this.transportRefused.get(reason) ?? 0) + 1);
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

  render(gauges: {
    devicesOnline: number;
    devicesSilent: number;
    pending: number;
    streamsCut: number;
    /** whether this replica holds the retention lease */
    retentionLeader: boolean;
  }): string {
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
    metric(
      'argus_ingest_quarantined_total',
      'counter',
      'messages kept in quarantine instead of stored, by reason (GET /api/v1/quarantine)',
      [...this.quarantined].map(([k, v]) => [`{reason="${k}"}`, v]),
    );
    metric(
      'argus_ingest_paced_total',
      'counter',
      'messages acknowledged late because their device sent more than ingest.deviceRate',
      [['', this.paced]],
    );
    metric(
      'argus_ingest_retain_cleared_total',
      'counter',
      'retained messages not kept by the broker: rejected by ingest, or on a topic that is not retained',
      [['', this.retainCleared]],
    );
    metric(
      'argus_mqtt_connections_refused_total',
      'counter',
      'MQTT connections the embedded broker closed because a transport bound bit, by bound',
      [...this.transportRefused].map(([k, v]) => [`{reason="${k}"}`, v]),
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
    metric(
      'argus_devices_online',
      'gauge',
      'devices whose availability is online and that sent a message within health.staleAfterS',
      [['', gauges.devicesOnline]],
    );
    metric(
      'argus_devices_silent',
      'gauge',
      'devices whose availability says online but that sent nothing within health.staleAfterS (counted offline)',
      [['', gauges.devicesSilent]],
    );
    this.renderRetention(metric, gauges.retentionLeader);
    metric('argus_commands_total', 'counter', 'commands published to devices', [['', this.commands]]);
    metric('argus_event_stream_clients', 'gauge', 'open live event streams', [['', this.sseClients]]);
    metric(
      'argus_event_stream_cut_total',
      'counter',
      'live event streams ended because the client stopped reading',
      [['', gauges.streamsCut]],
    );
    metric(
      'argus_logins_total',
      'counter',
      'operator logins by outcome',
      [...this.logins].map(([k, v]) => [`{outcome="${k}"}`, v]),
    );
    metric(
      'argus_logins_throttled_total',
      'counter',
      'logins refused with 429 before the password was tried, by the limit that bit',
      [...this.loginsThrottled].map(([k, v]) => [`{by="${k}"}`, v]),
    );
    metric(
      'argus_api_refused_total',
      'counter',
      'API requests refused: 401 no or a wrong credential, 403 too low a role or no CSRF token',
      [...this.apiRefused].map(([k, v]) => [`{status="${k}"}`, v]),
    );
    metric('argus_audit_write_failures_total', 'counter', 'audit entries the database did not take', [
      ['', this.auditWriteFailures],
    ]);
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

  private renderRetention(
    metric: (name: string, type: string, help: string, samples: [string, number][]) => void,
    leader: boolean,
  ): void {
    const r = this.retention;
    metric(
      'argus_retention_rows_deleted_total',
      'counter',
      'rows deleted by retention, by kind and by the limit (age, size) that deleted them',
      [...r.rowsDeleted].map(([key, v]) => {
        const [kind, limit] = key.split('/');
        return [`{kind="${kind}",limit="${limit}"}`, v];
      }),
    );
    metric(
      'argus_retention_bytes_deleted_total',
      'counter',
      'estimated bytes of the rows retention deleted, by kind',
      [...r.bytesDeleted].map(([k, v]) => [`{kind="${k}"}`, v]),
    );
    metric(
      'argus_retention_stored_bytes',
      'gauge',
      'estimated bytes stored, by kind, after the last retention run',
      [...r.storedBytes].map(([k, v]) => [`{kind="${k}"}`, v]),
    );
    metric(
      'argus_retention_reclaimed_bytes_total',
      'counter',
      'bytes the database file shrank by after deletes (SQLite incremental vacuum)',
      [['', r.reclaimedBytes]],
    );
    metric('argus_retention_runs_total', 'counter', 'retention runs on this replica', [['', r.runs]]);
    metric('argus_retention_failures_total', 'counter', 'retention runs that failed', [['', r.failures]]);
    metric(
      'argus_retention_last_run_timestamp_seconds',
      'gauge',
      'end of the last retention run on this replica (0: none yet)',
      [['', r.lastRunAt / 1000]],
    );
    metric('argus_retention_last_run_duration_seconds', 'gauge', 'how long the last retention run took', [
      ['', r.lastRunSeconds],
    ]);
    metric('argus_retention_leader', 'gauge', '1 when this replica holds the retention lease', [
      ['', leader ? 1 : 0],
    ]);
  }
}
