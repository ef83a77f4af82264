import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from 'fastify';
import type { DeviceCredentials } from '../auth.ts';
import type { HttpLimitSettings } from '../config.ts';
import './access.ts';
import type { CommandSender } from '../commands.ts';
import type { EventBus } from '../event-bus.ts';
import type { Metrics } from '../metrics.ts';
import type { Repository } from '../storage/repository.ts';

/** what the routes use */
export interface ApiContext {
  repo: Repository;
  credentials: DeviceCredentials;
  bus: EventBus;
  metrics: Metrics;
  commands: CommandSender;
  mqttUrl: () => string;
  pendingMessages: () => number;
  limits: HttpLimitSettings;
}

export type App = FastifyInstance<
  RawServerDefault,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

export const iso = (ms: number): string => new Date(ms).toISOString();
export const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));
