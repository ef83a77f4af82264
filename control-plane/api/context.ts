import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from 'fastify';
import type { ArtifactRegistry } from '../artifacts/registry.ts';
import type { DeviceCredentials } from '../auth.ts';
import type { ArtifactSettings, HttpLimitSettings, SceneEditorSettings } from '../config.ts';
import type { HarvestedFrames } from '../harvest/frames.ts';
import type { LoopRunStore } from '../loop/store.ts';
import './access.ts';
import type { CommandSender } from '../commands.ts';
import type { AuthSettings, EnrollmentSettings } from '../config.ts';
import type { DeviceHealth } from '../device-health.ts';
import type { Enrollment } from '../enrollment.ts';
import type { EventBus } from '../event-bus.ts';
import type { Metrics } from '../metrics.ts';
import type { Rollouts } from '../rollouts/service.ts';
import type { ScenePreviews } from '../scenes/preview.ts';
import type { SceneBundles } from '../scenes/publish.ts';
import type { ApiTokens } from '../storage/api-tokens.ts';
import type { AuditLog } from '../storage/audit.ts';
import type { DeviceHistory } from '../storage/device-history.ts';
import type { LoginFailures } from '../storage/login-failures.ts';
import type { QuarantineStore } from '../storage/quarantine.ts';
import type { Repository } from '../storage/repository.ts';
import type { Sessions } from '../storage/sessions.ts';
import type { Users } from '../storage/users.ts';

/** what the routes use */
export interface ApiContext {
  repo: Repository;
  credentials: DeviceCredentials;
  bus: EventBus;
  metrics: Metrics;
  commands: CommandSender;
  rollouts: Rollouts;
  quarantine: QuarantineStore;
  enrollment: Enrollment;
  enrollmentSettings: EnrollmentSettings;
  mqttUrl: () => string;
  pendingMessages: () => number;
  /** why the control plane is degraded (empty when it is not) */
  degradedReasons: () => string[];
  health: DeviceHealth;
  history: DeviceHistory;
  /** whether this replica holds the retention lease */
  retentionLeader: () => boolean;
  auth: OperatorAuth;
  /** the HTTP bounds (`limits.http`) */
  limits: HttpLimitSettings;
  /** the artifact registry (published bundles, device downloads) and its settings */
  artifacts: ArtifactRegistry;
  artifactSettings: ArtifactSettings;
  /** the console's scene editor: previews on recordings, signed scene bundles */
  scenes: { previews: ScenePreviews; bundles: SceneBundles };
  sceneSettings: SceneEditorSettings;
  /** harvested frames: the boxes' uploads, operators' listing, the loop's source */
  harvest: HarvestedFrames;
  /** runs of the data–model loop (executed by `argus loop worker`) */
  loopRuns: LoopRunStore;
}

/** operators' accounts, sessions, API tokens, login throttling and the audit log */
export interface OperatorAuth {
  settings: AuthSettings;
  users: Users;
  sessions: Sessions;
  tokens: ApiTokens;
  loginFailures: LoginFailures;
  audit: AuditLog;
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
