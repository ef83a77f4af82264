import type { Static } from 'typebox';
import type {
  AuditPage,
  CreatedToken,
  Me,
  TokenView,
  UserView,
} from '../../control-plane/api/operator-schemas.ts';
import type {
  CommandHistoryPage,
  CommandView,
  Device,
  DevicesPage,
  EventsPage,
  StatusChange,
  StoredEvent,
  TelemetryPage,
} from '../../control-plane/api/schemas.ts';

/** the API's shapes, from the route schemas (one schema per boundary: the types come from there) */
export type DeviceView = Static<typeof Device>;
export type DevicesAnswer = Static<typeof DevicesPage>;
export type StoredEventView = Static<typeof StoredEvent>;
export type EventsAnswer = Static<typeof EventsPage>;
export type TelemetryAnswer = Static<typeof TelemetryPage>;
export type StatusChangeView = Static<typeof StatusChange>;
export type CommandAnswer = Static<typeof CommandView>;
export type CommandHistoryAnswer = Static<typeof CommandHistoryPage>;
export type MeAnswer = Static<typeof Me>;
export type UserAnswer = Static<typeof UserView>;
export type TokenAnswer = Static<typeof TokenView>;
export type CreatedTokenAnswer = Static<typeof CreatedToken>;
export type AuditAnswer = Static<typeof AuditPage>;
export type Role = MeAnswer['role'];

export type ArtifactListAnswer = Static<
  typeof import('../../control-plane/api/routes/artifacts.ts').ArtifactList
>;
export type ArtifactDetailAnswer = Static<
  typeof import('../../control-plane/api/routes/artifacts.ts').ArtifactDetail
>;
export type RolloutAnswer = Static<typeof import('../../control-plane/api/routes/rollouts.ts').RolloutView>;
export type RolloutDetailAnswer = Static<
  typeof import('../../control-plane/api/routes/rollouts.ts').RolloutDetailView
>;
export type DeviceRolloutsAnswer = Static<
  typeof import('../../control-plane/api/routes/rollouts.ts').DeviceRolloutsPage
>;
export type RolloutRequest = import('../../control-plane/rollouts/spec.ts').RolloutRequest;

type SceneRoutes = typeof import('../../control-plane/api/routes/scenes.ts');
export type SceneEditorAnswer = Static<SceneRoutes['SceneEditorInfo']>;
export type PreviewAnswer = Static<SceneRoutes['PreviewAnswer']>;
export type PublishedSceneAnswer = Static<SceneRoutes['PublishedScene']>;
