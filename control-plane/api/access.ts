/**
 * Who may call a route. Every route declares one in its options (`config: { access }`) beside its
 * schema; the API refuses to start with a route that declares none.
 *
 * - `public`: anyone (login, health, the console's static files)
 * - `device`: a device with its own credential, and only for itself (the route's `:device`)
 * - `viewer` < `operator` < `admin`: operators' roles, each allowed what the lower ones are
 */
export const ACCESS_LEVELS = ['public', 'device', 'viewer', 'operator', 'admin'] as const;
export type Access = (typeof ACCESS_LEVELS)[number];

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
}

/** the roles of operators' accounts and API tokens, lowest first */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** true when `role` may call a route of `access` level `viewer`, `operator` or `admin` */
export function roleAllows(role: Role, access: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(access);
}
