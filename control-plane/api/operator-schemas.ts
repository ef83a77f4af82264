import Type from 'typebox';
import { MAX_PASSWORD_LENGTH } from '../passwords.ts';
import { AUDIT_OUTCOMES } from '../storage/audit.ts';
import { Password, UserName } from '../storage/users.ts';
import { ROLES } from './access.ts';

/** the schemas of the operators' routes: login, accounts, API tokens, audit log */

const Timestamp = Type.String({ format: 'date-time' });
const Nullable = <T extends Type.TSchema>(t: T) => Type.Union([t, Type.Null()]);
export const RoleSchema = Type.Union(
  [Type.Literal('viewer'), Type.Literal('operator'), Type.Literal('admin')],
  {
    description: `one of ${ROLES.join(' < ')}`,
  },
);

export const LoginRequest = Type.Object(
  {
    name: UserName,
    // any length up to the bound: a password shorter than today's minimum may predate it
    password: Type.String({ minLength: 1, maxLength: MAX_PASSWORD_LENGTH }),
  },
  { additionalProperties: false },
);

export const LoginAnswer = Type.Object({
  name: Type.String(),
  role: RoleSchema,
  csrfToken: Type.String({ description: 'send it in x-csrf-token with every state-changing request' }),
  expiresAt: Timestamp,
});

export const Me = Type.Object({
  name: Type.String(),
  role: RoleSchema,
  via: Type.Union([Type.Literal('session'), Type.Literal('token')]),
  csrfToken: Type.Optional(Type.String({ description: "the session's CSRF token (sessions only)" })),
  expiresAt: Type.Optional(Timestamp),
});

export const UserView = Type.Object({
  name: Type.String(),
  role: RoleSchema,
  createdAt: Timestamp,
  updatedAt: Timestamp,
});

export const NewUser = Type.Object(
  { name: UserName, role: RoleSchema, password: Password },
  { additionalProperties: false },
);
export const UserPatch = Type.Object({ role: RoleSchema }, { additionalProperties: false });
export const PasswordChange = Type.Object({ password: Password }, { additionalProperties: false });
export const UserParams = Type.Object({ name: UserName });

export const TokenView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  role: RoleSchema,
  createdBy: Type.String(),
  createdAt: Timestamp,
  lastUsedAt: Nullable(Timestamp),
  revokedAt: Nullable(Timestamp),
});
export const NewToken = Type.Object(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: '^[A-Za-z0-9 ._@-]+$',
      description: 'what it is for',
    }),
    role: RoleSchema,
  },
  { additionalProperties: false },
);
export const CreatedToken = Type.Object({
  token: TokenView,
  secret: Type.String({ description: 'the token itself: shown this once, stored only as its hash' }),
});
export const TokenParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,32}$' }) });

export const AuditQuery = Type.Object(
  {
    actor: Type.Optional(Type.String({ maxLength: 128 })),
    action: Type.Optional(
      Type.String({ maxLength: 256, description: 'e.g. `login` or `DELETE /api/v1/users/:name`' }),
    ),
    outcome: Type.Optional(
      Type.Union(
        [Type.Literal('ok'), Type.Literal('denied'), Type.Literal('throttled'), Type.Literal('failed')],
        {
          description: AUDIT_OUTCOMES.join(', '),
        },
      ),
    ),
    from: Type.Optional(Timestamp),
    to: Type.Optional(Timestamp),
    cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
  },
  { additionalProperties: false },
);

export const AuditEntryView = Type.Object({
  id: Type.Integer(),
  at: Timestamp,
  actor: Type.String(),
  actorKind: Type.String(),
  action: Type.String(),
  params: Type.Record(Type.String(), Type.String()),
  address: Type.String(),
  status: Type.Integer(),
  outcome: Type.String(),
});
export const AuditPage = Type.Object({
  entries: Type.Array(AuditEntryView),
  nextCursor: Nullable(Type.String()),
});
