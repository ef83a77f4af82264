import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Agent, request, type Server } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { ConnectionsPerAddress } from '../../common/connections-per-address.ts';
import { boundedServer } from '../../control-plane/api/http-limits.ts';
import { controlPlaneConfig } from '../../control-plane/config.ts';
import { Metrics } from '../../control-plane/metrics.ts';
import { eventually } from '../helpers/eventually.ts';

/** two loopback source addresses (all of 127/8 reaches this machine on Linux) */
const ADDRESSES = ['127.0.0.1', '127.0.0.2'] as const;
const LIMIT = 3;

type Step = { op: 'open'; from: 0 | 1 } | { op: 'close'; pick: number };

describe('ConnectionsPerAddress', () => {
  it('counts exactly the admitted sockets still open, per address, never more than its limit (real TCP)', async () => {
    // no grace: a connection over the limit is refused when no close comes at once
    const budget = new ConnectionsPerAddress(LIMIT, 1);
    const server = createServer((socket) => {
      const closed = once(socket, 'close').then(() => undefined);
      const decide = (admitted: boolean) => {
        if (!admitted) socket.destroy();
        pending.shift()?.({ admitted, closed });
      };
      const now = budget.admit(socket, decide);
      if (now !== 'waiting') decide(now === 'admitted');
    });
    const pending: ((d: { admitted: boolean; closed: Promise<void> }) => void)[] = [];
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.oneof(
              fc.record({ op: fc.constant('open' as const), from: fc.constantFrom(0 as const, 1 as const) }),
              fc.record({ op: fc.constant('close' as const), pick: fc.nat() }),
            ),
            { maxLength: 24 },
          ),
          async (steps: Step[]) => {
            const open: { from: 0 | 1; client: Socket; closed: Promise<void> }[] = [];
            try {
              for (const step of steps) {
                if (step.op === 'open') {
                  const decided = new Promise<{ admitted: boolean; closed: Promise<void> }>((resolve) =>
                    pending.push(resolve),
                  );
                  const client = connect({ port, host: '127.0.0.1', localAddress: ADDRESSES[step.from] });
                  client.on('error', () => {});
                  const { admitted, closed } = await decided;
                  const had = open.filter((o) => o.from === step.from).length;
                  assert.equal(
                    admitted,
                    had < LIMIT,
                    `admitted with ${had} open from ${ADDRESSES[step.from]}`,
                  );
                  if (admitted) open.push({ from: step.from, client, closed });
                  else {
                    await closed;
                    client.destroy();
                  }
                } else if (open.length > 0) {
                  const [gone] = open.splice(step.pick % open.length, 1);
                  gone!.client.destroy();
                  await gone!.closed;
                }
                for (const [i, address] of ADDRESSES.entries())
                  assert.equal(budget.count(address), open.filter((o) => o.from === i).length, address);
              }
            } finally {
              for (const o of open.splice(0)) {
                o.client.destroy();
                await o.closed;
              }
            }
            assert.equal(budget.addresses, 0, 'nothing is counted once every socket closed');
          },
        ),
        { numRuns: 40, seed: 20_261_202 },
      );
    } finally {
      server.close();
    }
  });

  it('does not count a socket that closed before it was admitted', async () => {
    const budget = new ConnectionsPerAddress(1);
    const server = createServer((socket) => socket.end());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = connect((server.address() as { port: number }).port, '127.0.0.1');
    await once(client, 'connect');
    client.destroy();
    await once(client, 'close');
    assert.equal(
      budget.admit(client, () => assert.fail('decided later')),
      'refused',
    );
    assert.equal(budget.addresses, 0);
    server.close();
  });
});

describe('the API server, to a client that reuses connections and to one that does not', () => {
  const metrics = new Metrics();
  /** keep-alive 1 s: node's agent (hint minus 1 s) then opens a connection per request; 2 s: it reuses them for 1 s */
  const servers = new Map<1000 | 2000, { server: Server; url: string }>();
  before(async () => {
    for (const keepAliveTimeoutMs of [1000, 2000] as const) {
      const limits = controlPlaneConfig({
        limits: { http: { connectionsPerAddress: LIMIT, keepAliveTimeoutMs } },
      }).limits.http;
      const server = boundedServer(limits, metrics, (_req, res) => res.end('ok'));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      servers.set(keepAliveTimeoutMs, {
        server,
        url: `http://127.0.0.1:${(server.address() as { port: number }).port}/`,
      });
    }
  });
  after(async () => {
    for (const { server } of servers.values())
      await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** a GET over `agent`: its status, or the error that ended it */
  const get = (url: string, agent: Agent) =>
    new Promise<number | string>((resolve) => {
      request(url, { agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
        .on('error', (err) => resolve(err.message))
        .end();
    });

  it('never exhausts the per-address budget: rounds of sequential and concurrent requests, connections kept, timed out or not reused', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(1000 as const, 2000 as const),
        fc.array(
          fc.record({
            concurrent: fc.integer({ min: 1, max: LIMIT }),
            requests: fc.integer({ min: 1, max: 12 }),
            // past the agent's keep-alive (1 s) its free connections are closed
            idleMs: fc.constantFrom(0, 20, 1500),
            closeAgent: fc.boolean(),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        async (keepAlive, rounds) => {
          const { url } = servers.get(keepAlive)!;
          let agent = new Agent({ keepAlive: true, maxSockets: LIMIT });
          try {
            for (const round of rounds) {
              const statuses = await Promise.all(
                Array.from({ length: round.concurrent }, async () => {
                  const out: (number | string)[] = [];
                  for (let i = 0; i < round.requests; i++) out.push(await get(url, agent));
                  return out;
                }),
              );
              assert.deepEqual(statuses.flat(), Array(round.concurrent * round.requests).fill(200));
              if (round.closeAgent) {
                agent.destroy();
                agent = new Agent({ keepAlive: true, maxSockets: LIMIT });
              }
              await sleep(round.idleMs);
            }
          } finally {
            agent.destroy();
          }
        },
      ),
      { numRuns: 15, seed: 14 },
    );
    assert.equal(metrics.httpLimited.get('connections_per_address'), 0, 'no connection was refused');
    // and the budget is whole again: LIMIT fresh connections at once are served
    const fresh = new Agent({ keepAlive: true, maxSockets: LIMIT });
    const { url } = servers.get(2000)!;
    await eventually(
      async () => {
        const statuses = await Promise.all(Array.from({ length: LIMIT }, () => get(url, fresh)));
        return statuses.every((s) => s === 200) || undefined;
      },
      5000,
      'served',
    );
    fresh.destroy();
  });

  it('still refuses a connection past the limit that no close makes room for, after the grace', async () => {
    const before = metrics.httpLimited.get('connections_per_address') ?? 0;
    const { url } = servers.get(2000)!;
    const { port } = new URL(url);
    const held = await Promise.all(
      Array.from({ length: LIMIT + 1 }, async () => {
        const socket = connect(Number(port), '127.0.0.1');
        socket.on('error', () => {});
        await once(socket, 'connect');
        return { socket, closed: once(socket, 'close') };
      }),
    );
    await Promise.race(held.map((h) => h.closed));
    assert.equal(metrics.httpLimited.get('connections_per_address'), before + 1);
    for (const h of held) h.socket.destroy();
  });
});
